// Package envelope is the wire contract of the pipeline: how commands, events
// and replies travel as Kafka records — key, headers and JSON payload — in one
// place. Decoding rejects bad input with typed errors (*HeaderError,
// *PayloadError) so that callers can dead-letter it with a reason.
//
// Commands (topic <domain>.commands, key = aggregate ID):
//
//	command-id, command-type, reply-to, deadline (RFC 3339, UTC), tenant,
//	traceparent, idempotency-key, expected-version, content-type
//
// Events (topic <domain>.events, key = aggregate ID) follow the CloudEvents
// Kafka protocol binding in binary mode: ce_specversion, ce_id, ce_source,
// ce_type, ce_subject (aggregate ID), ce_time, ce_sequence (aggregate version),
// ce_correlationid (the command's conversation: its command ID),
// ce_causationid (the message that caused the event: the command ID),
// ce_tenant, ce_traceparent, content-type; plus
// the pipeline's own reply-to, deadline, and command-events ("i/n": this is the
// i-th of the n events the command produced).
//
// Replies (topic replies.<gateway-instance>, key = command ID): command-id,
// outcome (applied | rejected | duplicate), version, content-type; the value
// is the reply body (applied), an RFC 9457 problem (rejected) or {}
// (duplicate). Outcomes (topic <domain>.outcomes, key = aggregate ID) are
// replies plus the tenant header: the record of every rejection.
package envelope

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Header names.
const (
	HCommandID       = "command-id"
	HCommandType     = "command-type"
	HReplyTo         = "reply-to"
	HDeadline        = "deadline"
	HTenant          = "tenant"
	HTraceParent     = "traceparent"
	HIdempotencyKey  = "idempotency-key"
	HExpectedVersion = "expected-version"
	HContentType     = "content-type"
	HCommandEvents   = "command-events"
	HOutcome         = "outcome"
	HVersion         = "version"

	CESpecVersion   = "ce_specversion"
	CEID            = "ce_id"
	CESource        = "ce_source"
	CEType          = "ce_type"
	CESubject       = "ce_subject"
	CETime          = "ce_time"
	CESequence      = "ce_sequence"
	CECorrelationID = "ce_correlationid"
	CECausationID   = "ce_causationid"
	CETenant        = "ce_tenant"
	CETraceParent   = "ce_traceparent"

	ContentTypeJSON = "application/json"
	ProblemJSON     = "application/problem+json"
)

// MaxCommandBytes bounds a command's value; a larger one is refused as
// malformed (the gateway never sends more than 64 KiB of body).
const MaxCommandBytes = 256 << 10

// NoVersion means a command carries no expected version.
const NoVersion int64 = -1

// HeaderError reports a missing or malformed header.
type HeaderError struct {
	Header string
	Reason string
}

func (e *HeaderError) Error() string { return fmt.Sprintf("header %s: %s", e.Header, e.Reason) }

// PayloadError reports a record value that is not the JSON it should be.
type PayloadError struct{ Err error }

func (e *PayloadError) Error() string { return "payload: " + e.Err.Error() }
func (e *PayloadError) Unwrap() error { return e.Err }

// ErrNoKey reports a record without the aggregate ID as its key.
var ErrNoKey = errors.New("record key (aggregate ID) is empty")

// Meta is what travels with a command and, after it, with its events.
type Meta struct {
	CommandID       string
	AggregateID     string
	ReplyTo         string    // reply topic of the waiting gateway; "" for none
	Deadline        time.Time // after it nobody waits; zero: no reply wanted
	Tenant          string
	TraceParent     string
	IdempotencyKey  string
	ExpectedVersion int64 // NoVersion when the client sent none
}

// WantsReply reports whether somebody still waits for the command's outcome at now.
func (m Meta) WantsReply(now time.Time) bool {
	return m.ReplyTo != "" && !m.Deadline.IsZero() && now.Before(m.Deadline)
}

// Command is a request to change one aggregate.
type Command struct {
	Meta
	Type string
	Data json.RawMessage
}

