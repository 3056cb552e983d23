package app

import (
	"context"
	"fmt"
	"time"

	"github.com/answerback/answerback/libs/pipeline/service"
)

// Embedded is what a process that runs the aggregator in-process
// (service.Launch) may set besides its flags; the binary sets nothing.
type Embedded struct {
	// ShutdownDrain: see aggregate.Config (zero: its default).
	ShutdownDrain time.Duration
}

// Binary is the aggregator binary: its settings — INSTANCE_ID (default: the
// host name), PARTITIONS (of the topics it creates when missing; default 6),
// TRANSACTION_SLOTS (default 1, -1: no bound) — and its Run.
func Binary(e Embedded) service.Binary {
	return service.Binary{Name: "aggregator", Setup: func(s *service.Setup) service.Run {
		instance := s.String("instance-id", "INSTANCE_ID", service.Hostname(), "this instance's stable name")
		partitions := s.Int("partitions", "PARTITIONS", 6, "partitions of the topics created when missing (commands and snapshots must agree)")
		slots := s.Int("transaction-slots", "TRANSACTION_SLOTS", 1, "transactions in flight at once across the owned partitions (-1: no bound); a partition waiting for a slot gathers more commands into its transaction")
		return func(ctx context.Context, p service.Process) error {
			if *partitions < 1 || *partitions > 10_000 {
				return service.Usage(fmt.Errorf("partitions %d out of range 1..10000", *partitions))
			}
			return Run(ctx, Config{Brokers: p.Brokers, TopicPrefix: p.TopicPrefix, InstanceID: *instance, Partitions: int32(*partitions),
				TransactionSlots: *slots, ShutdownDrain: e.ShutdownDrain, Logger: p.Log, ClientOpts: p.KafkaOpts})
		}
	}}
}
