package registry

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/topics"
	"github.com/answerback/answerback/libs/testenv"
)

// announce starts an announcer for instance under k's prefix; abandoned when
// the test ends if nothing stopped it before.
func announce(t *testing.T, ctx context.Context, k *testenv.Kafka, instance string, interval time.Duration) *Announcer {
	t.Helper()
	a, err := Announce(ctx, Config{
		Brokers: k.Seeds, Prefix: k.Prefix + ".", Instance: instance,
		ReplyTopic: topics.ReplyTopic(k.Prefix+".", instance), Interval: interval,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Abandon)
	return a
}

// Announced instances are read back with their entry and a fresh heartbeat
// that keeps moving; a closed one is gone at once (tombstone); an abandoned
// one stays but turns stale.
func TestAnnounceReadTombstone(t *testing.T) {
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		ctx := testenv.Context(t, time.Minute)
		cl := k.Client(t)
		prefix := k.Prefix + "."
		t.Cleanup(func() { _, _ = k.Admin(t).DeleteTopics(context.Background(), topics.GatewayRegistry(prefix)) })

		if got, err := Read(ctx, cl, prefix); err != nil || len(got) != 0 {
			t.Fatalf("registry before any announcement: %v, %v; want empty", got, err)
		}
		before := time.Now()
		closing := announce(t, ctx, k, "gw-closing", 100*time.Millisecond)
		crashing := announce(t, ctx, k, "gw-crashing", 100*time.Millisecond)

		got, err := Read(ctx, cl, prefix)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("registry: %+v, want 2 instances", got)
		}
		e := got["gw-closing"]
		host, _ := os.Hostname()
		if e.ReplyTopic != topics.ReplyTopic(prefix, "gw-closing") || e.Host != host || e.PID != os.Getpid() ||
			e.Interval != 100*time.Millisecond || e.StartedAt.Before(before) || e.HeartbeatAt.Before(e.StartedAt) {
			t.Errorf("entry %+v", e)
		}
		if !e.LiveAt(time.Now(), 5*time.Second) {
			t.Errorf("fresh entry not live: %+v", e)
		}

		// Heartbeats move on.
		first := e.HeartbeatAt
		waitFor(t, ctx, cl, prefix, "a later heartbeat", func(m map[string]Entry) bool { return m["gw-closing"].HeartbeatAt.After(first) })

		// A clean stop leaves the registry at once.
		if err := closing.Close(ctx); err != nil {
			t.Fatal(err)
		}
		got, err = Read(ctx, cl, prefix)
		if _, ok := got["gw-closing"]; ok || err != nil {
			t.Fatalf("after Close: %+v, %v; want gw-closing gone", got, err)
		}

		// A crash leaves a heartbeat that turns stale.
		crashing.Abandon()
		last, err := Read(ctx, cl, prefix)
		if err != nil {
			t.Fatal(err)
		}
		stale := last["gw-crashing"]
		time.Sleep(500 * time.Millisecond)
		again, err := Read(ctx, cl, prefix)
		if err != nil {
			t.Fatal(err)
		}
		if again["gw-crashing"].HeartbeatAt != stale.HeartbeatAt {
			t.Errorf("heartbeat moved after Abandon: %v → %v", stale.HeartbeatAt, again["gw-crashing"].HeartbeatAt)
		}
		if stale.LiveAt(time.Now(), 400*time.Millisecond) || !stale.LiveAt(time.Now(), time.Hour) {
			t.Errorf("abandoned entry %+v: want stale after 400ms, live within an hour", stale)
		}
	})
}

