package main

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestEmbeddedBrokerCountsRequests: every request the embedded broker
// receives is counted by API, and served as before.
func TestEmbeddedBrokerCountsRequests(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	countRequests(cluster)
	produced := testutil.ToFloat64(embeddedBrokerRequests.WithLabelValues("Produce"))
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for range 3 {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "t", Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(embeddedBrokerRequests.WithLabelValues("Produce")) - produced; got != 3 {
		t.Errorf("Produce counted %v times, want 3", got)
	}
	if got := testutil.ToFloat64(embeddedBrokerRequests.WithLabelValues("Metadata")); got < 1 {
		t.Errorf("Metadata counted %v times, want at least 1", got)
	}
}
