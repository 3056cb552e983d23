module github.com/answerback/answerback/deploy/validate

go 1.26.0

replace github.com/answerback/answerback/libs/pipeline => ../../libs/pipeline

replace github.com/answerback/answerback/deploy/local => ../local

require (
	github.com/answerback/answerback/libs/pipeline v0.0.0-00010101000000-000000000000
	go.yaml.in/yaml/v3 v3.0.6
)

require (
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
	github.com/twmb/franz-go v1.22.3 // indirect
	github.com/twmb/franz-go/pkg/kadm v1.19.0 // indirect
	github.com/twmb/franz-go/pkg/kmsg v1.15.1 // indirect
)
