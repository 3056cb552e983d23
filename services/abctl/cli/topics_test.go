package cli

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/answerback/answerback/libs/pipeline/topics"
	"github.com/answerback/answerback/libs/testenv"
)

// topics ensure creates every topic with its configuration, and on a second
// run verifies them and sets what drifted back.
func TestTopicsEnsure(t *testing.T) {
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		var first struct{ Topics []topics.State }
		jsonOf(t, ExitOK, &first, append(target(k, nil), "topics", "ensure", "--partitions", "3")...)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for _, s := range first.Topics {
				_, _ = k.Admin(t).DeleteTopics(ctx, s.Topic)
			}
		})
		if len(first.Topics) != 10 {
			t.Fatalf("want 10 topics (5 per domain), got %d: %+v", len(first.Topics), first.Topics)
		}
		byName := map[string]topics.State{}
		for _, s := range first.Topics {
			byName[s.Topic] = s
			if !s.Created || s.Partitions != 3 {
				t.Errorf("%s: created %v with %d partitions, want created with 3", s.Topic, s.Created, s.Partitions)
			}
		}
		n := topics.For(k.Prefix+".", "orders")
		if got := byName[n.Events].Configs["retention.ms"]; got != "-1" {
			t.Errorf("events retention.ms = %q, want -1", got)
		}
		if got := byName[n.Snapshots].Configs["cleanup.policy"]; got != "compact" {
			t.Errorf("snapshots cleanup.policy = %q, want compact", got)
		}

		// Someone shortens the events' retention by hand: ensure sets it back.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := k.Admin(t).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("3600000")}}, n.Events); err != nil {
			t.Fatal(err)
		}
		var second struct{ Topics []topics.State }
		jsonOf(t, ExitOK, &second, append(target(k, nil), "topics", "ensure")...)
		for _, s := range second.Topics {
			if s.Created {
				t.Errorf("%s created again", s.Topic)
			}
			if s.Topic == n.Events && s.Altered["retention.ms"] != "3600000" {
				t.Errorf("events: altered %v, want retention.ms set back from 3600000", s.Altered)
			}
			if s.Topic != n.Events && len(s.Altered) > 0 {
				t.Errorf("%s altered %v, want untouched", s.Topic, s.Altered)
			}
		}
		var third struct{ Topics []topics.State }
		jsonOf(t, ExitOK, &third, append(target(k, nil), "topics", "ensure")...)
		for _, s := range third.Topics {
			if s.Topic == n.Events && (len(s.Altered) > 0 || s.Configs["retention.ms"] != "-1") {
				t.Errorf("events after the fix: %+v", s)
			}
		}
	})
}
