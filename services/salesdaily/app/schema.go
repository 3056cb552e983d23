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
//
// Every row belongs to a tenant (the events' ce_tenant, consumer.Meta.Tenant)
// and every key starts with it: two tenants may use the same order IDs and
// SKUs, at different prices, and their rows never meet. The empty tenant is
// that of events from before tenants (a bare record key and no ce_tenant),
// as in the consumer Guard's consumer_versions.
//
// Tables from before tenants are upgraded in place (see upgrade).
var schema = `
-- Every catalog price, from the time its event was decided (ce_time).
CREATE TABLE IF NOT EXISTS sales_prices (
	tenant     text        NOT NULL DEFAULT '',
	sku        text        NOT NULL,
	version    bigint      NOT NULL, -- the catalog item's version
	valid_from timestamptz NOT NULL,
	unit_price bigint      NOT NULL, -- minor units of currency
	currency   text        NOT NULL,
	PRIMARY KEY (tenant, sku, version)
);

-- The lines of orders not yet submitted or cancelled.
CREATE TABLE IF NOT EXISTS sales_open_lines (
	tenant   text   NOT NULL DEFAULT '',
	order_id text   NOT NULL,
	sku      text   NOT NULL,
	quantity bigint NOT NULL,
	PRIMARY KEY (tenant, order_id, sku)
);

-- Every line sold, with the price it was counted at: kept so that a price
-- that arrives late (catalog.events lagging behind orders.events) corrects
-- the revenue it should have set.
CREATE TABLE IF NOT EXISTS sales_lines (
	tenant        text        NOT NULL DEFAULT '',
	order_id      text        NOT NULL,
	sku           text        NOT NULL,
	day           date        NOT NULL,
	submitted_at  timestamptz NOT NULL,
	quantity      bigint      NOT NULL,
	unit_price    bigint,                   -- NULL: no price known yet
	currency      text        NOT NULL,     -- '' while unpriced
	price_from    timestamptz,              -- valid_from and version of the price used
	price_version bigint,
	PRIMARY KEY (tenant, order_id, sku)
);

-- Units and revenue sold per tenant, UTC day (of the submit event's ce_time)
-- and SKU.
CREATE TABLE IF NOT EXISTS daily_sales (
	tenant   text   NOT NULL DEFAULT '',
	day      date   NOT NULL,
	sku      text   NOT NULL,
	currency text   NOT NULL, -- '' for units whose price is not known yet
	quantity bigint NOT NULL,
	revenue  bigint NOT NULL, -- minor units of currency
	PRIMARY KEY (tenant, day, sku, currency)
);
` + upgrade + `
CREATE INDEX IF NOT EXISTS sales_prices_by_tenant_time ON sales_prices (tenant, sku, valid_from);
CREATE INDEX IF NOT EXISTS sales_lines_by_tenant_sku ON sales_lines (tenant, sku, submitted_at);`

// upgrade brings tables from before tenants to the schema above, in place
// and idempotently: each gets the tenant column, its existing rows the empty
// tenant (they were built from events without one, and the events of those
// aggregates that are still to come have none either), and a primary key
// that starts with the tenant. The indexes that had no tenant are dropped
// (the schema creates their successors).
var upgrade = `
ALTER TABLE sales_prices     ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT '';
ALTER TABLE sales_open_lines ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT '';
ALTER TABLE sales_lines      ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT '';
ALTER TABLE daily_sales      ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT '';
` + consumer.PrimaryKeySQL("sales_prices", "tenant", "sku", "version") +
	consumer.PrimaryKeySQL("sales_open_lines", "tenant", "order_id", "sku") +
	consumer.PrimaryKeySQL("sales_lines", "tenant", "order_id", "sku") +
	consumer.PrimaryKeySQL("daily_sales", "tenant", "day", "sku", "currency") + `
DROP INDEX IF EXISTS sales_prices_by_time;
DROP INDEX IF EXISTS sales_lines_by_sku;`

// schemaLockKey serialises Migrate across processes ("salesday" in ASCII).
const schemaLockKey int64 = 0x73616c6573646179

// Migrate creates the service's tables and the consumer Guard's when
// missing, and upgrades them from the schema before tenants (their rows get
// the empty tenant: see schema); concurrent callers serialise on an advisory
// lock, and running it again changes nothing. A further change of the schema
// should be made the same way, idempotent, or with numbered migrations.
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
