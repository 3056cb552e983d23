package view

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/answerback/answerback/libs/domain/catalog"
	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/jackc/pgx/v5"
)

// OrderBody is the body of GetOrder: an order as the view has it, with what
// can still be added to it.
type OrderBody struct {
	OrderID string   `json:"orderId"`
	Version int64    `json:"version"` // version of the last event applied
	Order   OrderDoc `json:"order"`
	// ValidItems are the catalog items this order can take now, sorted by
	// SKU, at most MaxValidItems of them; empty unless the order is open.
	ValidItems []ValidItem `json:"validItems"`
	// MoreValidItems is true when the catalog has more valid items than
	// ValidItems lists; ValidItemsPage pages through them, after the last
	// SKU listed.
	MoreValidItems bool `json:"moreValidItems,omitempty"`
}

// MaxValidItems bounds the valid items of one reply or page, so that the
// cost of a reply does not grow with the catalog (docs/bench/data-size.md).
const MaxValidItems = 100

// ValidItemsPageBody is the body of ValidItemsPage.
type ValidItemsPageBody struct {
	OrderID    string      `json:"orderId"`
	Version    int64       `json:"version"`
	ValidItems []ValidItem `json:"validItems"` // sorted by SKU, all after the page's "after"
	// Next is the SKU to page on from (the last one listed) when more valid
	// items follow; empty on the last page.
	Next string `json:"next,omitempty"`
}

// OrderReplyBody is the body of OrderReply: OrderBody naming the command.
type OrderReplyBody struct {
	CommandID string `json:"commandId"`
	OrderBody
}

// OrderDoc is an order priced from the catalog.
type OrderDoc struct {
	ID         string      `json:"id"`
	CustomerID string      `json:"customerId"`
	Currency   string      `json:"currency"`
	Status     string      `json:"status"`
	Lines      []OrderLine `json:"lines"` // sorted by SKU
	Total      int64       `json:"total"` // sum of the lines' LineTotal
}

// OrderLine is one line of an order, priced at the catalog's current unit
// price. A SKU missing from the catalog has an empty name and price 0.
type OrderLine struct {
	SKU       string `json:"sku"`
	Name      string `json:"name"`
	UnitPrice int64  `json:"unitPrice"`
	Quantity  int64  `json:"quantity"`
	LineTotal int64  `json:"lineTotal"` // UnitPrice × Quantity
}

// ValidItem is a catalog item an order can still take: it is active,
// Available (stock less the quantities held by submitted orders) is
// positive, and the order holds less of it than the item's maximum per order.
// MaxQuantity = min(Available, maxPerOrder − the order's quantity of it).
type ValidItem struct {
	SKU         string `json:"sku"`
	Name        string `json:"name"`
	UnitPrice   int64  `json:"unitPrice"`
	Currency    string `json:"currency"`
	Available   int64  `json:"available"`
	MaxQuantity int64  `json:"maxQuantity"`
}

// CatalogReplyBody is the body of CatalogReply.
type CatalogReplyBody struct {
	CommandID string       `json:"commandId"`
	SKU       string       `json:"sku"`
	Version   int64        `json:"version"`
	Item      catalog.Item `json:"item"`
}

// CatalogList is the body of ListCatalog.
type CatalogList struct {
	Items []catalog.Item `json:"items"` // all items, active or not, sorted by SKU
}

// OrderReply derives the reply to command commandID from the order's state
// in the view: an OrderReplyBody as JSON. It returns an error wrapping
// ErrNotFound when the order is not in the view.
func OrderReply(ctx context.Context, q Querier, tenant, commandID, orderID string) (json.RawMessage, error) {
	return sendReply(ctx, q, func(b *pgx.Batch, done func(json.RawMessage, error)) {
		QueueOrderReply(b, tenant, commandID, orderID, done)
	})
}

// QueueOrderReply queues on b the reads of OrderReply; done receives the
// reply, or the error, once b has run (not when a statement before them in
// b failed).
func QueueOrderReply(b *pgx.Batch, tenant, commandID, orderID string, done func(json.RawMessage, error)) {
	queueReadOrder(b, tenant, orderID, func(body OrderBody, err error) {
		if err != nil {
			done(nil, err)
			return
		}
		done(marshal(OrderReplyBody{CommandID: commandID, OrderBody: body}))
	})
}

// sendReply runs what queue queues in one round trip and returns the reply
// it derived.
func sendReply(ctx context.Context, q Querier, queue func(*pgx.Batch, func(json.RawMessage, error))) (json.RawMessage, error) {
	var (
		reply    json.RawMessage
		replyErr error
	)
	b := &pgx.Batch{}
	queue(b, func(r json.RawMessage, err error) { reply, replyErr = r, err })
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return reply, replyErr
}

