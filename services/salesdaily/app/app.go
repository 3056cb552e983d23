// Package app is the sales-daily service, an example of a downstream
// consumer of the pipeline's events: it reads orders.events and
// catalog.events on a consumer group of its own and keeps units and revenue
// sold per tenant, UTC day and SKU in PostgreSQL (table daily_sales), exactly
// once although Kafka delivers at least once (see Sales). Tenants' data never
// meet: every table is keyed by tenant first (see Migrate).
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/consumer"
	"github.com/answerback/answerback/libs/pipeline/topics"
)

// Name names the service: its consumer group is <prefix>sales-daily, and
// its versions in consumer_versions are kept under this name.
const Name = "sales-daily"

// Group is the service's consumer group under the topic prefix.
func Group(topicPrefix string) string { return topicPrefix + Name }

// Topics are the event topics the service reads under the topic prefix.
func Topics(topicPrefix string) (orders, catalog string) {
	return topics.For(topicPrefix, "orders").Events, topics.For(topicPrefix, "catalog").Events
}

// Config configures the service.
type Config struct {
	Brokers     []string
	TopicPrefix string
	Pool        *pgxpool.Pool
	// DLQTopic, when set, receives the records that are not valid events;
	// otherwise they are logged and counted only (see consumer.Config).
	DLQTopic   string
	Logger     *slog.Logger
	ClientOpts []kgo.Opt
}

// RunnerConfig is the consumer configuration Run uses, with h as the
// handler (Run passes Sales.Handle; a test may wrap it).
func RunnerConfig(cfg Config, h consumer.Handler) consumer.Config {
	orders, catalog := Topics(cfg.TopicPrefix)
	return consumer.Config{
		Brokers: cfg.Brokers, Group: Group(cfg.TopicPrefix), Topics: []string{orders, catalog},
		Handler: h, DLQTopic: cfg.DLQTopic, Logger: cfg.Logger, ClientOpts: cfg.ClientOpts,
	}
}

// Run creates the tables when missing, then consumes until ctx ends; it
// returns nil after a clean stop (offsets of handled events committed).
func Run(ctx context.Context, cfg Config) error {
	if cfg.Pool == nil {
		return errors.New("salesdaily: a database pool is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := Migrate(ctx, cfg.Pool); err != nil {
		return err
	}
	r, err := consumer.New(RunnerConfig(cfg, NewSales(cfg.Pool, cfg.TopicPrefix, cfg.Logger).Handle))
	if err != nil {
		return fmt.Errorf("salesdaily: %w", err)
	}
	return r.Run(ctx)
}
