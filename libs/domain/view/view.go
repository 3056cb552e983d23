// Package view is the PostgreSQL read model of the catalog and orders
// domains (pgx v5): its schema (Migrate), the projection of events into it
// (ApplyCatalogEvent, ApplyOrderEvent), the reply bodies derived from it
// after a command (OrderReply, CatalogReply), and the reads the HTTP gateway
// serves (GetOrder, ListCatalog, CatalogItemExists).
//
// Every function takes a Querier, so callers choose the transaction: a
// projector applies an event and derives the reply in one pgx.Tx, so the
// reply reflects exactly the state after the event.
package view

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier runs SQL; pgx.Tx, *pgx.Conn and *pgxpool.Pool satisfy it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Errors, to be tested with errors.Is.
var (
	// ErrNotFound: the order or catalog item is not in the view.
	ErrNotFound = errors.New("view: not found")
	// ErrUnknownEvent: the event type is not one this view projects.
	ErrUnknownEvent = errors.New("view: unknown event type")
	// ErrBadEvent: the event's data is malformed.
	ErrBadEvent = errors.New("view: malformed event")
)