// GetOrder returns the order as an OrderBody in JSON, and its version. It
// returns an error wrapping ErrNotFound when the order is not in the view.
func GetOrder(ctx context.Context, q Querier, tenant, orderID string) (json.RawMessage, int64, error) {
	var (
		body    OrderBody
		readErr error
	)
	batch := &pgx.Batch{}
	queueReadOrder(batch, tenant, orderID, func(b OrderBody, err error) { body, readErr = b, err })
	if err := q.SendBatch(ctx, batch).Close(); err != nil {
		return nil, 0, err
	}
	if err := readErr; err != nil {
		return nil, 0, err
	}
	b, err := marshal(body)
	return b, body.Version, err
}

// CatalogReply derives the reply to command commandID from the item's state
// in the view: a CatalogReplyBody as JSON. It returns an error wrapping
// ErrNotFound when the item is not in the view.
func CatalogReply(ctx context.Context, q Querier, tenant, commandID, sku string) (json.RawMessage, error) {
	return sendReply(ctx, q, func(b *pgx.Batch, done func(json.RawMessage, error)) {
		QueueCatalogReply(b, tenant, commandID, sku, done)
	})
}

// QueueCatalogReply queues on b the read of CatalogReply; done receives the
// reply, or the error, once b has run.
func QueueCatalogReply(b *pgx.Batch, tenant, commandID, sku string, done func(json.RawMessage, error)) {
	b.Queue(`
		SELECT `+itemColumns+`, version
		FROM catalog_items WHERE tenant = $1 AND sku = $2`, tenant, sku).QueryRow(func(row pgx.Row) error {
		body := CatalogReplyBody{CommandID: commandID, SKU: sku}
		err := row.Scan(append(itemFields(&body.Item), &body.Version)...)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			done(nil, fmt.Errorf("%w: catalog item %q", ErrNotFound, sku))
		case err != nil:
			return fmt.Errorf("view: catalog item %q: %w", sku, err)
		default:
			done(marshal(body))
		}
		return nil
	})
}

// ListCatalog returns every catalog item, active or not, sorted by SKU: a
// CatalogList as JSON.
func ListCatalog(ctx context.Context, q Querier, tenant string) (json.RawMessage, error) {
	rows, err := q.Query(ctx, `SELECT `+itemColumns+` FROM catalog_items WHERE tenant = $1 ORDER BY sku`, tenant)
	if err != nil {
		return nil, fmt.Errorf("view: list catalog: %w", err)
	}
	list := CatalogList{Items: []catalog.Item{}}
	var it catalog.Item
	if _, err := pgx.ForEachRow(rows, itemFields(&it), func() error {
		list.Items = append(list.Items, it)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("view: list catalog: %w", err)
	}
	return marshal(list)
}

// CatalogItemExists reports whether the catalog has an item sku, active or not.
func CatalogItemExists(ctx context.Context, q Querier, tenant, sku string) (bool, error) {
	var ok bool
	if err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM catalog_items WHERE tenant = $1 AND sku = $2)", tenant, sku).Scan(&ok); err != nil {
		return false, fmt.Errorf("view: catalog item %q: %w", sku, err)
	}
	return ok, nil
}

const itemColumns = "sku, name, unit_price, currency, stock, max_per_order, active"

func itemFields(it *catalog.Item) []any {
	return []any{&it.SKU, &it.Name, &it.UnitPrice, &it.Currency, &it.Stock, &it.MaxPerOrder, &it.Active}
}

// queueReadOrder queues on batch the reads of the body GetOrder and
// OrderReply share — the order, its lines and its valid items, pipelined
// (the valid items are read whatever the order's status, and dropped unless
// it is open) — and gives done the body, or an error wrapping ErrNotFound
// when the order is not in the view, once the batch has run.
func queueReadOrder(batch *pgx.Batch, tenant, orderID string, done func(OrderBody, error)) {
	b := OrderBody{OrderID: orderID, Order: OrderDoc{Lines: []OrderLine{}}, ValidItems: []ValidItem{}}
	o := &b.Order
	var found bool
	batch.Queue(`
		SELECT id, customer_id, currency, status, version
		FROM orders WHERE tenant = $1 AND id = $2`, tenant, orderID).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&o.ID, &o.CustomerID, &o.Currency, &o.Status, &b.Version)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		found = err == nil
		if err != nil {
			return fmt.Errorf("view: order %q: %w", orderID, err)
		}
		return nil
	})
	batch.Queue(`
		SELECT l.sku, coalesce(c.name, ''), coalesce(c.unit_price, 0), l.quantity
		FROM order_lines l
		LEFT JOIN catalog_items c ON c.tenant = l.tenant AND c.sku = l.sku
		WHERE l.tenant = $1 AND l.order_id = $2
		ORDER BY l.sku`, tenant, orderID).Query(func(rows pgx.Rows) error {
		var l OrderLine
		_, err := pgx.ForEachRow(rows, []any{&l.SKU, &l.Name, &l.UnitPrice, &l.Quantity}, func() error {
			l.LineTotal = l.UnitPrice * l.Quantity
			o.Total += l.LineTotal
			o.Lines = append(o.Lines, l)
			return nil
		})
		if err != nil {
			return fmt.Errorf("view: order %q: %w", orderID, err)
		}
		return nil
	})
	queueValidItems(batch, tenant, orderID, "", MaxValidItems, func(items []ValidItem, more bool) {
		switch {
		case !found:
			done(b, fmt.Errorf("%w: order %q", ErrNotFound, orderID))
		case o.Status != orders.StatusOpen:
			done(b, nil)
		default:
			b.ValidItems, b.MoreValidItems = items, more
			done(b, nil)
		}
	})
}

