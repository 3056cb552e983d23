package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
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

// TestLaunchRunsAServiceInProcess: Launch hands the service the same
// settings as Main, with the caller's logger and Kafka options added, returns
// the service's own result, and turns a bad flag or stray argument into an
// error wrapping ErrUsage — without exiting.
func TestLaunchRunsAServiceInProcess(t *testing.T) {
	var got Process
	var greeting string
	binary := Binary{Name: "probe", Setup: func(s *Setup) Run {
		hello := s.String("greeting", "PROBE_GREETING", "hello", "a setting of the binary's own")
		return func(ctx context.Context, p Process) error {
			got, greeting = p, *hello
			return ctx.Err()
		}
	}}
	log := slog.New(slog.DiscardHandler)
	hook := kgo.ClientID("the caller's")
	err := Launch(context.Background(), binary, []string{"-kafka-brokers", "a:1", "-topic-prefix", "t-", "-greeting", "hi"}, InProcess{Log: log, KafkaOpts: []kgo.Opt{hook}})
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	if !slices.Equal(got.Brokers, []string{"a:1"}) || got.TopicPrefix != "t-" || greeting != "hi" || got.Log != log {
		t.Errorf("service got brokers %v, prefix %q, greeting %q, the caller's logger %v", got.Brokers, got.TopicPrefix, greeting, got.Log == log)
	}
	if n := len(got.KafkaOpts); n < 2 || got.KafkaOpts[n-1] == nil {
		t.Errorf("%d Kafka options: want the settings' and the caller's", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Launch(ctx, binary, nil, InProcess{Log: log}); !errors.Is(err, context.Canceled) {
		t.Errorf("the service's own result: got %v, want context.Canceled", err)
	}
	for _, args := range [][]string{{"-greeting"}, {"-no-such-flag"}, {"healthcheck"}} {
		if err := Launch(context.Background(), binary, args, InProcess{Log: log}); !errors.Is(err, ErrUsage) {
			t.Errorf("Launch %q: got %v, want an error wrapping ErrUsage", args, err)
		}
	}
}