// Event is one fact an aggregate emitted.
type Event struct {
	Meta
	Type    string
	Version int64     // the aggregate's version after this event (1 for the first)
	Time    time.Time // when the aggregate decided it
	Index   int       // 1-based position among the events of its command
	Count   int       // number of events its command produced
	Data    json.RawMessage
}

// LastOfCommand reports whether e completes its command's events.
func (e Event) LastOfCommand() bool { return e.Index == e.Count }

// ID is the event's CloudEvents ID: unique and stable across retries.
func (e Event) ID() string { return e.key() + "@" + strconv.FormatInt(e.Version, 10) }

// key is the record key of m's aggregate: its StreamKey, or for a record
// from before tenants (no tenant), the bare aggregate ID.
func (m Meta) key() string {
	if m.Tenant == "" {
		return m.AggregateID
	}
	return StreamKey(m.Tenant, m.AggregateID)
}

// splitKey reads a record key into m: "tenant/id" (StreamKey), whose tenant
// must be the one the tenant header names; or a bare ID, from before tenants.
func (m *Meta) splitKey(r *kgo.Record, tenantHeader string) error {
	m.Tenant, _ = Header(r, tenantHeader)
	tenant, id, ok := SplitStreamKey(string(r.Key))
	if !ok {
		m.AggregateID = string(r.Key)
		return nil
	}
	if tenant != m.Tenant {
		return &HeaderError{Header: tenantHeader, Reason: "does not match the tenant of the record key"}
	}
	m.AggregateID = id
	return nil
}

// Outcome of a command, as a reply carries it.
type Outcome string

// The outcomes of a command.
const (
	Applied  Outcome = "applied"
	Rejected Outcome = "rejected"
	// Duplicate answers a command whose idempotency key the aggregate has
	// already seen and applied: nothing was emitted again, and the first
	// outcome is the one recorded for its command ID.
	Duplicate Outcome = "duplicate"
)

// Reply answers one command.
type Reply struct {
	CommandID string
	Outcome   Outcome
	Version   int64           // aggregate version after the command (applied) or now (rejected)
	Body      json.RawMessage // reply body (applied) or problem (rejected)
}

// Header returns the value of r's header name, and whether r has it.
func Header(r *kgo.Record, name string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == name {
			return string(h.Value), true
		}
	}
	return "", false
}

func required(r *kgo.Record, name string) (string, error) {
	v, ok := Header(r, name)
	if !ok || v == "" {
		return "", &HeaderError{Header: name, Reason: "missing"}
	}
	return v, nil
}

func add(hs []kgo.RecordHeader, name, value string) []kgo.RecordHeader {
	if value == "" {
		return hs
	}
	return append(hs, kgo.RecordHeader{Key: name, Value: []byte(value)})
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func parseTime(r *kgo.Record, name string) (time.Time, error) {
	v, ok := Header(r, name)
	if !ok || v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, &HeaderError{Header: name, Reason: "not an RFC 3339 time"}
	}
	return t, nil
}

func parseInt(r *kgo.Record, name string, def int64) (int64, error) {
	v, ok := Header(r, name)
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, &HeaderError{Header: name, Reason: "not a non-negative integer"}
	}
	return n, nil
}

func validJSON(b []byte) error {
	if !json.Valid(b) {
		return &PayloadError{Err: errors.New("not valid JSON")}
	}
	return nil
}

func (m Meta) headers() []kgo.RecordHeader {
	var hs []kgo.RecordHeader
	hs = add(hs, HCommandID, m.CommandID)
	hs = add(hs, HReplyTo, m.ReplyTo)
	hs = add(hs, HDeadline, formatTime(m.Deadline))
	hs = add(hs, HTenant, m.Tenant)
	hs = add(hs, HTraceParent, m.TraceParent)
	hs = add(hs, HIdempotencyKey, m.IdempotencyKey)
	if m.ExpectedVersion != NoVersion {
		hs = add(hs, HExpectedVersion, strconv.FormatInt(m.ExpectedVersion, 10))
	}
	return hs
}

