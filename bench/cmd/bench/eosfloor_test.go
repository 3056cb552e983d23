package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/testenv"
)

// TestEOSFloorEmbedded: concurrent commands on one order are each applied
// exactly once, in one order, and each is answered with the view as it
// stood right after it; a rejection comes back as 422; the broker's
// requests are counted.
func TestEOSFloorEmbedded(t *testing.T) {
	pg := testenv.NewPostgres(t)
	ctx := testenv.Context(t, time.Minute)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	sys, err := startEOSFloorOnKfake(ctx, pg.Pool, t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.stop)
	const order, n = "order-1", 20
	if err := sys.createOrder(ctx, order); err != nil {
		t.Fatal(err)
	}

	replies := make([]view.OrderReplyBody, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			status, body := addItemAt(t, ctx, sys.url, order, skuName(i))
			if status != http.StatusOK || json.Unmarshal(body, &replies[i]) != nil {
				t.Errorf("adding %s: %d %s", skuName(i), status, body)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// Sorted by version, each reply holds the lines of the one before and
	// its own command's: versions 2..n+1 (the creation is 1), none twice.
	added := make([]string, n) // by reply: the SKU its command added
	for i := range replies {
		added[i] = skuName(i)
	}
	byVersion := make([]int, n)
	for i := range byVersion {
		byVersion[i] = i
	}
	slices.SortFunc(byVersion, func(a, b int) int { return int(replies[a].Version - replies[b].Version) })
	var want []string
	for k, i := range byVersion {
		r := replies[i]
		want = append(want, added[i])
		var got []string
		for _, l := range r.Order.Lines {
			got = append(got, l.SKU)
			if l.Quantity != 1 {
				t.Errorf("version %d: %s × %d, want × 1", r.Version, l.SKU, l.Quantity)
			}
		}
		slices.Sort(want)
		if r.Version != int64(k+2) || r.OrderID != order || !slices.Equal(got, want) {
			t.Errorf("reply %d of %d: version %d, order %q, lines %v; want version %d, %q, lines %v", k+1, n, r.Version, r.OrderID, got, k+2, order, want)
		}
	}
	var version, lines int64
	if err := pg.Pool.QueryRow(ctx, `SELECT version, (SELECT count(*) FROM order_lines WHERE order_id = $1) FROM orders WHERE id = $1`, order).Scan(&version, &lines); err != nil {
		t.Fatal(err)
	}
	if version != n+1 || lines != n {
		t.Errorf("view: version %d with %d lines, want %d with %d", version, lines, n+1, n)
	}

	// Refused by the aggregate: the rejection travels in its transaction.
	if status, body := addItemAt(t, ctx, sys.url, "no-such-order", skuName(0)); status != http.StatusUnprocessableEntity {
		t.Errorf("adding to an order that does not exist: %d %s, want 422", status, body)
	}

	// One after the other: the floor's round trip on kfake.
	took := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if status, body := addItemAt(t, ctx, sys.url, order, skuName(n+i)); status != http.StatusOK {
			t.Fatalf("sequential command %d: %d %s", i, status, body)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	t.Logf("%d sequential commands: p50 %v, max %v", n, took[n/2], took[n-1])

	requests, err := sys.brokerRequests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if requests["EndTxn"] == 0 || requests["Produce"] == 0 {
		t.Errorf("broker requests %v: want EndTxn and Produce counted", requests)
	}
	t.Logf("broker requests: %v", requests)
}

// addItemAt adds one unit of sku to order through the API at base and
// returns the answer's status and body.
func addItemAt(t *testing.T, ctx context.Context, base, order, sku string) (int, []byte) {
	body, _ := json.Marshal(map[string]any{"sku": sku, "quantity": 1})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/orders/"+order+"/items", bytes.NewReader(body))
	if err != nil {
		t.Errorf("POST %s: %v", order, err)
		return 0, nil
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("POST %s: %v", req.URL.Path, err)
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
