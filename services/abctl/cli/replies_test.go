package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	gateways "github.com/answerback/answerback/libs/pipeline/registry"
	"github.com/answerback/answerback/libs/pipeline/topics"
	"github.com/answerback/answerback/libs/testenv"
)

// replies gc deletes a dead gateway's topic and leaves a live one: of three
// reply topics — one whose gateway heartbeats, one whose gateway stopped
// heartbeating without a goodbye, one no registry entry names — gc deletes
// the last two. list and --dry-run report the same plan and delete nothing.
func TestRepliesGC(t *testing.T) {
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		ctx := testenv.Context(t, 2*time.Minute)
		prefix := k.Prefix + "."
		t.Cleanup(func() { _, _ = k.Admin(t).DeleteTopics(context.Background(), topics.GatewayRegistry(prefix)) })
		announce := func(instance string, interval time.Duration) *gateways.Announcer {
			a, err := gateways.Announce(ctx, gateways.Config{
				Brokers: k.Seeds, Prefix: prefix, Instance: instance,
				ReplyTopic: topics.ReplyTopic(prefix, instance), Interval: interval,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(a.Abandon)
			return a
		}
		topic := func(instance string) string { return topics.ReplyTopic(prefix, instance) }

		announce("gw-live", 200*time.Millisecond)
		k.CreateTopic(t, topic("gw-live"), 1, nil)
		dead := announce("gw-dead", 100*time.Millisecond)
		k.CreateTopic(t, topic("gw-dead"), 1, nil)
		dead.Abandon() // a crash: no tombstone
		k.CreateTopic(t, topic("gw-ghost"), 1, nil)
		time.Sleep(1500 * time.Millisecond) // gw-dead's last heartbeat is now older than --stale-after

		want := map[string][2]string{ // instance → state, planned action
			"gw-live":  {"live", "keep"},
			"gw-dead":  {"stale", "would-delete"},
			"gw-ghost": {"unregistered", "would-delete"},
		}
		check := func(args []string, want map[string][2]string) repliesReport {
			t.Helper()
			var rep repliesReport
			jsonOf(t, ExitOK, &rep, append(append(target(k, nil), args...), "--stale-after", "1s")...)
			if len(rep.Replies) != len(want) {
				t.Fatalf("%s: %+v, want %d rows", strings.Join(args, " "), rep.Replies, len(want))
			}
			for _, r := range rep.Replies {
				w, ok := want[r.Instance]
				wantTopic := topic(r.Instance)
				if w[1] == "" { // a registry entry without a topic
					wantTopic = ""
				}
				if !ok || r.Topic != wantTopic || r.State != w[0] || r.Action != w[1] {
					t.Errorf("%s: row %+v, want state %s, action %s", strings.Join(args, " "), r, w[0], w[1])
				}
				if (r.State == "unregistered") != (r.LastHeartbeat == nil) {
					t.Errorf("%s: row %+v: last heartbeat wrong", strings.Join(args, " "), r)
				}
			}
			return rep
		}
		check([]string{"replies", "list"}, want)
		if rep := check([]string{"replies", "gc", "--dry-run"}, want); !rep.DryRun {
			t.Errorf("dry run not reported: %+v", rep)
		}
		if r := abctl(t, "", append(target(k, nil), "replies", "list", "--stale-after", "1s")...); r.code != ExitOK || !strings.Contains(r.out, "unregistered") {
			t.Errorf("replies list (table): exit %d\n%s%s", r.code, r.out, r.errOut)
		}
		exists := func(topic string) bool {
			td, err := k.Admin(t).ListTopics(ctx, topic) // a new client each time: metadata is cached for 5s
			if err != nil {
				t.Fatal(err)
			}
			return td.Has(topic) && td[topic].Err == nil
		}
		for instance := range want {
			if !exists(topic(instance)) {
				t.Fatalf("%s deleted by list or --dry-run", topic(instance))
			}
		}

		check([]string{"replies", "gc"}, map[string][2]string{
			"gw-live":  {"live", "keep"},
			"gw-dead":  {"stale", "deleted"},
			"gw-ghost": {"unregistered", "deleted"},
		})
		if !exists(topic("gw-live")) {
			t.Errorf("the live gateway's topic was deleted")
		}
		for _, instance := range []string{"gw-dead", "gw-ghost"} {
			if exists(topic(instance)) {
				t.Errorf("%s still exists after gc", topic(instance))
			}
		}
		// Run again: nothing left to do; list shows the dead gateway's entry
		// without a topic.
		check([]string{"replies", "gc"}, map[string][2]string{"gw-live": {"live", "keep"}})
		check([]string{"replies", "list"}, map[string][2]string{"gw-live": {"live", "keep"}, "gw-dead": {"stale", ""}})
	})
}

// Without a registry topic no gateway has ever registered: gateways that
// predate the registry may be live, so gc refuses and deletes nothing.
func TestRepliesGCRefusesWithoutRegistry(t *testing.T) {
	k := testenv.EmbeddedKafka(t)
	k.CreateTopic(t, topics.ReplyTopic(k.Prefix+".", "gw-old"), 1, nil)
	var e struct {
		Error    string `json:"error"`
		ExitCode int    `json:"exitCode"`
	}
	jsonOf(t, ExitRefused, &e, append(target(k, nil), "replies", "gc")...)
	if !strings.Contains(e.Error, "registry") {
		t.Errorf("error %q does not say why", e.Error)
	}
	td, err := k.Admin(t).ListTopics(context.Background(), topics.ReplyTopic(k.Prefix+".", "gw-old"))
	if err != nil || len(td.Names()) != 1 {
		t.Errorf("the topic is gone: %v %v", td, err)
	}
}

// A topic's owner is its instance's entry, or a live entry naming the topic;
// without either it is unregistered.
func TestReplyRowFor(t *testing.T) {
	t.Parallel()
	now := time.Now()
	entries := map[string]gateways.Entry{
		"a":     {ReplyTopic: "replies.a", HeartbeatAt: now, Interval: time.Second},
		"b":     {ReplyTopic: "replies.b", HeartbeatAt: now.Add(-time.Hour), Interval: time.Second},
		"other": {ReplyTopic: "replies.c", HeartbeatAt: now, Interval: time.Second},
	}
	for topic, want := range map[string]string{"replies.a": "live", "replies.b": "stale", "replies.c": "live", "replies.d": "unregistered"} {
		if got := replyRowFor(entries, topic, strings.TrimPrefix(topic, "replies."), now, 30*time.Second); got.State != want {
			t.Errorf("%s: %+v, want %s", topic, got, want)
		}
	}
}
