package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// embeddedBrokerRequests counts the requests the embedded broker serves, by
// API: what the benchmark reads as the broker's requests per command.
var embeddedBrokerRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "answerback_embedded_broker_requests_total",
	Help: "Requests the embedded Kafka broker (kfake) has received, by API (Produce, Fetch, EndTxn…).",
}, []string{"api"})

func init() { prometheus.MustRegister(embeddedBrokerRequests) }

// countRequests has cluster count every request it receives in
// embeddedBrokerRequests. The hook handles none: kfake serves each as
// before.
func countRequests(cluster *kfake.Cluster) {
	cluster.Control(func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		embeddedBrokerRequests.WithLabelValues(kmsg.NameForKey(req.Key())).Inc()
		return nil, nil, false
	})
}
