package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Range is a span of one partition's records: offsets From to To, To excluded.
type Range struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	From      int64  `json:"from"`
	To        int64  `json:"to"`
}

// ReplayConfig configures Replay.
type ReplayConfig struct {
	Brokers []string
	// Pool is the view to write: the live one, or a rebuild's shadow.
	Pool *pgxpool.Pool
	// Tracked stores offsets in Pool's projector_offsets and skips the
	// records below them, as the live projector does (a rebuild's shadow,
	// resumable). Untracked, nothing is stored and every record in the
	// ranges is applied again — idempotently, by the Projection's contract.
	Tracked bool
	// BatchSize bounds the records of one transaction; default 500.
	BatchSize int
	// Progress, when set, is called after each batch with the records it covered.
	Progress   func(records int64)
	Logger     *slog.Logger
	ClientOpts []kgo.Opt
}

// ReplayStats are what a replay did.
type ReplayStats struct {
	Records int64 `json:"records"` // records read in the ranges
	// Skipped are events the Projection refused for good: the live
	// projector dead-lettered them when they first came, a replay leaves
	// them out.
	Skipped int64 `json:"skipped"`
}

// quietPolls is how many polls in a row (2 s each) must find nothing before
// ranges whose end is stable count as done without their last record.
const quietPolls = 3

// replayBatchTimeout bounds one replayed batch's transaction, as
// Config.BatchTimeout does the live projector's.
const replayBatchTimeout = time.Minute

// Replay applies the records of the projection's event topics in ranges to
// the view in cfg.Pool, in transactions of up to cfg.BatchSize records, and
// returns when every range is done. It has no side effect beyond the view:
// no reply is sent, no outcome recorded, no dead letter produced. Records
// of topics the projection does not consume as events are an error.
//
// Each To must lie at or below the partition's last stable offset (the
// offsets the live projector stored are); Replay waits for records below it.
func Replay(ctx context.Context, p Projection, cfg ReplayConfig, ranges []Range) (ReplayStats, error) {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var stats ReplayStats
	todo := map[partitionKey]int64{} // → To
	start := map[string]map[int32]kgo.Offset{}
	for _, rg := range ranges {
		if _, ok := p.Topics[rg.Topic]; !ok {
			return stats, fmt.Errorf("replay: %s is not an event topic of projection %s", rg.Topic, p.Name)
		}
		if rg.From >= rg.To {
			continue
		}
		todo[partitionKey{rg.Topic, rg.Partition}] = rg.To
		if start[rg.Topic] == nil {
			start[rg.Topic] = map[int32]kgo.Offset{}
		}
		start[rg.Topic][rg.Partition] = kgo.NewOffset().At(rg.From)
	}
	if len(todo) == 0 {
		return stats, nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumePartitions(start),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), // below the log start: from the start
		kgo.FetchMaxWait(500 * time.Millisecond),
	}, cfg.ClientOpts...)...)
	if err != nil {
		return stats, fmt.Errorf("replay: %w", err)
	}
	defer cl.Close()
	var skipped atomic.Int64
	rt := &Runtime{p: p, cfg: Config{Pool: cfg.Pool, BatchTimeout: replayBatchTimeout}, log: cfg.Logger.With("projection", p.Name, "replay", true),
		mode: mode{replay: true, untracked: !cfg.Tracked, skipped: &skipped}}
	done := func(k partitionKey) {
		delete(todo, k)
		cl.RemoveConsumePartitions(map[string][]int32{k.topic: {k.partition}})
	}
	quiet := 0 // polls in a row that found nothing
	for len(todo) > 0 {
		pollCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fetches := cl.PollRecords(pollCtx, cfg.BatchSize)
		cancel()
		if ctx.Err() != nil {
			return stats, ctx.Err()
		}
		var batch []*kgo.Record
		fetches.EachRecord(func(rec *kgo.Record) {
			k := partitionKey{rec.Topic, rec.Partition}
			to, ok := todo[k]
			if !ok {
				return
			}
			if rec.Offset < to {
				batch = append(batch, rec)
			}
			if rec.Offset >= to-1 {
				done(k)
			}
		})
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				cfg.Logger.Warn("replay: fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		if len(batch) > 0 {
			rt.processWithRetry(ctx, batch)
			if ctx.Err() != nil {
				return stats, ctx.Err()
			}
			stats.Records += int64(len(batch))
			if cfg.Progress != nil {
				cfg.Progress(int64(len(batch)))
			}
		}
		if len(batch) > 0 || fetches.NumRecords() > 0 {
			quiet = 0
			continue
		}
		// Polls that waited and found nothing anywhere, quietPolls in a
		// row: a range whose end is a transaction marker, or whose last
		// records were aborted, is done once its end is stable. (Only then:
		// records of a partition may wait in the client's buffer while
		// others are applied, and a loaded broker may take seconds to
		// answer a fetch — one empty poll ended ranges whose last records
		// were still to come.)
		if quiet++; quiet >= quietPolls {
			if err := finishStable(ctx, cl, todo, done); err != nil {
				return stats, err
			}
		}
	}
	stats.Skipped = skipped.Load()
	return stats, nil
}

// finishStable ends the ranges whose end is at or below their partition's
// last stable offset: every committed record below it was fetched already.
func finishStable(ctx context.Context, cl *kgo.Client, todo map[partitionKey]int64, done func(partitionKey)) error {
	var topics []string
	for k := range todo {
		topics = append(topics, k.topic)
	}
	stable, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("replay: last stable offsets: %w", err)
	}
	for k, to := range todo {
		if o, ok := stable.Lookup(k.topic, k.partition); ok && o.Err == nil && o.Offset >= to {
			done(k)
		}
	}
	return nil
}
