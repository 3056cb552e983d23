package aggregate

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// loadPartition reads partition p of the snapshots topic from its start to
// its last stable offset and returns the latest state of every aggregate in
// it. It first waits until no transaction is open on the partition (the
// previous owner's last transaction is committed or aborted), so nothing it
// wrote is missed.
func (r *Runtime[S]) loadPartition(ctx context.Context, p int32) (map[string]entry[S], error) {
	start := time.Now()
	topic := r.cfg.Topics.Snapshots
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(r.cfg.Brokers...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().AtStart()}}),
	}, r.cfg.ClientOpts...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	ctx, cancel := context.WithTimeout(ctx, 2*r.cfg.TransactionTimeout+30*time.Second)
	defer cancel()
	var startOffset, stable int64
	for {
		starts, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			return nil, err
		}
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			return nil, err
		}
		lsos, err := adm.ListCommittedOffsets(ctx, topic)
		if err != nil {
			return nil, err
		}
		s, okS := starts.Lookup(topic, p)
		e, okE := ends.Lookup(topic, p)
		l, okL := lsos.Lookup(topic, p)
		if !okS || !okE || !okL || s.Err != nil || e.Err != nil || l.Err != nil {
			return nil, fmt.Errorf("offsets of %s/%d unavailable", topic, p)
		}
		if l.Offset == e.Offset {
			startOffset, stable = s.Offset, l.Offset
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("a transaction stays open on %s/%d: %w", topic, p, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	state := map[string]entry[S]{}
	for next := startOffset; next < stable; {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading %s/%d: %w", topic, p, err)
		}
		var fetchErr error
		fetches.EachError(func(_ string, _ int32, err error) { fetchErr = err })
		if fetchErr != nil {
			return nil, fetchErr
		}
		var badSnapshot error
		fetches.EachRecord(func(rec *kgo.Record) {
			next = rec.Offset + 1
			if rec.Attrs.IsControl() || badSnapshot != nil {
				return
			}
			if rec.Value == nil {
				delete(state, string(rec.Key))
				return
			}
			var snap snapshot[S]
			if err := json.Unmarshal(rec.Value, &snap); err != nil {
				// Only this runtime writes snapshots; going on without one
				// would reuse versions. Refuse the partition instead.
				badSnapshot = fmt.Errorf("unreadable snapshot of %s at %s/%d@%d: %w", rec.Key, topic, p, rec.Offset, err)
				return
			}
			state[string(rec.Key)] = entry[S]{state: snap.State, version: snap.Version, keys: snap.Keys, forgotten: snap.Forgotten}
		})
		if badSnapshot != nil {
			return nil, badSnapshot
		}
	}
	r.log.Info("partition restored", "partition", p, "aggregates", len(state), "snapshot_records", stable-startOffset, "took", time.Since(start).Round(time.Millisecond))
	return state, nil
}
