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
	Define(
		Type{Malformed, "malformed request", http.StatusBadRequest, ""},
		Type{TooLarge, "request body too large", http.StatusRequestEntityTooLarge, ""},
		Type{UnsupportedMediaType, "send application/json", http.StatusUnsupportedMediaType, ""},
		Type{NotFound, "no such resource", http.StatusNotFound, ""},
		Type{MethodNotAllowed, "method not allowed", http.StatusMethodNotAllowed, ""},
		Type{Unauthorized, "a valid bearer token is required", http.StatusUnauthorized, ""},
		Type{Forbidden, "the token lacks the scope this route needs", http.StatusForbidden, ""},
		Type{RateLimited, "too many requests for this tenant; retry after Retry-After", http.StatusTooManyRequests, ""},
		Type{Overloaded, "too many requests waiting on this gateway; retry shortly", http.StatusServiceUnavailable, ""},
		Type{Unavailable, "a dependency is unavailable; retry shortly", http.StatusServiceUnavailable, ""},
		Type{NotReady, "not ready to serve", http.StatusServiceUnavailable, ""},
		Type{Internal, "internal error", http.StatusInternalServerError, ""},
		Type{IdempotencyKeyReused, "this Idempotency-Key was used for another request", http.StatusUnprocessableEntity, ""},
		Type{CommandNotFound, "unknown command", http.StatusNotFound, ""},
		Type{VersionNotReached, "the view has not reached that version yet", http.StatusGatewayTimeout, ""},
		Type{VersionMismatch, "the expected version is not the aggregate's", http.StatusPreconditionFailed, ""},
		Type{InvalidCommand, "the command's data is malformed or invalid", http.StatusUnprocessableEntity, ""},
		Type{UnknownCommand, "unknown command type", http.StatusBadRequest, "unknown command type"},
		Type{StaleCommand, "command too old to be applied safely", http.StatusConflict, "stale command"},
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
	slices.SortFunc(out, func(a, b Type) int {
		if a.Name < b.Name {
			return -1
		}
		return 1
	})
	return out
}