// EncodeCommand makes the record for c on topic, keyed by its StreamKey.
func EncodeCommand(topic string, c Command) *kgo.Record {
	hs := c.headers()
	hs = add(hs, HCommandType, c.Type)
	hs = add(hs, HContentType, ContentTypeJSON)
	return &kgo.Record{Topic: topic, Key: []byte(c.key()), Headers: hs, Value: c.Data}
}

// DecodeCommand reads a command record, rejecting a missing key, command ID
// or type, malformed headers and a value that is not JSON.
func DecodeCommand(r *kgo.Record) (Command, error) {
	var c Command
	var err error
	if len(r.Key) == 0 {
		return c, ErrNoKey
	}
	if err := c.splitKey(r, HTenant); err != nil {
		return c, err
	}
	if c.Tenant == "" {
		return c, &HeaderError{Header: HTenant, Reason: "missing: every command belongs to a tenant"}
	}
	if c.CommandID, err = required(r, HCommandID); err != nil {
		return c, err
	}
	if c.Type, err = required(r, HCommandType); err != nil {
		return c, err
	}
	if c.Deadline, err = parseTime(r, HDeadline); err != nil {
		return c, err
	}
	if c.ExpectedVersion, err = parseInt(r, HExpectedVersion, NoVersion); err != nil {
		return c, err
	}
	c.ReplyTo, _ = Header(r, HReplyTo)
	c.TraceParent, _ = Header(r, HTraceParent)
	c.IdempotencyKey, _ = Header(r, HIdempotencyKey)
	if len(r.Value) > MaxCommandBytes {
		return c, &PayloadError{Err: fmt.Errorf("%d bytes, over the %d-byte limit", len(r.Value), MaxCommandBytes)}
	}
	if err := validJSON(r.Value); err != nil {
		return c, err
	}
	c.Data = r.Value
	return c, nil
}

// EncodeEvent makes the CloudEvents (binary mode) record for e on topic,
// keyed by its StreamKey; the subject is the aggregate ID, the id
// "<tenant>/<aggregate>@<version>". source is the CloudEvents source, e.g.
// "/answerback/orders".
func EncodeEvent(topic, source string, e Event) *kgo.Record {
	hs := []kgo.RecordHeader{
		{Key: CESpecVersion, Value: []byte("1.0")},
		{Key: CEID, Value: []byte(e.ID())},
		{Key: CESource, Value: []byte(source)},
		{Key: CEType, Value: []byte(e.Type)},
		{Key: CESubject, Value: []byte(e.AggregateID)},
		{Key: CETime, Value: []byte(formatTime(e.Time))},
		{Key: CESequence, Value: []byte(strconv.FormatInt(e.Version, 10))},
		{Key: HContentType, Value: []byte(ContentTypeJSON)},
	}
	hs = add(hs, CECorrelationID, e.CommandID)
	hs = add(hs, CECausationID, e.CommandID)
	hs = add(hs, CETenant, e.Tenant)
	hs = add(hs, CETraceParent, e.TraceParent)
	hs = add(hs, HReplyTo, e.ReplyTo)
	hs = add(hs, HDeadline, formatTime(e.Deadline))
	hs = add(hs, HCommandEvents, fmt.Sprintf("%d/%d", e.Index, e.Count))
	return &kgo.Record{Topic: topic, Key: []byte(e.key()), Headers: hs, Value: e.Data}
}

