package main

import (
	"context"
	"encoding/base64"
	"io"
	"strings"
	"testing"
)

func TestRenderEnv(t *testing.T) {
	got := renderEnv([]string{"localhost:32768"}, "postgres://postgres:postgres@localhost:32769/postgres?sslmode=disable")
	want := "KAFKA_BROKERS=localhost:32768\n" +
		"DATABASE_URL=postgres://postgres:postgres@localhost:32769/postgres?sslmode=disable\n" +
		"ANSWERBACK_INFRA=docker\n"
	if got != want {
		t.Fatalf("renderEnv:\n got %q\nwant %q", got, want)
	}
	if got := renderEnv([]string{"a:1", "b:2"}, "x"); !strings.HasPrefix(got, "KAFKA_BROKERS=a:1,b:2\n") {
		t.Fatalf("several brokers: %q", got)
	}
}

func TestParseArgsDefaults(t *testing.T) {
	for _, cmd := range []string{"up", "down", "available"} {
		o, err := parseArgs([]string{cmd})
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		want := options{cmd: cmd, kafkaImage: "apache/kafka:4.1.1", pgImage: "postgres:17-alpine"}
		if o != want {
			t.Fatalf("%s: got %+v, want %+v", cmd, o, want)
		}
	}
}

func TestParseArgsFlags(t *testing.T) {
	o, err := parseArgs([]string{"up", "--env-file", "/tmp/infra.env", "--kafka-image", "apache/kafka:4.0.0",
		"--pg-image=postgres:16", "--kafka-port", "19092", "--pg-port", "15432"})
	if err != nil {
		t.Fatal(err)
	}
	want := options{cmd: "up", envFile: "/tmp/infra.env", kafkaImage: "apache/kafka:4.0.0", pgImage: "postgres:16",
		kafkaPort: 19092, pgPort: 15432}
	if o != want {
		t.Fatalf("got %+v, want %+v", o, want)
	}
}

func TestParseArgsErrors(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"jars"},
		{"start"},
		{"up", "--dir", "x"},
		{"up", "extra"},
		{"up", "--kafka-port", "70000"},
		{"up", "--pg-port", "-1"},
		{"up", "--kafka-port", "9000", "--pg-port", "9000"},
		{"up", "--kafka-image", ""},
	} {
		if _, err := parseArgs(args); err == nil {
			t.Errorf("parseArgs(%q): want an error", args)
		}
	}
}

// run must reject bad command lines before it looks for a Docker engine.
func TestRunUsageNeedsNoDocker(t *testing.T) {
	err := run(context.Background(), []string{"bogus"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("got %v", err)
	}
}

func TestNoEngineMessage(t *testing.T) {
	err := noEngine(errorString("check host \"unix:///var/run/docker.sock\": refused\nrootless: not found"))
	want := `no Docker engine reachable: check host "unix:///var/run/docker.sock": refused; rootless: not found; use deploy/local/cmd/localinfra instead`
	if err.Error() != want {
		t.Fatalf("got  %q\nwant %q", err, want)
	}
}

func TestKafkaStartScript(t *testing.T) {
	s := kafkaStartScript("localhost:32768")
	for _, part := range []string{
		`export KAFKA_ADVERTISED_LISTENERS="PLAINTEXT://localhost:32768,BROKER://$(hostname):19092"`,
		"exec /etc/kafka/docker/run",
	} {
		if !strings.Contains(s, part) {
			t.Errorf("start script lacks %q:\n%s", part, s)
		}
	}
	env := kafkaEnv("id")
	if env["KAFKA_PROCESS_ROLES"] != "broker,controller" || env["CLUSTER_ID"] != "id" {
		t.Errorf("kafkaEnv: %v", env)
	}
	if _, ok := env["KAFKA_ADVERTISED_LISTENERS"]; ok {
		t.Error("KAFKA_ADVERTISED_LISTENERS belongs to the start script, not the container env")
	}
}

func TestNewClusterID(t *testing.T) {
	a, err := newClusterID()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newClusterID()
	raw, err := base64.RawURLEncoding.DecodeString(a)
	if err != nil || len(raw) != 16 || len(a) != 22 || a == b {
		t.Fatalf("cluster ids %q, %q (%v)", a, b, err)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }
