// Command projector runs the read side: it keeps the PostgreSQL views exactly
// once and sends each completed command's reply to the gateway waiting for it.
//
// Configuration (environment, flags override): KAFKA_BROKERS, DATABASE_URL, TOPIC_PREFIX.
package main

import (
	"errors"
	"flag"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/services/projector/app"
)

func main() {
	log := service.Logger("projector")
	f := service.NewFlags("projector")
	brokers := f.String("kafka-brokers", "KAFKA_BROKERS", "127.0.0.1:9092", "Kafka seed brokers, comma-separated")
	dsn := f.String("database-url", "DATABASE_URL", "", "PostgreSQL connection string")
	prefix := f.String("topic-prefix", "TOPIC_PREFIX", "", "prefix of every topic name")
	if err := f.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	ctx, cancel := service.SignalContext(log)
	defer cancel()
	pool, err := pgxpool.New(ctx, *dsn)
	if err != nil {
		log.Error("bad DATABASE_URL", "err", err)
		os.Exit(2)
	}
	defer pool.Close()
	if err := app.Run(ctx, app.Config{Brokers: service.List(*brokers), TopicPrefix: *prefix, Pool: pool, Logger: log}); err != nil {
		log.Error("projector failed", "err", err)
		os.Exit(1)
	}
	log.Info("projector stopped")
}
