package testenv

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaKind names where a test's Kafka comes from.
type KafkaKind string

// The kinds of Kafka a test can run on.
const (
	KafkaReal     KafkaKind = "real"     // the broker named by KAFKA_BROKERS
	KafkaEmbedded KafkaKind = "embedded" // franz-go's in-process kfake
)

// Kafka is one test's view of a Kafka cluster: seeds and a unique prefix for
// the topics, groups and transactional IDs the test creates.
type Kafka struct {
	Kind   KafkaKind
	Seeds  []string
	Prefix string
	// Version is the broker software, as far as known ("kfake", "Apache Kafka").
	Version string
}

// Name returns name under the test's unique prefix.
func (k *Kafka) Name(name string) string { return k.Prefix + "." + name }

// Client returns a client on the cluster, closed when the test ends.
func (k *Kafka) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	opts = append([]kgo.Opt{kgo.SeedBrokers(k.Seeds...)}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatalf("kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Admin returns an admin client, closed when the test ends.
func (k *Kafka) Admin(t testing.TB) *kadm.Client {
	t.Helper()
	return kadm.NewClient(k.Client(t))
}

// CreateTopic creates topic (a full name, usually from Name) with the given
// partitions and configs, deleting it when the test ends.
func (k *Kafka) CreateTopic(t testing.TB, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	adm := k.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, -1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = kadm.NewClient(mustClient(k.Seeds)).DeleteTopics(ctx, topic)
	})
}

func mustClient(seeds []string) *kgo.Client {
	cl, _ := kgo.NewClient(kgo.SeedBrokers(seeds...))
	return cl
}

var realKafkaProbe probe

// RealKafka returns the real broker named by KAFKA_BROKERS. When it is unset
// or does not answer, the test is skipped — or fails under CI=true.
func RealKafka(t testing.TB) *Kafka {
	t.Helper()
	raw := strings.TrimSpace(os.Getenv(EnvKafkaBrokers))
	if raw == "" {
		Unavailable(t, "real Kafka: %s is not set", EnvKafkaBrokers)
	}
	seeds := strings.Split(raw, ",")
	err := realKafkaProbe.do(func() error {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
		if err != nil {
			return err
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_, err = kadm.NewClient(cl).ListBrokers(ctx)
		return err
	})
	if err != nil {
		Unavailable(t, "real Kafka at %s does not answer: %v", raw, err)
	}
	return &Kafka{Kind: KafkaReal, Seeds: seeds, Prefix: UniqueName("t"), Version: "Apache Kafka"}
}

// EmbeddedKafka starts an in-process kfake cluster of three brokers for this
// test, closed when it ends.
func EmbeddedKafka(t testing.TB, opts ...kfake.Opt) *Kafka {
	t.Helper()
	opts = append([]kfake.Opt{kfake.NumBrokers(3)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return &Kafka{Kind: KafkaEmbedded, Seeds: c.ListenAddrs(), Prefix: UniqueName("t"), Version: "kfake"}
}

// EachKafka runs f as a subtest on every kind of Kafka: "kafka=real" and
// "kafka=embedded". Use it for tests of Kafka semantics, so that both the real
// broker and the embedded default are held to the same behaviour.
func EachKafka(t *testing.T, f func(t *testing.T, k *Kafka)) {
	t.Helper()
	for _, kind := range []KafkaKind{KafkaReal, KafkaEmbedded} {
		t.Run(fmt.Sprintf("kafka=%s", kind), func(t *testing.T) {
			var k *Kafka
			if kind == KafkaReal {
				k = RealKafka(t)
			} else {
				k = EmbeddedKafka(t)
			}
			f(t, k)
		})
	}
}
