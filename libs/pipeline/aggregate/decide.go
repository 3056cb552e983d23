package aggregate

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/answerback/answerback/libs/pipeline/dlq"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/problem"
	"github.com/answerback/answerback/libs/pipeline/tracing"
)

// startHandle starts the consumer span of one command record, child of the
// span its traceparent header names.
func startHandle(ctx context.Context, rec *kgo.Record) (context.Context, trace.Span) {
	name := "handle command"
	if typ, _ := envelope.Header(rec, envelope.HCommandType); typ != "" {
		name = "handle " + typ
	}
	return tracing.StartConsumer(tracing.Extract(ctx, rec), name, rec)
}

// decideOne decides one command record, producing its consequences.
// Records of the transaction go to produce, replies to reply. It returns the
// command's outcome (outcomeApplied…) for the metrics. ctx carries the
// command's span: its events and replies carry that span's trace context.
func (r *Runtime[S]) decideOne(ctx context.Context, rec *kgo.Record, committed map[string]entry[S], pending map[string]*pendingEntry[S], produce, reply func(*kgo.Record)) string {
	send := reply
	reply = func(rec *kgo.Record) {
		tracing.Inject(ctx, rec)
		send(rec)
	}
	cmd, err := envelope.DecodeCommand(rec)
	trace.SpanFromContext(ctx).SetAttributes(tracing.MetaAttributes(cmd.Meta)...)
	if err != nil {
		r.log.Warn("malformed command dead-lettered", "partition", rec.Partition, "offset", rec.Offset, "err", err)
		produce(dlq.Record(r.cfg.Topics.DLQ, "aggregator", rec, err))
		return outcomeDeadLettered
	}
	if len(r.def.CommandTypes) > 0 && !slices.Contains(r.def.CommandTypes, cmd.Type) {
		err := fmt.Errorf("unknown command type %q for %s", cmd.Type, r.def.Name)
		r.log.Warn("command of unknown type dead-lettered", append(cmd.LogAttrs(), "partition", rec.Partition, "offset", rec.Offset, "type", cmd.Type)...)
		produce(dlq.Record(r.cfg.Topics.DLQ, "aggregator", rec, err))
		body, _ := json.Marshal(problemOf(problem.UnknownCommand, err.Error(), cmd.CommandID))
		replyIfAwaited(cmd, envelope.Reply{CommandID: cmd.CommandID, Outcome: envelope.Rejected, Body: body}, reply)
		return outcomeDeadLettered
	}
	if err := validStreamKey(rec.Key); err != nil {
		r.log.Warn("command with an invalid key dead-lettered", append(cmd.LogAttrs(), "partition", rec.Partition, "offset", rec.Offset, "err", err)...)
		produce(dlq.Record(r.cfg.Topics.DLQ, "aggregator", rec, err))
		return outcomeDeadLettered
	}
	// The aggregate's state is its stream's: the record key names the
	// tenant and the ID (envelope.StreamKey), as its snapshots' keys do.
	stream := string(rec.Key)
	cur := committed[stream]
	pe, touched := pending[stream]
	if touched {
		cur = pe.entry
	}
	now := time.Now().UTC()
	key := dedupeKey(cmd)
	seen, remembered := cur.remembers(key, now, r.cfg.IdempotencyWindow)
	// A record older than the window, or one the aggregate does not remember
	// though it was sent before commands it has forgotten, may have been
	// applied: a replay of the commands topic must not apply it twice. It goes
	// to the dead letters (an operator may redrive it, as a new record, once sure).
	sent := rec.Timestamp
	if now.Sub(sent) > r.cfg.IdempotencyWindow || !remembered && cur.mayHaveForgotten(key, sent) {
		err := fmt.Errorf("%s: sent %s, before what %s remembers (%s window, %d commands)", deadLetterReason(problem.StaleCommand),
			sent.UTC().Format(time.RFC3339), cmd.AggregateID, r.cfg.IdempotencyWindow, r.cfg.MaxRemembered)
		r.log.Warn("stale command dead-lettered", append(cmd.LogAttrs(), "partition", rec.Partition, "offset", rec.Offset, "sent", sent)...)
		produce(dlq.Record(r.cfg.Topics.DLQ, "aggregator", rec, err))
		r.answerStale(cmd, err, produce, reply)
		return outcomeDeadLettered
	}
	if remembered {
		r.answerDuplicate(cmd, seen, reply)
		return outcomeDuplicate
	}
	// commit makes state at version the aggregate's in this transaction,
	// remembering the command as decided (its records are produced once per
	// batch, in process); it fails, changing nothing, when state cannot be
	// encoded. stateJSON is state encoded when the caller has it already.
	commit := func(state *S, version int64, stateJSON json.RawMessage, decided keyRecord) bool {
		if stateJSON == nil {
			var err error
			if stateJSON, err = json.Marshal(state); err != nil {
				r.log.Error("state could not be encoded", append(cmd.LogAttrs(), "err", err)...)
				return false
			}
		}
		if !touched {
			pe, touched = newPending(cur, rec.Partition), true
			pending[stream] = pe
		}
		pe.state, pe.version, pe.stateJSON = state, version, stateJSON
		pe.remember(key, decided, r.cfg.MaxRemembered)
		return true
	}
	reject := func(p *envelope.Problem) string {
		p.CommandID = cmd.CommandID
		body, _ := json.Marshal(p)
		rejection := envelope.Reply{CommandID: cmd.CommandID, Outcome: envelope.Rejected, Version: cur.version, Body: body}
		produce(envelope.EncodeOutcome(r.cfg.Topics.Outcomes, cmd.AggregateID, cmd.Tenant, rejection))
		replyIfAwaited(cmd, rejection, reply)
		var curJSON json.RawMessage
		if touched {
			curJSON = pe.stateJSON
		}
		_ = commit(cur.state, cur.version, curJSON, keyRecord{CommandID: cmd.CommandID, Version: cur.version, Rejection: body, At: now, Sent: rec.Timestamp})
		return outcomeRejected
	}
	if cmd.ExpectedVersion != envelope.NoVersion && cmd.ExpectedVersion != cur.version {
		v := cur.version
		return reject(&envelope.Problem{
			Type: "version-mismatch", Title: "the aggregate is at another version",
			Detail:         fmt.Sprintf("expected version %d, current version %d", cmd.ExpectedVersion, cur.version),
			CurrentVersion: &v,
		})
	}
	decision := r.def.Decide(cur.state, cur.version, cmd)
	if decision.Reject != nil {
		return reject(decision.Reject)
	}
	if len(decision.Events) == 0 {
		return reject(&envelope.Problem{Type: problem.Internal, Title: "the command changed nothing"})
	}
	state, version := cur.state, cur.version
	var out []*kgo.Record
	meta := cmd.Meta
	meta.TraceParent = tracing.TraceParent(ctx) // the projector continues the trace from this command's span
	for i, ne := range decision.Events {
		data, err := json.Marshal(ne.Data)
		if err != nil {
			r.log.Error("event encoding failed", append(cmd.LogAttrs(), "type", ne.Type, "err", err)...)
			return reject(&envelope.Problem{Type: problem.Internal, Title: "event could not be encoded"})
		}
		ev := envelope.Event{
			Meta: meta, Type: ne.Type, Version: version + 1, Time: now,
			Index: i + 1, Count: len(decision.Events), Data: data,
		}
		if state, err = r.def.Evolve(state, ev); err != nil {
			r.log.Error("evolve failed", append(cmd.LogAttrs(), "type", ne.Type, "err", err)...)
			return reject(&envelope.Problem{Type: problem.Internal, Title: "event could not be applied"})
		}
		version = ev.Version
		out = append(out, envelope.EncodeEvent(r.cfg.Topics.Events, "/answerback/"+r.def.Name, ev))
	}
	if !commit(state, version, nil, keyRecord{CommandID: cmd.CommandID, Version: version, At: now, Sent: rec.Timestamp}) {
		return reject(&envelope.Problem{Type: problem.Internal, Title: "state could not be encoded"})
	}
	for _, rec := range out {
		produce(rec)
	}
	return outcomeApplied
}

