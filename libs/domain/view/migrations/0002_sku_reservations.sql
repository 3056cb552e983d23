-- Stock held by submitted orders, per SKU, kept by view.ApplyOrderEvent when
-- an order is submitted (its lines' quantities are added). The reply query
-- (view.validItemsSQL) reads it instead of summing the lines of every
-- submitted order, which made the reply grow with the size of the view
-- (600 ms at 1M orders, docs/bench/data-size.md). Submitted is final: no
-- event takes a submitted order's lines back.

CREATE TABLE sku_reservations (
    sku      text   PRIMARY KEY,
    quantity bigint NOT NULL CHECK (quantity >= 0)
);

INSERT INTO sku_reservations (sku, quantity)
SELECT l.sku, sum(l.quantity)
FROM order_lines l
JOIN orders o ON o.id = l.order_id
WHERE o.status = 'submitted'
GROUP BY l.sku;

-- Only the old reply query used them.
DROP INDEX orders_submitted_idx;
DROP INDEX order_lines_sku_idx;
