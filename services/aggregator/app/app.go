// Package app runs the reference domain's aggregates — orders and catalog
// items — on the generic aggregate runtime.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/domain"
	"github.com/answerback/answerback/libs/domain/catalog"
	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/pipeline/aggregate"
	"github.com/answerback/answerback/libs/pipeline/topics"
)

// Config configures the aggregator.
type Config struct {
	Brokers     []string
	TopicPrefix string
	// InstanceID is stable across restarts of the same instance (see aggregate.Config).
	InstanceID string
	// Partitions of topics this instance creates when missing; default 6.
	Partitions int32
	// ShutdownDrain, TransactionSlots: see aggregate.Config.
	ShutdownDrain    time.Duration
	TransactionSlots int
	Logger           *slog.Logger
	ClientOpts       []kgo.Opt
}

// EnsureTopics creates every domain's topics when missing.
func EnsureTopics(ctx context.Context, brokers []string, prefix string, partitions int32, opts ...kgo.Opt) error {
	if partitions == 0 {
		partitions = 6
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, d := range domain.Names {
		if _, err := topics.Ensure(ctx, adm, topics.For(prefix, d), partitions, -1); err != nil {
			return err
		}
	}
	return nil
}

// Run runs every aggregate type until ctx ends. It returns an error wrapping
// aggregate.ErrProducerFenced when this instance was fenced: exit non-zero and
// let the supervisor restart it.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := EnsureTopics(ctx, cfg.Brokers, cfg.TopicPrefix, cfg.Partitions, cfg.ClientOpts...); err != nil {
		return fmt.Errorf("aggregator: %w", err)
	}
	base := aggregate.Config{Brokers: cfg.Brokers, InstanceID: cfg.InstanceID, ShutdownDrain: cfg.ShutdownDrain, TransactionSlots: cfg.TransactionSlots, Logger: cfg.Logger, ClientOpts: cfg.ClientOpts}
	ordersCfg, catalogCfg := base, base
	ordersCfg.Topics, ordersCfg.Group = topics.For(cfg.TopicPrefix, orders.Name), cfg.TopicPrefix+"orders-aggregator"
	catalogCfg.Topics, catalogCfg.Group = topics.For(cfg.TopicPrefix, catalog.Name), cfg.TopicPrefix+"catalog-aggregator"
	ordersRT, err := aggregate.New(orders.Definition(), ordersCfg)
	if err != nil {
		return err
	}
	catalogRT, err := aggregate.New(catalog.Definition(), catalogCfg)
	if err != nil {
		return err
	}
	// A runtime that fails (its producer fenced) stops the other too: the
	// instance exits and its supervisor restarts it whole.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, run := range []func(context.Context) error{ordersRT.Run, catalogRT.Run} {
		wg.Add(1)
		go func() { // owned by Run: it waits for both
			defer wg.Done()
			if errs[i] = run(ctx); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
