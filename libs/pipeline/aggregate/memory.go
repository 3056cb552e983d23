package aggregate

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// What an aggregate remembers, and how it is kept on the snapshots topic,
// beside each partition's checkpoint.
//
// An aggregate's state and version are one record keyed by its stream key
// (stateRecord). Each command it remembers is a record of its own, keyed by
// rememberedKey(stream, dedupe key), holding a keyRecord; a command forgotten
// is a tombstone under that key. So a transaction writes, per changed
// aggregate, its state and one small record per command decided — a cost
// that does not grow with the commands it remembers — and compaction keeps
// the latest of each. A third kind, keyed checkpointKey, holds the offset of
// the partition's next command to decide. Restoring a partition reads them
// all back (restore.go).

// entry is an aggregate's committed state and version, and the commands it
// decided recently. An entry is never modified in place: a batch works on a
// pendingEntry with a map of its own.
type entry[S any] struct {
	state   *S
	version int64
	keys    map[string]keyRecord
	// forgotten is the newest send time among the commands forgotten before
	// their window ended: a record sent before it may be one of them.
	forgotten time.Time
	// forgottenAt are the dedupe keys of the commands forgotten that were
	// sent at forgotten itself (record timestamps have millisecond
	// precision: several may be): a record sent then is one of them only if
	// its key is here. Nil when unknown (a snapshot written before it was
	// kept): every record sent then counts as forgotten.
	forgottenAt map[string]bool
	// legacyKeys is set on an entry restored from a snapshot that carried its
	// remembered commands inline (the format before rememberedKey records):
	// its next write writes all of them as records of their own.
	legacyKeys bool
}

// keyRecord is what an aggregate remembers of a command, under its
// idempotency key or, without one, its command ID (see dedupeKey).
type keyRecord struct {
	CommandID string          `json:"commandId"`
	Version   int64           `json:"version"`             // the aggregate's version after it
	Rejection json.RawMessage `json:"rejection,omitempty"` // its problem, when it was rejected
	At        time.Time       `json:"at"`                  // when it was decided
	Sent      time.Time       `json:"sent,omitzero"`       // its record's timestamp
}

// remembers reports whether e remembers key as decided within window of now.
// A command decided longer ago is forgotten, whether or not its record has
// been pruned yet.
func (e entry[S]) remembers(key string, now time.Time, window time.Duration) (keyRecord, bool) {
	rec, ok := e.keys[key]
	return rec, ok && now.Sub(rec.At) < window
}

// dedupeKey is the key a command is remembered under: its idempotency key,
// else its command ID behind a space, which no idempotency key contains.
func dedupeKey(cmd envelope.Command) string {
	if cmd.IdempotencyKey != "" {
		return cmd.IdempotencyKey
	}
	return "command " + cmd.CommandID
}

// pendingEntry is an aggregate's state within an open transaction: its keys
// map is its own (copied from the committed entry when the batch first
// touched the aggregate), and written lists the keys whose records the
// transaction must write (true) or delete (false).
type pendingEntry[S any] struct {
	entry[S]
	partition int32
	// stateJSON is state encoded, as the snapshot carries it.
	stateJSON json.RawMessage
	written   map[string]bool
}

// newPending starts a batch's work on committed entry e of partition p.
func newPending[S any](e entry[S], p int32) *pendingEntry[S] {
	pe := &pendingEntry[S]{entry: e, partition: p, written: map[string]bool{}}
	pe.keys = maps.Clone(e.keys)
	pe.forgottenAt = maps.Clone(e.forgottenAt)
	if pe.keys == nil {
		pe.keys = map[string]keyRecord{}
	}
	if e.legacyKeys {
		for k := range pe.keys {
			pe.written[k] = true
		}
		pe.legacyKeys = false
	}
	return pe
}

// remember makes the aggregate remember key and forget the commands sent
// first beyond limit — of commands sent in the same instant (record
// timestamps have millisecond precision), the one decided first; it moves
// forgotten to the newest send time of those.
func (pe *pendingEntry[S]) remember(key string, rec keyRecord, limit int) {
	pe.keys[key] = rec
	pe.written[key] = true
	for len(pe.keys) > limit {
		oldest, first := "", true
		for k, v := range pe.keys {
			if first || sentFirst(v, pe.keys[oldest]) {
				oldest, first = k, false
			}
		}
		switch s := pe.keys[oldest].Sent; {
		case s.After(pe.forgotten):
			pe.forgotten, pe.forgottenAt = s, map[string]bool{oldest: true}
		case s.Equal(pe.forgotten) && pe.forgottenAt != nil:
			pe.forgottenAt[oldest] = true
		}
		pe.forget(oldest)
	}
}

