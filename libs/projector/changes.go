package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// ChangesChannel is the PostgreSQL notification channel on which the
// projector announces, at the commit of each batch, the aggregates whose view
// changed: one ChangeNotice per aggregate, JSON. A notification is delivered
// only when its transaction commits, so a notice never precedes its data;
// listeners that were disconnected catch up from the change log (Changes).
const ChangesChannel = "answerback_changes"

// ChangeNotice says that an aggregate's view reached version, from topic's
// events. Stream is the aggregate's envelope.StreamKey (tenant and ID).
type ChangeNotice struct {
	Topic   string `json:"topic"`
	Stream  string `json:"stream"`
	Version int64  `json:"version"`
}

// Change is one applied event in the change log (view_changes): what the
// version changed. The log keeps ChangeRetention of history.
type Change struct {
	Version int64           `json:"version"`
	Type    string          `json:"type"`
	Data    json.RawMessage `json:"data"`
	Time    time.Time       `json:"time"`
}

// ChangeRetention is how long the change log keeps a change.
const ChangeRetention = 24 * time.Hour

// recordChange logs ev in the batch's transaction and notes its aggregate
// for the notice.
func (r *Runtime) recordChange(b *batch, topic string, ev envelope.Event) {
	b.final.Queue(`
		INSERT INTO view_changes (topic, aggregate_id, version, type, data, at)
		VALUES ($1, $2, $3, $4, $5, coalesce($6, now())) ON CONFLICT DO NOTHING`,
		topic, envelope.StreamKey(ev.Tenant, ev.AggregateID), ev.Version, ev.Type, ev.Data, nullTime(ev.Time))
	if b.changed == nil {
		b.changed = map[aggregateKey]int64{}
	}
	k := aggregateKey{topic, envelope.StreamKey(ev.Tenant, ev.AggregateID)}
	b.changed[k] = max(b.changed[k], ev.Version)
}

type aggregateKey struct{ topic, stream string }

// queueNotices queues the batch's change notices; they go out at its commit.
func queueNotices(b *batch) {
	if len(b.changed) == 0 {
		return
	}
	payloads := make([]string, 0, len(b.changed))
	for k, v := range b.changed {
		p, _ := json.Marshal(ChangeNotice{Topic: k.topic, Stream: k.stream, Version: v})
		payloads = append(payloads, string(p))
	}
	b.final.Queue(`SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, ChangesChannel, payloads)
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Changes returns the logged changes of stream (an aggregate's
// envelope.StreamKey) on topic after version after, in version order; complete is false when the log no longer holds
// every version after it (older than ChangeRetention, or from before the
// log existed) — then only the whole view can bring a reader up to date.
func Changes(ctx context.Context, q querier, topic, stream string, after int64) (changes []Change, complete bool, err error) {
	rows, err := q.Query(ctx, `
		SELECT version, type, data, at FROM view_changes
		WHERE topic = $1 AND aggregate_id = $2 AND version > $3 ORDER BY version`, topic, stream, after)
	if err != nil {
		return nil, false, fmt.Errorf("changes of %s: %w", stream, err)
	}
	changes, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Change])
	if err != nil {
		return nil, false, fmt.Errorf("changes of %s: %w", stream, err)
	}
	complete = len(changes) == 0 || changes[0].Version == after+1
	for i := 1; complete && i < len(changes); i++ {
		complete = changes[i].Version == changes[i-1].Version+1
	}
	return changes, complete, nil
}

// prune deletes, at most every ten minutes, the changes older than
// ChangeRetention and the outcomes older than Config.OutcomeRetention.
func (r *Runtime) prune(ctx context.Context) {
	if time.Since(r.pruned) < 10*time.Minute {
		return
	}
	r.pruned = time.Now()
	if _, err := r.cfg.Pool.Exec(ctx, `DELETE FROM view_changes WHERE at < now() - $1::interval`, ChangeRetention.String()); err != nil {
		r.log.Warn("pruning the change log", "err", err)
	}
	deleted, err := pruneOutcomes(ctx, r.cfg.Pool, r.cfg.OutcomeRetention, outcomesPruneBatch, outcomesPruneBatches)
	if err != nil {
		r.log.Warn("pruning the recorded outcomes", "err", err, "deleted", deleted)
	} else if deleted > 0 {
		r.log.Info("recorded outcomes pruned", "deleted", deleted, "retention", r.cfg.OutcomeRetention)
	}
}

// outcomesPruneBatch is how many outcomes one DELETE removes: short
// statements, so that pruning a backlog never holds locks or a snapshot for
// long. outcomesPruneBatches bounds the statements of one prune, which runs
// between two batches of the projector: a backlog (the first prune after an
// upgrade) is worked off 100,000 rows every ten minutes, never holding the
// replies up for long.
const (
	outcomesPruneBatch   = 5000
	outcomesPruneBatches = 20
)

// pruneOutcomes deletes the outcomes recorded more than retention ago, batch
// rows per statement, until none is left, batches statements ran or ctx
// ends, and returns how many it deleted.
func pruneOutcomes(ctx context.Context, db interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}, retention time.Duration, batch, batches int) (deleted int64, err error) {
	for range batches {
		tag, err := db.Exec(ctx, `DELETE FROM command_outcomes WHERE command_id IN (
			SELECT command_id FROM command_outcomes WHERE applied_at < now() - $1::interval LIMIT $2)`, retention.String(), batch)
		if err != nil {
			return deleted, err
		}
		deleted += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			break
		}
	}
	return deleted, nil
}
