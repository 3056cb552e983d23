package aggregate

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// loadPartition reads partition p of the snapshots topic from its start to
// its last stable offset and returns the latest state of every aggregate in
// it and the checkpoint: the offset of the partition's next command to
// decide, -1 when no transaction wrote one yet. It first waits until no
// transaction is open on the partition (the previous owner's last
// transaction is committed or aborted), so nothing it wrote is missed.
func (r *Runtime[S]) loadPartition(ctx context.Context, p int32) (_ map[string]entry[S], next int64, _ error) {
	start := time.Now()
	topic := r.cfg.Topics.Snapshots
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(r.cfg.Brokers...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().AtStart()}}),
	}, r.cfg.ClientOpts...)...)
	if err != nil {
		return nil, 0, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	ctx, cancel := context.WithTimeout(ctx, 2*r.cfg.TransactionTimeout+30*time.Second)
	defer cancel()
	var startOffset, stable int64
	for {
		starts, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			return nil, 0, err
		}
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			return nil, 0, err
		}
		lsos, err := adm.ListCommittedOffsets(ctx, topic)
		if err != nil {
			return nil, 0, err
		}
		s, okS := starts.Lookup(topic, p)
		e, okE := ends.Lookup(topic, p)
		l, okL := lsos.Lookup(topic, p)
		if !okS || !okE || !okL || s.Err != nil || e.Err != nil || l.Err != nil {
			return nil, 0, fmt.Errorf("offsets of %s/%d unavailable", topic, p)
		}
		if l.Offset == e.Offset {
			startOffset, stable = s.Offset, l.Offset
			break
		}
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("a transaction stays open on %s/%d: %w", topic, p, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	state, next := map[string]entry[S]{}, int64(-1)
	remembered := map[string]map[string]keyRecord{} // stream → dedupe key → command
	for at := startOffset; at < stable; {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, 0, fmt.Errorf("reading %s/%d: %w", topic, p, err)
		}
		var fetchErr error
		fetches.EachError(func(_ string, _ int32, err error) { fetchErr = err })
		if fetchErr != nil {
			return nil, 0, fetchErr
		}
		var bad error
		fetches.EachRecord(func(rec *kgo.Record) {
			at = rec.Offset + 1
			if rec.Attrs.IsControl() || bad != nil {
				return
			}
			if string(rec.Key) == checkpointKey {
				var c checkpoint
				if err := json.Unmarshal(rec.Value, &c); err != nil {
					bad = fmt.Errorf("unreadable checkpoint at %s/%d@%d: %w", topic, p, rec.Offset, err)
				}
				next = c.Next
				return
			}
			// Only this runtime writes snapshots; going on without one would
			// reuse versions or apply a command twice. Refuse the partition
			// instead.
			if err := restoreRecord(state, remembered, rec); err != nil {
				bad = fmt.Errorf("unreadable snapshot record %q at %s/%d@%d: %w", rec.Key, topic, p, rec.Offset, err)
			}
		})
		if bad != nil {
			return nil, 0, bad
		}
	}
	for stream, keys := range remembered {
		e := state[stream]
		if e.keys == nil {
			e.keys = keys
		} else {
			maps.Copy(e.keys, keys)
		}
		state[stream] = e
	}
	r.log.Info("partition restored", "partition", p, "aggregates", len(state), "snapshot_records", stable-startOffset, "next_command", next, "took", time.Since(start).Round(time.Millisecond))
	return state, next, nil
}

// restoreRecord applies one snapshots-topic record to the state being
// restored: an aggregate's state record, or a command it remembers (or a
// tombstone for one it forgot), in remembered.
func restoreRecord[S any](state map[string]entry[S], remembered map[string]map[string]keyRecord, rec *kgo.Record) error {
	stream, dedupe, isCommand, err := parseRememberedKey(rec.Key)
	switch {
	case err != nil:
		return err
	case isCommand && rec.Value == nil:
		delete(remembered[stream], dedupe)
		return nil
	case isCommand:
		var kr keyRecord
		if err := json.Unmarshal(rec.Value, &kr); err != nil {
			return err
		}
		if remembered[stream] == nil {
			remembered[stream] = map[string]keyRecord{}
		}
		remembered[stream][dedupe] = kr
		return nil
	case rec.Value == nil:
		delete(state, string(rec.Key))
		return nil
	}
	var sr stateRecord
	if err := json.Unmarshal(rec.Value, &sr); err != nil {
		return err
	}
	var s *S
	if err := json.Unmarshal(sr.State, &s); err != nil {
		return err
	}
	// A snapshot of the older format carries the commands remembered then;
	// commands remembered later come as records of their own and are merged
	// over them.
	e := entry[S]{state: s, version: sr.Version, keys: sr.Keys, forgotten: sr.Forgotten, legacyKeys: sr.Keys != nil}
	if len(sr.ForgottenAt) > 0 {
		e.forgottenAt = make(map[string]bool, len(sr.ForgottenAt))
		for _, k := range sr.ForgottenAt {
			e.forgottenAt[k] = true
		}
	}
	state[string(rec.Key)] = e
	return nil
}
