-- The tenant wall: PostgreSQL row-level security beside every query's own
-- tenant filter. A role that does not own these tables (the gateways', when
-- they are given one: abctl db grant-gateway) sees and writes only the rows
-- of the tenant its session names in the setting answerback.tenant, which the
-- gateway sets from each request's token (server.TenantWall); with none set
-- it sees nothing. The owner — the projector, abctl, these migrations — is
-- not subject to it (row-level security is enabled, not forced), so the
-- projector keeps writing every tenant's rows in one transaction.

ALTER TABLE catalog_items    ENABLE ROW LEVEL SECURITY;
ALTER TABLE orders           ENABLE ROW LEVEL SECURITY;
ALTER TABLE order_lines      ENABLE ROW LEVEL SECURITY;
ALTER TABLE sku_reservations ENABLE ROW LEVEL SECURITY;

CREATE POLICY tenant_wall ON catalog_items
	USING (tenant = current_setting('answerback.tenant', true))
	WITH CHECK (tenant = current_setting('answerback.tenant', true));
CREATE POLICY tenant_wall ON orders
	USING (tenant = current_setting('answerback.tenant', true))
	WITH CHECK (tenant = current_setting('answerback.tenant', true));
CREATE POLICY tenant_wall ON order_lines
	USING (tenant = current_setting('answerback.tenant', true))
	WITH CHECK (tenant = current_setting('answerback.tenant', true));
CREATE POLICY tenant_wall ON sku_reservations
	USING (tenant = current_setting('answerback.tenant', true))
	WITH CHECK (tenant = current_setting('answerback.tenant', true));