// mayHaveForgotten reports whether a command sent at sent under key may be
// one that the aggregate forgot before its window ended: sent before the
// newest forgotten, or at that instant under a key forgotten then.
func (e entry[S]) mayHaveForgotten(key string, sent time.Time) bool {
	if e.forgotten.IsZero() || sent.After(e.forgotten) {
		return false
	}
	return sent.Before(e.forgotten) || e.forgottenAt == nil || e.forgottenAt[key]
}

// sentFirst orders remembered commands by send time, then decision time.
func sentFirst(a, b keyRecord) bool {
	if !a.Sent.Equal(b.Sent) {
		return a.Sent.Before(b.Sent)
	}
	return a.At.Before(b.At)
}

// pruneOlderThan forgets the commands decided at or before cutoff: past
// their window they are no longer answered as duplicates anyway (remembers).
func (pe *pendingEntry[S]) pruneOlderThan(cutoff time.Time) {
	for k, v := range pe.keys {
		if !v.At.After(cutoff) {
			pe.forget(k)
		}
	}
}

func (pe *pendingEntry[S]) forget(key string) {
	delete(pe.keys, key)
	pe.written[key] = false
}

// committed is the entry the batch leaves once its transaction commits.
func (pe *pendingEntry[S]) committed() entry[S] { return pe.entry }

// stateRecord is the value of an aggregate's state record on the snapshots
// topic. Keys is read only: snapshots written before remembered commands
// became records of their own carried them here.
type stateRecord struct {
	Version   int64                `json:"version"`
	State     json.RawMessage      `json:"state"`
	Keys      map[string]keyRecord `json:"keys,omitempty"`
	Forgotten time.Time            `json:"forgotten,omitzero"`
	// ForgottenAt are the dedupe keys forgotten that were sent at Forgotten.
	ForgottenAt []string `json:"forgottenAt,omitempty"`
}

// checkpointKey keys the partition's checkpoint record: the offset of the
// next command to decide, written by every transaction (see partition).
const checkpointKey = "\x00o"

// checkpoint is the value of a checkpoint record.
type checkpoint struct {
	Next int64 `json:"nextCommandOffset"`
}

// checkpointRecord is the checkpoint record of snapshots partition p.
func checkpointRecord(topic string, p int32, next int64) *kgo.Record {
	value, _ := json.Marshal(checkpoint{Next: next}) // an integer: cannot fail
	return &kgo.Record{Topic: topic, Partition: p, Key: []byte(checkpointKey), Value: value}
}

// rememberedPrefix starts the key of every remembered-command record. No
// stream key starts with it: the runtime dead-letters command records whose
// key does (see validStreamKey).
const rememberedPrefix = "\x00r"

// rememberedKey is the snapshots-topic key of the command that stream
// remembers under dedupe: the prefix, the stream key's length as a uvarint,
// the stream key and the dedupe key — unambiguous whatever the two hold.
func rememberedKey(stream, dedupe string) []byte {
	b := make([]byte, 0, len(rememberedPrefix)+binary.MaxVarintLen64+len(stream)+len(dedupe))
	b = append(b, rememberedPrefix...)
	b = binary.AppendUvarint(b, uint64(len(stream)))
	b = append(b, stream...)
	return append(b, dedupe...)
}

// parseRememberedKey is the inverse of rememberedKey; ok is false for a key
// that is not a remembered command's (an aggregate's state record).
func parseRememberedKey(key []byte) (stream, dedupe string, ok bool, err error) {
	if len(key) < len(rememberedPrefix) || string(key[:len(rememberedPrefix)]) != rememberedPrefix {
		return "", "", false, nil
	}
	rest := key[len(rememberedPrefix):]
	n, size := binary.Uvarint(rest)
	if size <= 0 || uint64(len(rest)-size) < n {
		return "", "", true, errors.New("malformed remembered-command key")
	}
	rest = rest[size:]
	return string(rest[:n]), string(rest[n:]), true, nil
}

// validStreamKey reports whether a command record's key can name an
// aggregate: one outside the namespace of remembered-command records.
func validStreamKey(key []byte) error {
	if len(key) > 0 && key[0] == 0 {
		return fmt.Errorf("command record key %q starts with a NUL byte", key)
	}
	return nil
}
