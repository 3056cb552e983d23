package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/answerback/answerback/libs/testenv"
	aggregator "github.com/answerback/answerback/services/aggregator/app"
	projector "github.com/answerback/answerback/services/projector/app"
)

// TestExampleGetsReplies runs the example against a pipeline — the
// aggregator and the projector in this process, on Kafka of each kind and a
// database of the test's own — and checks the replies it printed: each
// command applied, at the version it made, the last with the order's total
// and the catalog item still valid for it.
func TestExampleGetsReplies(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		pg := testenv.NewPostgres(t)
		prefix := k.Prefix + "."
		log := slog.New(slog.DiscardHandler)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := aggregator.EnsureTopics(ctx, k.Seeds, prefix, 3); err != nil {
			t.Fatal(err)
		}
		pipeline, stopPipeline := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { // ended by stopPipeline
			defer wg.Done()
			if err := aggregator.Run(pipeline, aggregator.Config{Brokers: k.Seeds, TopicPrefix: prefix, InstanceID: "agg-" + k.Prefix, Partitions: 3, Logger: log}); err != nil {
				t.Errorf("aggregator: %v", err)
			}
		}()
		go func() { // ended by stopPipeline
			defer wg.Done()
			if err := projector.Run(pipeline, projector.Config{Brokers: k.Seeds, TopicPrefix: prefix, Pool: pg.Pool, Logger: log}); err != nil {
				t.Errorf("projector: %v", err)
			}
		}()
		defer func() { stopPipeline(); wg.Wait() }()

		var out bytes.Buffer
		err := run(ctx, settings{brokers: k.Seeds, prefix: prefix, dsn: pg.DSN, tenant: "acme", order: "o-1",
			logger: log, instance: "example-" + k.Prefix, waitForEachReply: 30 * time.Second}, &out)
		if err != nil {
			t.Fatalf("example: %v\n%s", err, out.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 3 {
			t.Fatalf("printed %d lines, want a reply per command:\n%s", len(lines), out.String())
		}
		for i, want := range []string{
			"catalog.upsert example-pear: applied at version 1: ",
			"orders.create o-1: applied at version 1: ",
			"orders.add-item o-1: applied at version 2: ",
		} {
			if !strings.HasPrefix(lines[i], want) {
				t.Errorf("line %d: %q, want it to begin %q", i+1, lines[i], want)
			}
		}
		if last := lines[2]; !strings.Contains(last, `"total":270`) || !strings.Contains(last, `"example-pear"`) {
			t.Errorf("the add-item reply lacks the order's total (3 × 90) or the valid item: %s", last)
		}
	})
}
