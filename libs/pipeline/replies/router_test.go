package replies

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/testenv"
)

// TestRouterCorrelates: a registered waiter gets its reply, even one produced
// before the router polls; a reply after the waiter gave up is counted late,
// one nobody registered unknown, and a malformed one malformed.
func TestRouterCorrelates(t *testing.T) {
	t.Parallel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	seeds := cluster.ListenAddrs()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	r, err := Open(ctx, Config{Brokers: seeds, Topic: "replies.gw-test"})
	if err != nil {
		t.Fatal(err)
	}
	producer, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	reply := func(id string) *kgo.Record {
		return envelope.EncodeReply(r.Topic(), envelope.Reply{CommandID: id, Outcome: envelope.Applied, Version: 1, Body: []byte(`{}`)})
	}

	// Registered before the reply exists, and before the router runs.
	early := r.Register("early")
	gaveUp := r.Register("gave-up")
	gaveUp.Done()
	malformed := &kgo.Record{Topic: r.Topic(), Value: []byte("{}")}
	if err := producer.ProduceSync(ctx, reply("early"), reply("gave-up"), reply("stranger"), malformed).FirstErr(); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = r.Run(runCtx); close(done) }()

	got, err := early.Wait(ctx)
	if err != nil || got.CommandID != "early" || got.Outcome != envelope.Applied {
		t.Fatalf("early waiter got %+v, %v", got, err)
	}
	early.Done()
	testenv.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if st := r.Stats(); st.Delivered != 1 || st.Late != 1 || st.Unknown != 1 || st.Malformed != 1 || st.Waiting != 0 {
			return fmt.Errorf("stats %+v: want 1 delivered, 1 late, 1 unknown, 1 malformed, none waiting", st)
		}
		return nil
	})

	stop()
	<-done
	if err := r.Close(ctx, true); err != nil {
		t.Fatalf("close with topic deletion: %v", err)
	}
}
