package integration

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/answerback/answerback/libs/domain/catalog"
	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/testenv"
)

// TestEventsReadWithCloudEventsSDK: the events topics, read with another
// Kafka client (Sarama) and decoded by the official CloudEvents Go SDK's
// Kafka binding — not by the pipeline's own decoder — are valid CloudEvents
// in binary mode with the attributes and extensions the contract names.
func TestEventsReadWithCloudEventsSDK(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStack(t, k, stackOptions{})
		s.seedCatalog(defaultCatalog)
		s.mustCall(0, http.StatusCreated, http.MethodPost, "/v1/orders", map[string]any{"id": "ce-1", "customerId": "c"})
		s.mustCall(1, http.StatusOK, http.MethodPost, "/v1/orders/ce-1/items", map[string]any{"sku": "apple", "quantity": 2})
		s.mustCall(0, http.StatusOK, http.MethodPost, "/v1/orders/ce-1/submit", nil)

		known := map[string]bool{orders.EventCreated: true, orders.EventItemAdded: true, orders.EventSubmitted: true, catalog.EventItemUpserted: true}
		for domain, want := range map[string]int{"orders": 3, "catalog": len(defaultCatalog)} {
			msgs := readWithSarama(t, k.Seeds, s.topics(domain).Events)
			if len(msgs) != want {
				t.Fatalf("%s: %d events, want %d", domain, len(msgs), want)
			}
			for _, cm := range msgs {
				msg := kafka_sarama.NewMessageFromConsumerMessage(cm)
				if enc := msg.ReadEncoding(); enc != binding.EncodingBinary {
					t.Fatalf("%s/%d@%d: encoding %v, want binary", cm.Topic, cm.Partition, cm.Offset, enc)
				}
				ev, err := binding.ToEvent(context.Background(), msg)
				if err != nil {
					t.Fatalf("%s/%d@%d: the SDK does not read it: %v", cm.Topic, cm.Partition, cm.Offset, err)
				}
				checkCloudEvent(t, domain, string(cm.Key), cm.Value, ev, known)
			}
		}
	})
}

// checkCloudEvent checks one event as the SDK decoded it against the contract.
func checkCloudEvent(t *testing.T, domain, key string, value []byte, ev *event.Event, known map[string]bool) {
	t.Helper()
	if err := ev.Validate(); err != nil {
		t.Errorf("%s: invalid CloudEvent: %v", ev.ID(), err)
	}
	ext := ev.Extensions()
	seq, err := strconv.ParseInt(fmt.Sprint(ext["sequence"]), 10, 64)
	if err != nil || seq < 1 {
		t.Errorf("%s: sequence %v, want the aggregate version", ev.ID(), ext["sequence"])
	}
	switch {
	case ev.SpecVersion() != "1.0":
		t.Errorf("%s: specversion %s", ev.ID(), ev.SpecVersion())
	case ev.ID() != fmt.Sprintf("%s@%d", key, seq):
		t.Errorf("id %s, want key@sequence %s@%d", ev.ID(), key, seq)
	case ev.Source() != "/answerback/"+domain:
		t.Errorf("%s: source %s", ev.ID(), ev.Source())
	case !known[ev.Type()]:
		t.Errorf("%s: type %s", ev.ID(), ev.Type())
	case key != fmt.Sprint(ext["tenant"])+"/"+ev.Subject():
		t.Errorf("%s: record key %q, want <tenant>/<subject> (%v/%s)", ev.ID(), key, ext["tenant"], ev.Subject())
	case time.Since(ev.Time()) > time.Hour || ev.Time().IsZero():
		t.Errorf("%s: time %s", ev.ID(), ev.Time())
	case ev.DataContentType() != "application/json":
		t.Errorf("%s: datacontenttype %q", ev.ID(), ev.DataContentType())
	case string(ev.Data()) != string(value):
		t.Errorf("%s: data %s, want the record value %s", ev.ID(), ev.Data(), value)
	case ext["correlationid"] == nil || ext["causationid"] != ext["correlationid"]:
		t.Errorf("%s: correlationid %v, causationid %v: want both, the command ID", ev.ID(), ext["correlationid"], ext["causationid"])
	case ext["tenant"] != testTenant:
		t.Errorf("%s: tenant %v", ev.ID(), ext["tenant"])
	}
}

// readWithSarama reads every committed record of topic with a Sarama
// consumer (read_committed), up to the end offsets at the call.
func readWithSarama(t *testing.T, brokers []string, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_0_0_0
	cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	cfg.Consumer.Return.Errors = true
	client, err := sarama.NewClient(brokers, cfg)
	if err != nil {
		t.Fatalf("sarama: %v", err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatalf("sarama: %v", err)
	}
	defer consumer.Close()
	partitions, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("sarama: partitions of %s: %v", topic, err)
	}
	var out []*sarama.ConsumerMessage
	for _, p := range partitions {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("sarama: end of %s/%d: %v", topic, p, err)
		}
		if end == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("sarama: consume %s/%d: %v", topic, p, err)
		}
	read:
		for {
			select {
			case m := <-pc.Messages():
				out = append(out, m)
				if m.Offset >= end-2 { // the last record before the end is the commit marker
					break read
				}
			case err := <-pc.Errors():
				t.Fatalf("sarama: %s/%d: %v", topic, p, err)
			case <-time.After(5 * time.Second):
				// Aborted records and markers are skipped: nothing more to read.
				break read
			}
		}
		pc.Close()
	}
	return out
}
