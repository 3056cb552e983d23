// Command aggregator runs the command side: the single writer of every order
// and catalog item whose commands' partitions it owns.
//
// Configuration (environment, flags override): KAFKA_BROKERS, TOPIC_PREFIX,
// INSTANCE_ID (default: the host name; keep it stable across restarts so a
// restart fences the previous incarnation at once).
package main

import (
	"errors"
	"flag"
	"os"

	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/services/aggregator/app"
)

func main() {
	log := service.Logger("aggregator")
	f := service.NewFlags("aggregator")
	brokers := f.String("kafka-brokers", "KAFKA_BROKERS", "127.0.0.1:9092", "Kafka seed brokers, comma-separated")
	prefix := f.String("topic-prefix", "TOPIC_PREFIX", "", "prefix of every topic name")
	instance := f.String("instance-id", "INSTANCE_ID", service.Hostname(), "this instance's stable name")
	if err := f.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	ctx, cancel := service.SignalContext(log)
	defer cancel()
	if err := app.Run(ctx, app.Config{Brokers: service.List(*brokers), TopicPrefix: *prefix, InstanceID: *instance, Logger: log}); err != nil {
		log.Error("aggregator failed", "err", err)
		os.Exit(1)
	}
	log.Info("aggregator stopped")
}