// ValidItemsPage returns up to limit (1..MaxValidItems) of the valid items
// of an open order whose SKU sorts after after, as a ValidItemsPageBody in
// JSON: the pages of an order's valid items when its reply could not list
// them all (OrderBody.MoreValidItems). An order that is not open has none. It
// returns an error wrapping ErrNotFound when the order is not in the view.
func ValidItemsPage(ctx context.Context, q Querier, tenant, orderID, after string, limit int) (json.RawMessage, error) {
	limit = min(max(limit, 1), MaxValidItems)
	page := ValidItemsPageBody{OrderID: orderID, ValidItems: []ValidItem{}}
	var status string
	err := q.QueryRow(ctx, `SELECT status, version FROM orders WHERE tenant = $1 AND id = $2`, tenant, orderID).Scan(&status, &page.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: order %q", ErrNotFound, orderID)
	}
	if err != nil {
		return nil, fmt.Errorf("view: order %q: %w", orderID, err)
	}
	if status == orders.StatusOpen {
		var more bool
		if page.ValidItems, more, err = validItems(ctx, q, tenant, orderID, after, limit); err != nil {
			return nil, err
		}
		if more {
			page.Next = page.ValidItems[len(page.ValidItems)-1].SKU
		}
	}
	return marshal(page)
}

// validItems returns the first limit valid items of order orderID whose SKU
// sorts after after, and whether more follow.
func validItems(ctx context.Context, q Querier, tenant, orderID, after string, limit int) ([]ValidItem, bool, error) {
	var (
		items []ValidItem
		more  bool
	)
	batch := &pgx.Batch{}
	queueValidItems(batch, tenant, orderID, after, limit, func(i []ValidItem, m bool) { items, more = i, m })
	if err := q.SendBatch(ctx, batch).Close(); err != nil {
		return nil, false, fmt.Errorf("view: order %q valid items: %w", orderID, err)
	}
	return items, more, nil
}

// queueValidItems queues the query of validItems on batch; done receives
// its result when the batch runs.
func queueValidItems(batch *pgx.Batch, tenant, orderID, after string, limit int, done func([]ValidItem, bool)) {
	batch.Queue(validItemsSQL, orderID, orders.MaxLineQuantity, orders.MaxLines, after, limit+1, tenant).Query(func(rows pgx.Rows) error {
		items := []ValidItem{}
		var v ValidItem
		if _, err := pgx.ForEachRow(rows, []any{&v.SKU, &v.Name, &v.UnitPrice, &v.Currency, &v.Available, &v.MaxQuantity}, func() error {
			items = append(items, v)
			return nil
		}); err != nil {
			return err
		}
		if len(items) > limit {
			done(items[:limit], true)
		} else {
			done(items, false)
		}
		return nil
	})
}

// validItemsSQL selects the ValidItems of tenant $6's order $1 whose SKU sorts after $4,
// sorted by SKU, at most $5: active items of which this order may still add
// at least one unit. Available is the stock that submitted orders do not hold
// (sku_reservations); MaxQuantity also counts what this order already has of
// the item (it will hold that too once submitted), the item's per-order
// maximum, the aggregate's per-line limit ($2) and, for an item not yet in
// the order, its limit of distinct lines ($3). Its cost depends on the
// order's lines and the items it reads, not on the number of orders: it walks
// the catalog in SKU order and stops after $5 rows.
const validItemsSQL = `
	WITH mine AS (              -- what this order holds, per SKU
		SELECT sku, quantity FROM order_lines WHERE tenant = $6 AND order_id = $1
	),
	candidates AS (
		SELECT c.sku, c.name, c.unit_price, c.currency,
		       c.stock - coalesce(r.quantity, 0) AS available,
		       least(c.stock - coalesce(r.quantity, 0), c.max_per_order, $2::bigint) - coalesce(m.quantity, 0) AS max_quantity,
		       m.sku IS NOT NULL AS in_order
		FROM catalog_items c
		LEFT JOIN sku_reservations r ON r.tenant = c.tenant AND r.sku = c.sku
		LEFT JOIN mine m             ON m.sku = c.sku
		WHERE c.tenant = $6 AND c.active AND c.sku > $4
	)
	SELECT sku, name, unit_price, currency, available, max_quantity
	FROM candidates
	WHERE max_quantity > 0
	  AND (in_order OR (SELECT count(*) FROM mine) < $3)
	ORDER BY sku
	LIMIT $5`

func marshal(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("view: encode reply: %w", err)
	}
	return b, nil
}
