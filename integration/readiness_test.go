package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/answerback/answerback/libs/auth"
	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/libs/testenv"
	aggapp "github.com/answerback/answerback/services/aggregator/app"
	"github.com/answerback/answerback/services/gateway/server"
)

// TestGatewayNotReadyUntilCommandTopicsExist: a gateway that starts before
// its command topics exist (services started together, the aggregator still
// creating them) answers /readyz 503 — a load balancer sends it nothing it
// could only answer 503 — and becomes ready once the topics are created.
func TestGatewayNotReadyUntilCommandTopicsExist(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		pg := testenv.NewPostgres(t)
		ctx := testenv.Context(t, time.Minute)
		key, err := auth.LoadOrCreateDevKey(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		prefix := k.Prefix + "."
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		serveCtx, stop := context.WithCancel(context.Background())
		served := make(chan struct{})
		go func() { // ended by the cleanup
			defer close(served)
			err := service.Launch(serveCtx, server.Binary(server.Embedded{Pool: pg.Pool, Listener: ln}),
				gatewayArgs(t, k, prefix, "ready-"+k.Prefix, key), service.InProcess{Log: testLogger(t)})
			if err != nil {
				t.Errorf("gateway: %v", err)
			}
		}()
		t.Cleanup(func() { stop(); <-served })
		ready := "http://" + ln.Addr().String() + "/readyz"

		status, problem := getReadyz(t, ready)
		if status != http.StatusServiceUnavailable || problem["title"] != "command topics unavailable" {
			t.Fatalf("readyz before the command topics exist: %d %v, want 503 command topics unavailable", status, problem)
		}
		if err := aggapp.EnsureTopics(ctx, k.Seeds, prefix, 3); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			status, problem = getReadyz(t, ready)
			if status == http.StatusNoContent {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("readyz 30 s after the topics were created: %d %v, want 204", status, problem)
			}
		}
	})
}

// getReadyz returns the status of GET url and its problem document, if any.
func getReadyz(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var problem map[string]any
	if resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(&problem); err != nil {
			t.Fatal(fmt.Errorf("readyz %d: %w", resp.StatusCode, err))
		}
	}
	return resp.StatusCode, problem
}
