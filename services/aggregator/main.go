// Command aggregator runs the command side: the single writer of every order
// and catalog item whose commands' partitions it owns.
//
// Configuration (environment, flags override): KAFKA_BROKERS, METRICS_ADDR, TOPIC_PREFIX,
// INSTANCE_ID (default: the host name; keep it stable across restarts so a
// restart fences the previous incarnation at once).
package main

import (
	"os"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/services/aggregator/app"
)

func main() {
	log := service.Logger("aggregator")
	f := service.NewFlags("aggregator")
	kafka := f.Kafka()
	instance := f.String("instance-id", "INSTANCE_ID", service.Hostname(), "this instance's stable name")
	metrics := f.Metrics()
	f.ParseOrExit(os.Args[1:])
	brokers, prefix := kafka()
	ctx, cancel := service.SignalContext(log)
	defer cancel()
	waitMetrics, err := service.ServeMetrics(ctx, *metrics, log)
	if err != nil {
		log.Error("metrics address unusable", "err", err)
		os.Exit(2)
	}
	defer func() { cancel(); waitMetrics() }() // the server stops when ctx ends
	if err := app.Run(ctx, app.Config{Brokers: brokers, TopicPrefix: prefix, InstanceID: *instance, Logger: log, ClientOpts: []kgo.Opt{service.KafkaClientLogger("aggregator")}}); err != nil {
		log.Error("aggregator failed", "err", err)
		os.Exit(1)
	}
	log.Info("aggregator stopped")
}
