package main

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/requestreply"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/pipeline/envelope"
)

func TestReplyRoutingByOperation(t *testing.T) {
	rs := &wmReplies{waiters: map[string]chan *message.Message{}}
	in := make(chan *message.Message)
	go rs.route(in)
	defer close(in)

	ctxA, cancelA := context.WithCancel(context.Background())
	a, err := rs.subscriber("a").Subscribe(ctxA, wmReplyTopic)
	if err != nil {
		t.Fatal(err)
	}
	b, err := rs.subscriber("b").Subscribe(context.Background(), wmReplyTopic)
	if err != nil {
		t.Fatal(err)
	}
	reply := func(op string) *message.Message {
		msg := message.NewMessage(watermill.NewUUID(), []byte(op))
		msg.Metadata.Set(requestreply.OperationIDMetadataKey, op)
		return msg
	}
	stray := reply("nobody")
	in <- stray
	in <- reply("b")
	in <- reply("a")
	if got := string((<-a).Payload); got != "a" {
		t.Errorf("waiter a got the reply to %q", got)
	}
	if got := string((<-b).Payload); got != "b" {
		t.Errorf("waiter b got the reply to %q", got)
	}
	select {
	case <-stray.Acked():
	case <-time.After(time.Second):
		t.Error("a reply nobody waits for is not acked")
	}

	cancelA()
	select {
	case _, open := <-a:
		if open {
			t.Error("a got a second reply")
		}
	case <-time.After(time.Second):
		t.Fatal("a's channel is still open after its context ended")
	}
	rs.mu.Lock()
	_, waiting := rs.waiters["a"]
	rs.mu.Unlock()
	if waiting {
		t.Error("a is still registered after its context ended")
	}
	in <- reply("a") // nobody waits any more: dropped, no panic
}

// replyFromEvent is a command bus that stands for the whole pipeline: the
// command's event carries its reply address (as the peer's EventBus.OnPublish
// copies it) and the event's handler answers through the backend.
type replyFromEvent struct {
	backend *requestreply.PubSubBackend[wmResult]
	body    json.RawMessage
}

func (f replyFromEvent) SendWithModifiedMessage(ctx context.Context, cmd any, modify func(*message.Message) error) error {
	cmdMsg := message.NewMessage(watermill.NewUUID(), nil)
	cmdMsg.Metadata.Set(wmReplyToMeta, commandOf(cmd).ReplyTo)
	if err := modify(cmdMsg); err != nil {
		return err
	}
	evMsg := message.NewMessage(watermill.NewUUID(), nil)
	for _, k := range []string{requestreply.OperationIDMetadataKey, wmReplyToMeta} {
		evMsg.Metadata.Set(k, cmdMsg.Metadata.Get(k))
	}
	go func() { // the event handler, later
		_ = f.backend.OnCommandProcessed(ctx, requestreply.BackendOnCommandProcessedParams[wmResult]{
			Command: cmd, CommandMessage: evMsg, HandlerResult: wmResult{Body: f.body},
		})
	}()
	return nil
}

func TestReplyFromTheEventHandlerReachesSendWithReply(t *testing.T) {
	pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer pubsub.Close()
	msgs, err := pubsub.Subscribe(context.Background(), wmReplyTopic)
	if err != nil {
		t.Fatal(err)
	}
	rs := &wmReplies{waiters: map[string]chan *message.Message{}}
	go rs.route(msgs)
	backend, err := requestreply.NewPubSubBackend(requestreply.PubSubBackendConfig{
		Publisher: pubsub,
		SubscriberConstructor: func(params requestreply.PubSubBackendSubscribeParams) (message.Subscriber, error) {
			return rs.subscriber(string(params.OperationID)), nil
		},
		GeneratePublishTopic: func(params requestreply.PubSubBackendPublishParams) (string, error) {
			return params.CommandMessage.Metadata.Get(wmReplyToMeta), nil
		},
		GenerateSubscribeTopic: func(requestreply.PubSubBackendSubscribeParams) (string, error) { return wmReplyTopic, nil },
		ListenForReplyTimeout:  ptr(5 * time.Second),
	}, requestreply.BackendPubsubJSONMarshaler[wmResult]{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 20 { // concurrent requests each get their own reply
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, _ := json.Marshal(map[string]int{"n": i})
			bus := replyFromEvent{backend: backend, body: body}
			cmd := &orderCommand{envelope.Command{Meta: envelope.Meta{CommandID: watermill.NewUUID(), AggregateID: "o", ReplyTo: wmReplyTopic}}}
			reply, err := requestreply.SendWithReply(context.Background(), bus, backend, cmd)
			if err != nil || reply.Error != nil {
				t.Errorf("request %d: %v %v", i, err, reply.Error)
				return
			}
			if string(reply.HandlerResult.Body) != string(body) {
				t.Errorf("request %d got %s", i, reply.HandlerResult.Body)
			}
		}()
	}
	wg.Wait()
}

func TestDeciderRunsTheDomainCode(t *testing.T) {
	decide := decider(orders.Decide, orders.Evolve)
	now := time.Now().UTC()
	cmd := func(typ string, data any) envelope.Command {
		b, _ := json.Marshal(data)
		return envelope.Command{Meta: envelope.Meta{CommandID: watermill.NewUUID(), AggregateID: "o-1", ExpectedVersion: envelope.NoVersion}, Type: typ, Data: b}
	}
	if _, reject, _, err := decide(nil, 0, cmd(orders.CommandAddItem, orders.AddItem{SKU: "sku-01", Quantity: 1}), now); err != nil || reject == nil {
		t.Fatalf("adding to an order that does not exist: reject %v, err %v", reject, err)
	}
	evs, reject, state, err := decide(nil, 0, cmd(orders.CommandCreate, orders.Create{CustomerID: "c"}), now)
	if err != nil || reject != nil || len(evs) != 1 || evs[0].Version != 1 || !evs[0].LastOfCommand() {
		t.Fatalf("create: events %+v, reject %v, err %v", evs, reject, err)
	}
	evs, reject, state, err = decide(state, 1, cmd(orders.CommandAddItem, orders.AddItem{SKU: "sku-01", Quantity: 2}), now)
	if err != nil || reject != nil || len(evs) != 1 || evs[0].Version != 2 || evs[0].Type != orders.EventItemAdded {
		t.Fatalf("add item: events %+v, reject %v, err %v", evs, reject, err)
	}
	var o orders.Order
	if err := json.Unmarshal(state, &o); err != nil || o.Lines["sku-01"] != 2 {
		t.Fatalf("state after add item: %s (%v)", state, err)
	}
}
