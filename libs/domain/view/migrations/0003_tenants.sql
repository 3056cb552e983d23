-- Tenants: every row of the view belongs to one tenant (the token's tenant
-- claim, carried by every record as the "tenant"/"ce_tenant" header), and
-- every key includes it, so two tenants may use the same order IDs and SKUs
-- without ever meeting. Rows written before tenants existed belong to
-- "default".

ALTER TABLE catalog_items    ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE orders           ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE order_lines      ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE sku_reservations ADD COLUMN tenant text NOT NULL DEFAULT 'default';

ALTER TABLE order_lines DROP CONSTRAINT order_lines_order_id_fkey;
ALTER TABLE order_lines DROP CONSTRAINT order_lines_pkey;
ALTER TABLE orders DROP CONSTRAINT orders_pkey;
ALTER TABLE catalog_items DROP CONSTRAINT catalog_items_pkey;
ALTER TABLE sku_reservations DROP CONSTRAINT sku_reservations_pkey;

ALTER TABLE orders           ADD PRIMARY KEY (tenant, id);
ALTER TABLE order_lines      ADD PRIMARY KEY (tenant, order_id, sku);
ALTER TABLE order_lines      ADD FOREIGN KEY (tenant, order_id) REFERENCES orders (tenant, id) ON DELETE CASCADE;
ALTER TABLE catalog_items    ADD PRIMARY KEY (tenant, sku);
ALTER TABLE sku_reservations ADD PRIMARY KEY (tenant, sku);

-- From now on every writer names the tenant.
ALTER TABLE catalog_items    ALTER COLUMN tenant DROP DEFAULT;
ALTER TABLE orders           ALTER COLUMN tenant DROP DEFAULT;
ALTER TABLE order_lines      ALTER COLUMN tenant DROP DEFAULT;
ALTER TABLE sku_reservations ALTER COLUMN tenant DROP DEFAULT;
