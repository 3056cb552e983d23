package aggregate

import (
	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// NewEvent is an event a decision emits; Data is marshalled to JSON.
type NewEvent struct {
	Type string // CloudEvents type, e.g. "orders.item-added.v1"
	Data any
}

// Decision is what Decide returns: events to emit, or a rejection.
type Decision struct {
	Events []NewEvent
	// Reject, when set, refuses the command: no event is emitted and the
	// problem is sent to the waiting client. Its Type is a stable identifier
	// (e.g. "order-not-open") that the gateway maps to an HTTP status.
	Reject *envelope.Problem
}

// Reject is a Decision refusing the command.
func Reject(problemType, title, detail string) Decision {
	return Decision{Reject: &envelope.Problem{Type: problemType, Title: title, Detail: detail}}
}

// Emit is a Decision emitting events.
func Emit(events ...NewEvent) Decision { return Decision{Events: events} }

// Definition is what an aggregate type plugs into the runtime: a new aggregate
// type is added by writing these functions and running a Runtime with them.
type Definition[S any] struct {
	// Name is the domain, e.g. "orders": the runtime uses its <Name>.* topics.
	Name string
	// Decide returns the events for cmd given the aggregate's state at version
	// (state is nil and version 0 when the aggregate does not exist yet). It is
	// called by the single writer of the aggregate, must be deterministic and
	// must not block. A decision with no events and no rejection is an error.
	// The runtime has already checked the expected version.
	Decide func(state *S, version int64, cmd envelope.Command) Decision
	// CommandTypes lists the command types Decide knows. A command of another
	// type is dead-lettered (and rejected as unknown-command, so a waiting
	// client is answered). Empty: every type goes to Decide.
	CommandTypes []string
	// Evolve returns the state after ev (state is nil before the first event).
	// It must not modify state in place: the runtime keeps the old state until
	// the transaction commits.
	Evolve func(state *S, ev envelope.Event) (*S, error)
}
