package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/answerback/answerback/libs/domain/catalog"
	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/pipeline/aggregate"
	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// startMonolithFloor serves the same API from one process without Kafka:
// each command is decided with the same domain code, applied to the same
// view and answered with the same reply, in one PostgreSQL transaction that
// locks the aggregate's row. What it costs is what the business logic and
// the database cost; Answerback's distance from it is the price of the
// pipeline.
func startMonolithFloor(ctx context.Context, e *env, log *slog.Logger) (*system, error) {
	pool, err := e.pool(ctx, "monolith", 32) // as the gateway's pool
	if err != nil {
		return nil, err
	}
	if err := view.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE aggregates (id text PRIMARY KEY, version bigint NOT NULL, state jsonb NOT NULL)`); err != nil {
		pool.Close()
		return nil, err
	}
	m := &monolith{pool: pool}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/orders", m.handle(orders.CommandCreate, func(r *http.Request, body []byte) string {
		var c struct{ ID string }
		_ = json.Unmarshal(body, &c)
		return c.ID
	}, http.StatusCreated))
	mux.HandleFunc("POST /v1/orders/{id}/items", m.handle(orders.CommandAddItem, func(r *http.Request, _ []byte) string { return r.PathValue("id") }, http.StatusOK))
	mux.HandleFunc("PUT /v1/catalog/{sku}", m.handle(catalog.CommandUpsert, func(r *http.Request, _ []byte) string { return r.PathValue("sku") }, http.StatusOK))
	url, shutdown, err := serveLocal(mux)
	if err != nil {
		pool.Close()
		return nil, err
	}
	sys := &system{name: "monolith floor", url: url, stop: func() {
		shutdown()
		pool.Close()
	}}
	sys.createOrder = func(ctx context.Context, id string) error {
		body, _ := json.Marshal(map[string]any{"id": id, "customerId": "bench"})
		return post(ctx, sys.url+"/v1/orders", sys.token, body, http.StatusCreated)
	}
	if err := seedCatalog(ctx, sys.url, sys.token); err != nil {
		sys.stop()
		return nil, err
	}
	log.Info("monolith floor up", "url", sys.url)
	return sys, nil
}

type monolith struct{ pool *pgxpool.Pool }

// handle decides commandType for the aggregate idOf names, in one transaction.
func (m *monolith) handle(commandType string, idOf func(*http.Request, []byte) string, okStatus int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id := idOf(r, body)
		reply, status, err := m.decide(r.Context(), commandType, id, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if status == 0 {
			status = okStatus
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(reply)
	}
}

func (m *monolith) decide(ctx context.Context, commandType, id string, data []byte) (json.RawMessage, int, error) {
	tx, err := m.pool.Begin(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var version int64
	var raw []byte
	err = tx.QueryRow(ctx, `SELECT version, state FROM aggregates WHERE id = $1 FOR UPDATE`, id).Scan(&version, &raw)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, err
	}
	cmd := envelope.Command{Meta: envelope.Meta{CommandID: uuid.NewString(), AggregateID: id, Tenant: benchTenant, ExpectedVersion: envelope.NoVersion}, Type: commandType, Data: data}
	isOrder := commandType != catalog.CommandUpsert
	var decision aggregate.Decision
	var orderState *orders.Order
	var itemState *catalog.Item
	if isOrder {
		if raw != nil {
			orderState = new(orders.Order)
			if err := json.Unmarshal(raw, orderState); err != nil {
				return nil, 0, err
			}
		}
		if commandType == orders.CommandAddItem {
			// As the gateway does: an unknown SKU is refused from the catalog view.
			var add orders.AddItem
			_ = json.Unmarshal(data, &add)
			if ok, err := view.CatalogItemExists(ctx, tx, cmd.Tenant, add.SKU); err != nil || !ok {
				return problemBody(cmd, "unknown-sku"), http.StatusUnprocessableEntity, err
			}
		}
		decision = orders.Decide(orderState, version, cmd)
	} else {
		if raw != nil {
			itemState = new(catalog.Item)
			if err := json.Unmarshal(raw, itemState); err != nil {
				return nil, 0, err
			}
		}
		decision = catalog.Decide(itemState, version, cmd)
	}
	if decision.Reject != nil {
		b, _ := json.Marshal(decision.Reject)
		return b, http.StatusUnprocessableEntity, nil
	}
	now := time.Now().UTC()
	var state any
	for i, ne := range decision.Events {
		evData, _ := json.Marshal(ne.Data)
		ev := envelope.Event{Meta: cmd.Meta, Type: ne.Type, Version: version + 1, Time: now, Index: i + 1, Count: len(decision.Events), Data: evData}
		version++
		if isOrder {
			if orderState, err = orders.Evolve(orderState, ev); err != nil {
				return nil, 0, err
			}
			state = orderState
			err = view.ApplyOrderEvent(ctx, tx, ev)
		} else {
			if itemState, err = catalog.Evolve(itemState, ev); err != nil {
				return nil, 0, err
			}
			state = itemState
			err = view.ApplyCatalogEvent(ctx, tx, ev)
		}
		if err != nil {
			return nil, 0, err
		}
	}
	stateJSON, _ := json.Marshal(state)
	if _, err := tx.Exec(ctx, `INSERT INTO aggregates (id, version, state) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET version = excluded.version, state = excluded.state`, id, version, stateJSON); err != nil {
		return nil, 0, err
	}
	var reply json.RawMessage
	if isOrder {
		reply, err = view.OrderReply(ctx, tx, cmd.Tenant, cmd.CommandID, id)
	} else {
		reply, err = view.CatalogReply(ctx, tx, cmd.Tenant, cmd.CommandID, id)
	}
	if err != nil {
		return nil, 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, 0, err
	}
	return reply, 0, nil
}

func problemBody(cmd envelope.Command, typ string) json.RawMessage {
	b, _ := json.Marshal(envelope.Problem{Type: typ, Title: fmt.Sprintf("%s refused", cmd.Type), CommandID: cmd.CommandID})
	return b
}
