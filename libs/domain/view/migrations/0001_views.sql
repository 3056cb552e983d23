-- Read model of the catalog and orders domains, written by the projectors
-- (view.ApplyCatalogEvent, view.ApplyOrderEvent) and read by reply derivation
-- and the HTTP gateway. Every aggregate row carries the version of the last
-- event applied to it, which makes applying an event idempotent.

CREATE TABLE catalog_items (
    sku           text    PRIMARY KEY,
    name          text    NOT NULL,
    unit_price    bigint  NOT NULL CHECK (unit_price >= 0), -- minor units of currency
    currency      text    NOT NULL,
    stock         bigint  NOT NULL CHECK (stock >= 0),
    max_per_order bigint  NOT NULL CHECK (max_per_order >= 1),
    active        boolean NOT NULL,
    version       bigint  NOT NULL
);

CREATE TABLE orders (
    id          text        PRIMARY KEY,
    customer_id text        NOT NULL,
    currency    text        NOT NULL,
    status      text        NOT NULL CHECK (status IN ('open', 'submitted', 'cancelled')),
    version     bigint      NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE order_lines (
    order_id text   NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    sku      text   NOT NULL,
    quantity bigint NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, sku)
);

-- For "reserved quantity per SKU over submitted orders" (the stock held by
-- submitted orders, see view.validItemsSQL): a partial index finds the
-- submitted orders, and order_lines_sku_idx gives a SKU's lines with their
-- quantities without visiting the table.
CREATE INDEX orders_submitted_idx ON orders (id) WHERE status = 'submitted';
CREATE INDEX order_lines_sku_idx ON order_lines (sku, order_id) INCLUDE (quantity);
