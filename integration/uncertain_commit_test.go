package integration

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/answerback/answerback/libs/testenv"
)

// TestUncertainCommitLeavesEveryVersionOnce: the orders aggregator's EndTxn
// is held back on the broker past the client's timeout, so the aggregator
// cannot tell whether its batch committed; the broker carries the held
// commit out just before the aggregator's next transaction. franz-go rewinds
// to the offsets committed before the batch and the command comes again.
// Whatever the broker made of the held commit, every version of the order
// must be on the events topic once, and the command answered once applied.
// The runtime reads the partition's state again from the snapshots topic
// after such an End (aggregate.Runtime.forget); here franz-go's recovery
// also bumps the producer's epoch, which aborts the held commit, so this
// scenario passes even without that reload. (Embedded Kafka only: it is the
// broker whose answers a test can hold back.)
func TestUncertainCommitLeavesEveryVersionOnce(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	k := &testenv.Kafka{Kind: testenv.KafkaEmbedded, Seeds: c.ListenAddrs(), Prefix: testenv.UniqueName("t"), Version: "kfake"}
	s := startStackWithOrder(t, k, stackOptions{aggregatorOpts: []kgo.Opt{
		// An EndTxn unanswered after a second fails at once, not retried.
		kgo.RequestTimeoutOverhead(time.Second),
		kgo.RetryTimeoutFn(func(key int16) time.Duration {
			if key == int16(kmsg.EndTxn) {
				return 100 * time.Millisecond
			}
			return 30 * time.Second
		}),
	}})

	// Hold back the orders aggregator's next commit until the aggregator,
	// having given up on its answer, goes on with its next transaction
	// (at most 3 s): the broker carries the commit out just before that.
	var armed, held atomic.Bool
	armed.Store(true)
	next := make(chan struct{})
	var nextOnce sync.Once
	c.ControlKey(int16(kmsg.EndTxn), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.EndTxnRequest)
		if req.Commit && strings.Contains(req.TransactionalID, "orders-aggregator") && armed.CompareAndSwap(true, false) {
			c.SleepControl(func() {
				select {
				case <-next:
				case <-time.After(3 * time.Second):
				}
			})
			held.Store(true)
		}
		return nil, nil, false // the broker handles it as usual
	})
	// The aggregator's next transactional request after the hold began
	// wakes the held commit, and waits a moment so that it is carried out first.
	nextTransaction := func(transactionalID string) {
		if armed.Load() || held.Load() || !strings.Contains(transactionalID, "orders-aggregator") {
			return
		}
		nextOnce.Do(func() {
			close(next)
			c.SleepControl(func() { time.Sleep(300 * time.Millisecond) })
		})
	}
	c.ControlKey(int16(kmsg.AddPartitionsToTxn), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if req := kreq.(*kmsg.AddPartitionsToTxnRequest); req.TransactionalID != "" {
			nextTransaction(req.TransactionalID)
		}
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if req := kreq.(*kmsg.ProduceRequest); req.TransactionID != nil {
			nextTransaction(*req.TransactionID)
		}
		return nil, nil, false
	})
	first := s.callWith(0, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "apple", "quantity": 2}, map[string]string{"Prefer": "wait=20"})
	for deadline := time.Now().Add(10 * time.Second); !held.Load() && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
	}
	if !held.Load() {
		t.Fatal("the commit was not held back: the test did not test anything")
	}
	t.Logf("add-item while its commit was held back: %d %s", first.Status, first.Body)
	if first.Status != http.StatusOK && first.Status != http.StatusAccepted {
		t.Fatalf("add-item: %d %s", first.Status, first.Body)
	}
	// The next command is decided on whatever state the aggregator now has.
	s.mustCall(0, http.StatusOK, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "pear", "quantity": 1})

	events := s.eventsOf("orders", "o")
	for i, ev := range events {
		if ev.Version != int64(i+1) {
			var versions []int64
			for _, e := range events {
				versions = append(versions, e.Version)
			}
			t.Fatalf("order o's events have versions %v, want 1..%d each once", versions, len(events))
		}
	}
	if len(events) != 3 {
		t.Errorf("%d events of order o, want 3 (created, two items added)", len(events))
	}
	view := s.mustCall(0, http.StatusOK, http.MethodGet, "/v1/orders/o?minVersion=3", nil).json(t)
	lines := view["order"].(map[string]any)["lines"].([]any)
	if view["version"] != float64(3) || len(lines) != 2 {
		t.Errorf("view: version %v with %d lines, want version 3 with 2", view["version"], len(lines))
	}
}
