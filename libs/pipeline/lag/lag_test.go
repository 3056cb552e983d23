package lag

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
)

func fetch(topic string, partition int32, hwm int64, offsets ...int64) kgo.Fetches {
	p := kgo.FetchPartition{Partition: partition, HighWatermark: hwm}
	for _, o := range offsets {
		p.Records = append(p.Records, &kgo.Record{Topic: topic, Partition: partition, Offset: o})
	}
	return kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: topic, Partitions: []kgo.FetchPartition{p}}}}}
}

// TestObserveSetsLagPerPartition: the lag is the high watermark minus the
// offset after the last record fetched; an empty fetch leaves it as it was.
func TestObserveSetsLagPerPartition(t *testing.T) {
	Observe("lag-test", fetch("lag-test.events", 3, 100, 40, 41, 42))
	if got := testutil.ToFloat64(consumerLag.WithLabelValues("lag-test", "lag-test.events", "3")); got != 57 {
		t.Fatalf("lag = %v, want 57", got)
	}
	Observe("lag-test", fetch("lag-test.events", 3, 120))
	if got := testutil.ToFloat64(consumerLag.WithLabelValues("lag-test", "lag-test.events", "3")); got != 57 {
		t.Fatalf("lag after an empty fetch = %v, want 57 kept", got)
	}
	Observe("lag-test", fetch("lag-test.events", 3, 120, 119))
	if got := testutil.ToFloat64(consumerLag.WithLabelValues("lag-test", "lag-test.events", "3")); got != 0 {
		t.Fatalf("lag when caught up = %v, want 0", got)
	}
}
