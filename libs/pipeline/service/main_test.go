package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"testing"
)

// TestMainRunsAService: Main hands the service the common settings and its
// own flag, serves /healthz while it runs, and turns its result into the
// exit code — 0 after a clean stop, 1 on a failure, 2 on an unusable
// setting or Kafka security settings.
func TestMainRunsAService(t *testing.T) {
	port := freePort(t)
	var got Process
	var greeting string
	var healthy bool
	binary := func(result error) Binary {
		return Binary{Name: "probe", Setup: func(s *Setup) Run {
			hello := s.String("greeting", "PROBE_GREETING", "hello", "a setting of the binary's own")
			return func(ctx context.Context, p Process) error {
				got, greeting = p, *hello
				resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
				if err == nil {
					resp.Body.Close()
					healthy = resp.StatusCode == http.StatusNoContent
				}
				return result
			}
		}}
	}
	args := []string{"-kafka-brokers", "a:1,b:2", "-topic-prefix", "t-", "-greeting", "hi", "-metrics-addr", fmt.Sprintf("127.0.0.1:%d", port)}
	if code := run(binary(nil), args); code != 0 {
		t.Fatalf("clean stop: exit %d, want 0", code)
	}
	if !slices.Equal(got.Brokers, []string{"a:1", "b:2"}) || got.TopicPrefix != "t-" || greeting != "hi" || got.Log == nil || len(got.KafkaOpts) == 0 {
		t.Errorf("service got brokers %v, prefix %q, greeting %q, logger %v, %d Kafka options", got.Brokers, got.TopicPrefix, greeting, got.Log != nil, len(got.KafkaOpts))
	}
	if !healthy {
		t.Error("/healthz on the metrics address did not answer 204 while the service ran")
	}
	if code := run(binary(errors.New("broken")), args); code != 1 {
		t.Errorf("failed service: exit %d, want 1", code)
	}
	if code := run(binary(Usage(errors.New("partitions out of range"))), args); code != 2 {
		t.Errorf("unusable setting: exit %d, want 2", code)
	}
	t.Setenv("KAFKA_SASL_MECHANISM", "NOPE")
	if code := run(binary(nil), args); code != 2 {
		t.Errorf("unusable Kafka security: exit %d, want 2", code)
	}
}

// freePort is a TCP port free on 127.0.0.1 when asked.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
