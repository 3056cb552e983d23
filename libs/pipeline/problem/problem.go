// Package problem is the one table of the problem types a client can meet —
// in an HTTP answer (application/problem+json, RFC 9457), in a rejection
// reply or recorded outcome, or on a dead-letter record — each defined once:
// its stable type, its title, the HTTP status it is answered with, and the
// reason a dead-letter record gives when the problem sends a record there.
//
// The pipeline's and the HTTP layer's types are defined here; a domain adds
// its own with Define (libs/domain/problems does, at init). Clients may
// branch on the types: they never change meaning. The gateway answers every
// problem with the status the table gives its type (Status), and its OpenAPI
// document is checked against the table.
package problem

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"sync"
)

// Type is one problem type.
type Type struct {
	// Name is the stable type: "order-not-found".
	Name string
	// Title is its short summary (an occurrence may say more in its detail).
	Title string
	// Status is the HTTP status it is answered with.
	Status int
	// DeadLetter is the reason a dead-letter record gives when this problem
	// sends a record there; "" when it never does.
	DeadLetter string
	// Rejection says the type can be a command's rejection: in a reply, a
	// recorded outcome and the outcomes topic (the AsyncAPI document lists
	// these), not only in an HTTP answer.
	Rejection bool
}

// The pipeline's and the HTTP layer's problem types.
const (
	Malformed            = "malformed"
	TooLarge             = "too-large"
	UnsupportedMediaType = "unsupported-media-type"
	NotFound             = "not-found"
	MethodNotAllowed     = "method-not-allowed"
	Unauthorized         = "unauthorized"
	Forbidden            = "forbidden"
	RateLimited          = "rate-limited"
	Overloaded           = "overloaded"
	Unavailable          = "unavailable"
	NotReady             = "not-ready"
	Internal             = "internal"
	IdempotencyKeyReused = "idempotency-key-reused"
	CommandNotFound      = "command-not-found"
	VersionNotReached    = "version-not-reached"
	VersionMismatch      = "version-mismatch"
	InvalidCommand       = "invalid-command"
	UnknownCommand       = "unknown-command"
	StaleCommand         = "stale-command"
)

var (
	mu    sync.RWMutex
	table = map[string]Type{}
)

func init() {
	Define( // answered over HTTP only
		Type{Name: Malformed, Title: "malformed request", Status: http.StatusBadRequest},
		Type{Name: TooLarge, Title: "request body too large", Status: http.StatusRequestEntityTooLarge},
		Type{Name: UnsupportedMediaType, Title: "send application/json", Status: http.StatusUnsupportedMediaType},
		Type{Name: NotFound, Title: "no such resource", Status: http.StatusNotFound},
		Type{Name: MethodNotAllowed, Title: "method not allowed", Status: http.StatusMethodNotAllowed},
		Type{Name: Unauthorized, Title: "a valid bearer token is required", Status: http.StatusUnauthorized},
		Type{Name: Forbidden, Title: "the token lacks the scope this route needs", Status: http.StatusForbidden},
		Type{Name: RateLimited, Title: "too many requests for this tenant; retry after Retry-After", Status: http.StatusTooManyRequests},
		Type{Name: Overloaded, Title: "too many requests waiting on this gateway; retry shortly", Status: http.StatusServiceUnavailable},
		Type{Name: Unavailable, Title: "a dependency is unavailable; retry shortly", Status: http.StatusServiceUnavailable},
		Type{Name: NotReady, Title: "not ready to serve", Status: http.StatusServiceUnavailable},
		Type{Name: IdempotencyKeyReused, Title: "this Idempotency-Key was used for another request", Status: http.StatusUnprocessableEntity},
		Type{Name: CommandNotFound, Title: "unknown command", Status: http.StatusNotFound},
		Type{Name: VersionNotReached, Title: "the view has not reached that version yet", Status: http.StatusGatewayTimeout},
	)
	Define( // also a command's rejection
		Type{Name: Internal, Title: "internal error", Status: http.StatusInternalServerError, Rejection: true},
		Type{Name: VersionMismatch, Title: "the expected version is not the aggregate's", Status: http.StatusPreconditionFailed, Rejection: true},
		Type{Name: InvalidCommand, Title: "the command's data is malformed or invalid", Status: http.StatusUnprocessableEntity, Rejection: true},
		Type{Name: UnknownCommand, Title: "unknown command type", Status: http.StatusBadRequest, DeadLetter: "unknown command type", Rejection: true},
		Type{Name: StaleCommand, Title: "command too old to be applied safely", Status: http.StatusConflict, DeadLetter: "stale command", Rejection: true},
	)
}

// Define adds types to the table. A name defined twice is a programming
// error: it panics.
func Define(types ...Type) {
	mu.Lock()
	defer mu.Unlock()
	for _, t := range types {
		if _, dup := table[t.Name]; dup || t.Name == "" || t.Status < 400 || t.Status > 599 {
			panic(fmt.Sprintf("problem: type %q defined twice, unnamed or with status %d", t.Name, t.Status))
		}
		table[t.Name] = t
	}
}

// Lookup returns the type named name.
func Lookup(name string) (Type, bool) {
	mu.RLock()
	defer mu.RUnlock()
	t, ok := table[name]
	return t, ok
}

// Status is the HTTP status of the type named name; 500 for a type the
// table does not hold.
func Status(name string) int {
	if t, ok := Lookup(name); ok {
		return t.Status
	}
	return http.StatusInternalServerError
}

// All returns the table, by name.
func All() []Type {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]Type, 0, len(table))
	for _, t := range table {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b Type) int { return cmp.Compare(a.Name, b.Name) })
	return out
}
