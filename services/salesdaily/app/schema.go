package app

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/answerback/answerback/libs/consumer"
)

// schema is the service's own read model. Its tables start with sales_ (and
// daily_sales) so that it may share a database with the pipeline's views.
const schema = `
-- Every catalog price, from the time its event was decided (ce_time).
CREATE TABLE IF NOT EXISTS sales_prices (
	sku        text        NOT NULL,
	version    bigint      NOT NULL, -- the catalog item's version
	valid_from timestamptz NOT NULL,
	unit_price bigint      NOT NULL, -- minor units of currency
	currency   text        NOT NULL,
	PRIMARY KEY (sku, version)
);
CREATE INDEX IF NOT EXISTS sales_prices_by_time ON sales_prices (sku, valid_from);

-- The lines of orders not yet submitted or cancelled.
CREATE TABLE IF NOT EXISTS sales_open_lines (
	order_id text   NOT NULL,
	sku      text   NOT NULL,
	quantity bigint NOT NULL,
	PRIMARY KEY (order_id, sku)
);

-- Every line sold, with the price it was counted at: kept so that a price
-- that arrives late (catalog.events lagging behind orders.events) corrects
-- the revenue it should have set.
CREATE TABLE IF NOT EXISTS sales_lines (
	order_id      text        NOT NULL,
	sku           text        NOT NULL,
	day           date        NOT NULL,
	submitted_at  timestamptz NOT NULL,
	quantity      bigint      NOT NULL,
	unit_price    bigint,                   -- NULL: no price known yet
	currency      text        NOT NULL,     -- '' while unpriced
	price_from    timestamptz,              -- valid_from and version of the price used
	price_version bigint,
	PRIMARY KEY (order_id, sku)
);
CREATE INDEX IF NOT EXISTS sales_lines_by_sku ON sales_lines (sku, submitted_at);

-- Units and revenue sold per UTC day (of the submit event's ce_time) and SKU.
CREATE TABLE IF NOT EXISTS daily_sales (
	day      date   NOT NULL,
	sku      text   NOT NULL,
	currency text   NOT NULL, -- '' for units whose price is not known yet
	quantity bigint NOT NULL,
	revenue  bigint NOT NULL, -- minor units of currency
	PRIMARY KEY (day, sku, currency)
);`

// schemaLockKey serialises Migrate across processes ("salesday" in ASCII).
const schemaLockKey int64 = 0x73616c6573646179

// Migrate creates the service's tables and the consumer Guard's when
// missing; concurrent callers serialise on an advisory lock. The schema has
// one version: a change to it will need numbered migrations.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if err := consumer.EnsureSchema(ctx, pool); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, schemaLockKey); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, schema)
		return err
	})
	if err != nil {
		return fmt.Errorf("salesdaily: schema: %w", err)
	}
	return nil
}