// DecodeEvent reads an event record.
func DecodeEvent(r *kgo.Record) (Event, error) {
	var e Event
	var err error
	if len(r.Key) == 0 {
		return e, ErrNoKey
	}
	if v, _ := Header(r, CESpecVersion); v != "1.0" {
		return e, &HeaderError{Header: CESpecVersion, Reason: fmt.Sprintf("want 1.0, got %q", v)}
	}
	if err := e.splitKey(r, CETenant); err != nil {
		return e, err
	}
	if subject, _ := Header(r, CESubject); subject != e.AggregateID {
		return e, &HeaderError{Header: CESubject, Reason: "does not match the record key"}
	}
	if e.Type, err = required(r, CEType); err != nil {
		return e, err
	}
	if e.Version, err = parseInt(r, CESequence, 0); err != nil || e.Version < 1 {
		return e, &HeaderError{Header: CESequence, Reason: "want the aggregate version, 1 or more"}
	}
	if e.Time, err = parseTime(r, CETime); err != nil {
		return e, err
	}
	if e.Deadline, err = parseTime(r, HDeadline); err != nil {
		return e, err
	}
	e.Index, e.Count = 1, 1
	if v, ok := Header(r, HCommandEvents); ok {
		i, n, found := strings.Cut(v, "/")
		e.Index, _ = strconv.Atoi(i)
		e.Count, _ = strconv.Atoi(n)
		if !found || e.Index < 1 || e.Index > e.Count {
			return e, &HeaderError{Header: HCommandEvents, Reason: "want i/n with 1 <= i <= n"}
		}
	}
	e.CommandID, _ = Header(r, CECorrelationID)
	e.TraceParent, _ = Header(r, CETraceParent)
	e.ReplyTo, _ = Header(r, HReplyTo)
	e.ExpectedVersion = NoVersion
	if err := validJSON(r.Value); err != nil {
		return e, err
	}
	e.Data = r.Value
	return e, nil
}

// EncodeReply makes the record for reply on topic.
func EncodeReply(topic string, reply Reply) *kgo.Record {
	ct := ContentTypeJSON
	if reply.Outcome == Rejected {
		ct = ProblemJSON
	}
	return &kgo.Record{
		Topic: topic,
		Key:   []byte(reply.CommandID),
		Headers: []kgo.RecordHeader{
			{Key: HCommandID, Value: []byte(reply.CommandID)},
			{Key: HOutcome, Value: []byte(reply.Outcome)},
			{Key: HVersion, Value: []byte(strconv.FormatInt(reply.Version, 10))},
			{Key: HContentType, Value: []byte(ct)},
		},
		Value: reply.Body,
	}
}

// EncodeOutcome makes the record of a command's outcome on a domain's
// outcomes topic: a reply keyed by the aggregate's StreamKey (so that it
// stays in the aggregate's partition order) with the tenant.
func EncodeOutcome(topic, aggregateID, tenant string, reply Reply) *kgo.Record {
	rec := EncodeReply(topic, reply)
	rec.Key = []byte(Meta{AggregateID: aggregateID, Tenant: tenant}.key())
	rec.Headers = add(rec.Headers, HTenant, tenant)
	return rec
}

// DecodeOutcome reads an outcome record: the reply, its aggregate and tenant.
func DecodeOutcome(r *kgo.Record) (reply Reply, aggregateID, tenant string, err error) {
	if len(r.Key) == 0 {
		return reply, "", "", ErrNoKey
	}
	reply, err = DecodeReply(r)
	var m Meta
	if keyErr := m.splitKey(r, HTenant); keyErr != nil && err == nil {
		err = keyErr
	}
	return reply, m.AggregateID, m.Tenant, err
}

// DecodeReply reads a reply record.
func DecodeReply(r *kgo.Record) (Reply, error) {
	var reply Reply
	var err error
	if reply.CommandID, err = required(r, HCommandID); err != nil {
		return reply, err
	}
	o, _ := Header(r, HOutcome)
	reply.Outcome = Outcome(o)
	if reply.Outcome != Applied && reply.Outcome != Rejected && reply.Outcome != Duplicate {
		return reply, &HeaderError{Header: HOutcome, Reason: "want applied, rejected or duplicate"}
	}
	if reply.Version, err = parseInt(r, HVersion, 0); err != nil {
		return reply, err
	}
	if err := validJSON(r.Value); err != nil {
		return reply, err
	}
	reply.Body = r.Value
	return reply, nil
}

// Problem is an RFC 9457 problem detail; Type is a stable identifier clients may branch on.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status,omitempty"`
	Detail string `json:"detail,omitempty"`
	// CurrentVersion names the aggregate's version, for version conflicts.
	CurrentVersion *int64 `json:"currentVersion,omitempty"`
	CommandID      string `json:"commandId,omitempty"`
}
