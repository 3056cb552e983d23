package server

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/answerback/answerback/libs/pipeline/registry"
	"github.com/answerback/answerback/libs/pipeline/topics"
	"github.com/answerback/answerback/libs/testenv"
)

// A started gateway is in the registry as live, with its reply topic; a
// cleanly closed one is gone from it, with its topic. An uncleanly closed one
// stays (its heartbeat turns stale), and so does its topic.
func TestGatewayRegistry(t *testing.T) {
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		ctx := testenv.Context(t, 2*time.Minute)
		pg := testenv.NewPostgres(t)
		prefix := k.Prefix + "."
		cl := k.Client(t)
		adm := k.Admin(t)
		t.Cleanup(func() {
			_, _ = adm.DeleteTopics(context.Background(), topics.GatewayRegistry(prefix), topics.ReplyTopic(prefix, "gw-crash"))
		})
		start := func(instance string) *Gateway {
			gw, err := New(ctx, Config{
				InstanceID: instance, Brokers: k.Seeds, TopicPrefix: prefix, Pool: pg.Pool, Auth: newTestAuth(t).v,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				t.Fatal(err)
			}
			return gw
		}
		replyTopicExists := func(topic string) bool {
			t.Helper()
			td, err := k.Admin(t).ListTopics(ctx, topic) // a new client: metadata is cached for 5s
			if err != nil {
				t.Fatal(err)
			}
			return td.Has(topic) && td[topic].Err == nil
		}

		clean, crash := start("gw-clean"), start("gw-crash")
		entries, err := registry.Read(ctx, cl, prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, gw := range []*Gateway{clean, crash} {
			e, ok := entries[gw.cfg.InstanceID]
			if !ok || e.ReplyTopic != gw.ReplyTopic() || !e.LiveAt(time.Now(), 30*time.Second) {
				t.Fatalf("%s in the registry: %+v (present %v), want live with reply topic %s", gw.cfg.InstanceID, e, ok, gw.ReplyTopic())
			}
			if !replyTopicExists(gw.ReplyTopic()) {
				t.Fatalf("reply topic %s missing", gw.ReplyTopic())
			}
		}

		if err := clean.Close(ctx, true); err != nil {
			t.Fatal(err)
		}
		if err := crash.Close(ctx, false); err != nil {
			t.Fatal(err)
		}
		entries, err = registry.Read(ctx, cl, prefix)
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := entries["gw-clean"]; ok {
			t.Errorf("cleanly closed gateway still registered: %+v", e)
		}
		if replyTopicExists(clean.ReplyTopic()) {
			t.Errorf("cleanly closed gateway's reply topic %s still exists", clean.ReplyTopic())
		}
		if _, ok := entries["gw-crash"]; !ok || !replyTopicExists(crash.ReplyTopic()) {
			t.Errorf("uncleanly closed gateway: registered %v, want its entry and reply topic kept", ok)
		}
	})
}