// answerStale records a stale command's rejection on the outcomes topic, so
// that its status is final, and replies when somebody still waits (a replayed
// record's gateway is usually long gone).
func (r *Runtime[S]) answerStale(cmd envelope.Command, reason error, produce, send func(*kgo.Record)) {
	body, _ := json.Marshal(problemOf(problem.StaleCommand, reason.Error(), cmd.CommandID))
	reply := envelope.Reply{CommandID: cmd.CommandID, Outcome: envelope.Rejected, Body: body}
	produce(envelope.EncodeOutcome(r.cfg.Topics.Outcomes, cmd.AggregateID, cmd.Tenant, reply))
	replyIfAwaited(cmd, reply, send)
}

// replyIfAwaited sends reply to cmd's reply topic while its gateway still
// waits; past the deadline nobody listens.
func replyIfAwaited(cmd envelope.Command, reply envelope.Reply, send func(*kgo.Record)) {
	if cmd.WantsReply(time.Now()) {
		send(envelope.EncodeReply(cmd.ReplyTo, reply))
	}
}

// answerDuplicate answers a command whose idempotency key was seen: with the
// first rejection again, or with a duplicate notice naming the first command,
// whose recorded outcome the gateway then returns. Nothing is emitted.
func (r *Runtime[S]) answerDuplicate(cmd envelope.Command, seen keyRecord, send func(*kgo.Record)) {
	reply := envelope.Reply{CommandID: cmd.CommandID, Outcome: envelope.Duplicate, Version: seen.Version}
	reply.Body, _ = json.Marshal(map[string]string{"commandId": seen.CommandID})
	if seen.Rejection != nil {
		reply.Outcome, reply.Body = envelope.Rejected, seen.Rejection
	}
	replyIfAwaited(cmd, reply, send)
}

// problemOf is the problem of the table's type name (libs/pipeline/problem),
// with its title, for command commandID.
func problemOf(name, detail, commandID string) envelope.Problem {
	t, _ := problem.Lookup(name)
	return envelope.Problem{Type: name, Title: t.Title, Detail: detail, CommandID: commandID}
}

// deadLetterReason is the reason the problem table gives a dead-letter
// record of the type name.
func deadLetterReason(name string) string {
	t, _ := problem.Lookup(name)
	return t.DeadLetter
}
