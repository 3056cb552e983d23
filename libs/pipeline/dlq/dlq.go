// Package dlq builds dead-letter records: a copy of a record that could not be
// processed, with headers naming the error and where the record came from, so
// that it can be inspected and redriven to its source topic after a fix.
package dlq

import (
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Header names on a dead-letter record.
const (
	HError           = "dlq-error"
	HSourceTopic     = "dlq-source-topic"
	HSourcePartition = "dlq-source-partition"
	HSourceOffset    = "dlq-source-offset"
	HFailedAt        = "dlq-failed-at"
	HStage           = "dlq-stage"
)

// Record returns the dead letter for r on topic: r's key, value and headers,
// plus the reason and origin. stage names who refused it (aggregator, projector).
func Record(topic, stage string, r *kgo.Record, reason error) *kgo.Record {
	hs := append([]kgo.RecordHeader(nil), r.Headers...)
	hs = append(hs,
		kgo.RecordHeader{Key: HError, Value: []byte(reason.Error())},
		kgo.RecordHeader{Key: HStage, Value: []byte(stage)},
		kgo.RecordHeader{Key: HSourceTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HSourcePartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
		kgo.RecordHeader{Key: HSourceOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
		kgo.RecordHeader{Key: HFailedAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
	)
	return &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: hs}
}
