package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/answerback/answerback/libs/auth"
	"github.com/answerback/answerback/libs/testenv"
)

// TestDevstackServesTheRoundTrip starts what `make run` starts — embedded
// Kafka, two gateways behind the load balancer, aggregator, projector, seeded
// catalog — on free ports, and makes the round trip its welcome text shows.
func TestDevstackServesTheRoundTrip(t *testing.T) {
	pg := testenv.NewPostgres(t)
	ready := make(chan string, 1)
	cfg := config{
		dataDir: t.TempDir(), kafkaAddr: "127.0.0.1:0", databaseURL: pg.DSN,
		httpAddr: "127.0.0.1:0", gatewayAddrs: []string{"127.0.0.1:0", "127.0.0.1:0"}, ready: ready, out: io.Discard,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	var base string
	select {
	case base = <-ready:
	case err := <-done:
		t.Fatalf("devstack ended before it was ready: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("devstack not ready after 2 minutes")
	}

	key, err := auth.LoadDevKey(filepath.Join(cfg.dataDir, auth.DevKeyFile))
	if err != nil {
		t.Fatalf("make run's development key: %v", err)
	}
	token, err := key.Mint("test", demoTenant, auth.AllScopes, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	post := func(path, body string) (status int, gateway string, reply map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&reply)
		return resp.StatusCode, resp.Header.Get("Answerback-Gateway"), reply
	}
	createdStatus, createdBy, _ := post("/v1/orders", `{"id":"order-1","customerId":"alice"}`)
	addedStatus, addedBy, reply := post("/v1/orders/order-1/items", `{"sku":"pear","quantity":2}`)
	if createdStatus != http.StatusCreated || addedStatus != http.StatusOK {
		t.Fatalf("create %d, add %d: %v", createdStatus, addedStatus, reply)
	}
	if createdBy == addedBy {
		t.Errorf("both requests served by %s: the load balancer should alternate", createdBy)
	}
	if len(reply["validItems"].([]any)) == 0 || reply["order"].(map[string]any)["total"] != float64(180) {
		t.Errorf("reply %v: want total 180 and valid items from the seeded catalog", reply)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("devstack stopped with %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("devstack did not stop within a minute")
	}
}