// An entry that cannot be decoded makes Read fail — a reader cannot tell
// whether its instance is live — until a tombstone replaces it.
func TestReadRefusesUnreadableEntry(t *testing.T) {
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		ctx := testenv.Context(t, time.Minute)
		cl := k.Client(t)
		prefix := k.Prefix + "."
		t.Cleanup(func() { _, _ = k.Admin(t).DeleteTopics(context.Background(), topics.GatewayRegistry(prefix)) })
		announce(t, ctx, k, "gw-1", time.Hour)
		topic := topics.GatewayRegistry(prefix)
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("bad"), Value: []byte("{")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if got, err := Read(ctx, cl, prefix); err == nil {
			t.Fatalf("read %+v, want an error for the unreadable entry", got)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("bad")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		got, err := Read(ctx, cl, prefix)
		if _, ok := got["gw-1"]; err != nil || len(got) != 1 || !ok {
			t.Fatalf("after the tombstone: %+v, %v; want gw-1 only", got, err)
		}
	})
}

// LiveAt: younger than staleAfter is live, never stale before two intervals,
// a heartbeat from the future is live.
func TestLiveAt(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, tc := range []struct {
		age, interval, staleAfter time.Duration
		live                      bool
	}{
		{age: 10 * time.Second, interval: 5 * time.Second, staleAfter: 30 * time.Second, live: true},
		{age: 31 * time.Second, interval: 5 * time.Second, staleAfter: 30 * time.Second, live: false},
		{age: 90 * time.Second, interval: time.Minute, staleAfter: 30 * time.Second, live: true},
		{age: 121 * time.Second, interval: time.Minute, staleAfter: 30 * time.Second, live: false},
		{age: -time.Minute, interval: time.Second, staleAfter: time.Second, live: true},
	} {
		e := Entry{HeartbeatAt: now.Add(-tc.age), Interval: tc.interval}
		if got := e.LiveAt(now, tc.staleAfter); got != tc.live {
			t.Errorf("heartbeat %s ago, interval %s, stale after %s: live %v, want %v", tc.age, tc.interval, tc.staleAfter, got, tc.live)
		}
	}
}

// waitFor reads the registry until cond holds, failing after 10s.
func waitFor(t *testing.T, ctx context.Context, cl *kgo.Client, prefix, what string, cond func(map[string]Entry) bool) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		got, err := Read(ctx, cl, prefix)
		if err != nil || !cond(got) {
			return fmt.Errorf("waiting for %s: registry %+v, %w", what, got, err)
		}
		return nil
	})
}

// TestSkewedGatewayClock: a gateway whose clock is 30 s behind or ahead
// stays live to a reader whose clock is right, and its heartbeat reads as
// the broker's time, not its own: heartbeats are stamped at append
// (LogAppendTime), so `abctl replies gc` never takes a live gateway whose
// clock is off for a crashed one. Apache Kafka only: the embedded kfake
// broker does not stamp records at append (and `make run` has one clock).
func TestSkewedGatewayClock(t *testing.T) {
	k := testenv.RealKafka(t)
	ctx := testenv.Context(t, time.Minute)
	prefix := k.Prefix + "."
	t.Cleanup(func() { _, _ = k.Admin(t).DeleteTopics(context.Background(), topics.GatewayRegistry(prefix)) })
	for _, skew := range []time.Duration{-30 * time.Second, 30 * time.Second} {
		instance := fmt.Sprintf("gw-skewed%+d", int(skew.Seconds()))
		a, err := Announce(ctx, Config{
			Brokers: k.Seeds, Prefix: prefix, Instance: instance, ReplyTopic: topics.ReplyTopic(prefix, instance),
			Interval: 100 * time.Millisecond, Clock: func() time.Time { return time.Now().Add(skew) },
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Abandon)
	}
	time.Sleep(300 * time.Millisecond) // a few heartbeats
	got, err := Read(ctx, k.Client(t), prefix)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, instance := range []string{"gw-skewed-30", "gw-skewed+30"} {
		e, ok := got[instance]
		if !ok {
			t.Fatalf("%s not in the registry: %+v", instance, got)
		}
		if off := now.Sub(e.HeartbeatAt); off < -5*time.Second || off > 5*time.Second {
			t.Errorf("%s's heartbeat reads %s from the reader's clock: want the broker's time, not the gateway's skewed one", instance, off)
		}
		if !e.LiveAt(now, 30*time.Second) {
			t.Errorf("%s, whose clock is off by 30 s, reads as stale with a 30 s bound", instance)
		}
	}
}
