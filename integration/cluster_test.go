package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/deploy/local/kafkalocal"
	"github.com/answerback/answerback/libs/testenv"
)

// EnvKafkaJarsCache names the folder holding the Kafka jars (make test sets it
// to the project's cache, so they are fetched once).
const EnvKafkaJarsCache = "KAFKA_JARS_CACHE"

// TestThreeNodeClusterSurvivesBrokerKill starts a three-node KRaft cluster
// (RF 3, min.insync.replicas=2), SIGKILLs the leader of a partition while
// acks=all produces go on, checks that every produce still succeeds, then
// restarts the broker and waits until it is back in every ISR.
func TestThreeNodeClusterSurvivesBrokerKill(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"java", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, "three-node Kafka cluster: %s not on PATH", tool)
		}
	}
	ctx := testenv.Context(t, 5*time.Minute)
	cache := os.Getenv(EnvKafkaJarsCache)
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "answerback-kafka-cache")
	}
	base := testenv.FreeKafkaPorts(t, 3)
	cluster, err := kafkalocal.Start(ctx, kafkalocal.Options{Dir: t.TempDir(), CacheDir: cache, Nodes: 3, Port: base})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("three-node cluster up at %v", cluster.Seeds())
	t.Cleanup(func() {
		if err := cluster.Stop(); err != nil {
			t.Errorf("stop cluster: %v", err)
		}
	})

	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cluster.Seeds()...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(60*time.Second),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	const topic = "replicated"
	resp, err := adm.CreateTopic(ctx, 3, 3, map[string]*string{"min.insync.replicas": kadm.StringPtr("2")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create RF 3 topic: %v", err)
	}
	waitISR(ctx, t, adm, topic, 3)

	produce := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			r := &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i % 7)), Value: []byte(strconv.Itoa(i))}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("acks=all produce %d: %v", i, err)
			}
		}
	}
	produce(0, 100)

	topics, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	victim := int(topics[topic].Partitions[0].Leader)
	if err := cluster.Kill(victim); err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGKILLed broker %d, leader of %s/0", victim, topic)
	produce(100, 200)
	t.Logf("100 acks=all produces succeeded with broker %d down", victim)

	if err := cluster.Restart(ctx, victim); err != nil {
		t.Fatalf("restart broker %d: %v", victim, err)
	}
	waitISR(ctx, t, adm, topic, 3)
	t.Logf("broker %d rejoined every ISR", victim)

	consumer, err := kgo.NewClient(kgo.SeedBrokers(cluster.Seeds()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	seen := map[string]int{}
	for len(seen) < 200 {
		fetches := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read back %d of 200 records", len(seen))
		}
		fetches.EachRecord(func(r *kgo.Record) { seen[string(r.Value)]++ })
	}
	for i := range 200 {
		if c := seen[strconv.Itoa(i)]; c != 1 {
			t.Errorf("record %d read %d times", i, c)
		}
	}
}

// waitISR waits until every partition of topic has want in-sync replicas.
func waitISR(ctx context.Context, t *testing.T, adm *kadm.Client, topic string, want int) {
	t.Helper()
	for {
		topics, err := adm.ListTopics(ctx, topic)
		if err == nil && topics[topic].Err == nil {
			ok := len(topics[topic].Partitions) > 0
			for _, p := range topics[topic].Partitions {
				ok = ok && len(p.ISR) == want && p.Leader >= 0
			}
			if ok {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("partitions of %s never reached %d in-sync replicas (last error %v)", topic, want, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
