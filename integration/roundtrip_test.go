package integration

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/testenv"
)

// TestRoundTrip: create an order, add an item; the reply carries the order
// with the line priced from the catalog, and the catalog items that can still
// be added — data the order aggregate does not hold.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStack(t, k, stackOptions{})
		s.seedCatalog(defaultCatalog)

		created := s.mustCall(0, http.StatusCreated, http.MethodPost, "/v1/orders", map[string]any{"id": "o-1", "customerId": "c-1"})
		if loc := created.Header.Get("Location"); loc != "/v1/orders/o-1" {
			t.Errorf("Location = %q", loc)
		}
		if etag := created.Header.Get("ETag"); etag != `"1"` {
			t.Errorf("ETag of the create = %q, want \"1\"", etag)
		}

		added := s.mustCall(1, http.StatusOK, http.MethodPost, "/v1/orders/o-1/items", map[string]any{"sku": "pear", "quantity": 2})
		body := added.json(t)
		if body["version"] != float64(2) || body["orderId"] != "o-1" || body["commandId"] == "" {
			t.Fatalf("reply %s", added.Body)
		}
		order := body["order"].(map[string]any)
		lines := order["lines"].([]any)
		if len(lines) != 1 {
			t.Fatalf("lines %v", lines)
		}
		line := lines[0].(map[string]any)
		if line["sku"] != "pear" || line["name"] != "Pear" || line["unitPrice"] != float64(90) || line["quantity"] != float64(2) || line["lineTotal"] != float64(180) {
			t.Errorf("line %v, want pear × 2 at 90 = 180", line)
		}
		if order["total"] != float64(180) {
			t.Errorf("total %v, want 180", order["total"])
		}
		valid := skus(body["validItems"].([]any))
		if !contains(valid, "apple") || !contains(valid, "pear") || contains(valid, "banana") {
			t.Errorf("validItems %v: want apple and pear (pear: 2 of max 3 taken), not the inactive banana", valid)
		}
		for _, it := range body["validItems"].([]any) {
			item := it.(map[string]any)
			if item["sku"] == "pear" && (item["maxQuantity"] != float64(1) || item["available"] != float64(5)) {
				t.Errorf("pear %v: want 5 available and room for 1 more (3 per order, 2 taken)", item)
			}
		}

		// One more pear reaches pear's per-order maximum of 3: no longer valid.
		again := s.mustCall(0, http.StatusOK, http.MethodPost, "/v1/orders/o-1/items", map[string]any{"sku": "pear", "quantity": 1}).json(t)
		if valid := skus(again["validItems"].([]any)); contains(valid, "pear") || !contains(valid, "apple") {
			t.Errorf("validItems after 3 pears: %v, want apple only", valid)
		}

		got := s.mustCall(1, http.StatusOK, http.MethodGet, "/v1/orders/o-1", nil)
		if got.Header.Get("ETag") != `"3"` {
			t.Errorf("view ETag %q, want \"3\"", got.Header.Get("ETag"))
		}
	})
}

// TestConcurrentCommandsOnOneOrder: 50 add-item commands on one order, sent
// at once through two gateways. Every one is answered 200, each reply carries
// its own version, the view ends at version 51 with the right quantities, and
// the order's events on the topic are versions 1..51 exactly.
func TestConcurrentCommandsOnOneOrder(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStack(t, k, stackOptions{})
		s.seedCatalog(defaultCatalog)
		s.mustCall(0, http.StatusCreated, http.MethodPost, "/v1/orders", map[string]any{"id": "hot", "customerId": "c-1"})

		const n = 50
		versions := make([]float64, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := s.call(i, http.MethodPost, "/v1/orders/hot/items", map[string]any{"sku": "apple", "quantity": 1 + i%3})
				if r.Status != http.StatusOK {
					t.Errorf("command %d: status %d: %s", i, r.Status, r.Body)
					return
				}
				versions[i] = r.json(t)["version"].(float64)
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		sort.Float64s(versions)
		for i, v := range versions {
			if v != float64(i+2) {
				t.Fatalf("reply versions %v: want each of 2..51 once", versions)
			}
		}
		wantQty := 0
		for i := range n {
			wantQty += 1 + i%3
		}
		view := s.mustCall(1, http.StatusOK, http.MethodGet, "/v1/orders/hot?minVersion=51", nil).json(t)
		lines := view["order"].(map[string]any)["lines"].([]any)
		if view["version"] != float64(51) || len(lines) != 1 || lines[0].(map[string]any)["quantity"] != float64(wantQty) {
			t.Fatalf("view %v: want version 51 and %d apples", view, wantQty)
		}
		events := s.eventsOf("orders", "hot")
		if len(events) != n+1 {
			t.Fatalf("%d events on the topic, want %d", len(events), n+1)
		}
		for i, ev := range events {
			if ev.Version != int64(i+1) {
				t.Fatalf("event %d has version %d: versions must be 1..%d in order", i, ev.Version, n+1)
			}
		}
	})
}

// TestRejections: every rejection answers its problem+json and emits no event.
func TestRejections(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStack(t, k, stackOptions{})
		s.seedCatalog(defaultCatalog)
		s.mustCall(0, http.StatusCreated, http.MethodPost, "/v1/orders", map[string]any{"id": "empty", "customerId": "c"})
		s.mustCall(0, http.StatusCreated, http.MethodPost, "/v1/orders", map[string]any{"id": "done", "customerId": "c"})
		s.mustCall(0, http.StatusOK, http.MethodPost, "/v1/orders/done/items", map[string]any{"sku": "apple", "quantity": 1})
		s.mustCall(0, http.StatusOK, http.MethodPost, "/v1/orders/done/submit", nil)

		cases := []struct {
			name, method, path string
			body               any
			status             int
			problem            string
		}{
			{"add to a submitted order", http.MethodPost, "/v1/orders/done/items", map[string]any{"sku": "apple", "quantity": 1}, 409, "order-not-open"},
			{"submit an empty order", http.MethodPost, "/v1/orders/empty/submit", nil, 422, "empty-order"},
			{"quantity zero", http.MethodPost, "/v1/orders/empty/items", map[string]any{"sku": "apple", "quantity": 0}, 422, "quantity-out-of-range"},
			{"quantity too large", http.MethodPost, "/v1/orders/empty/items", map[string]any{"sku": "apple", "quantity": 100000}, 422, "quantity-out-of-range"},
			{"unknown sku", http.MethodPost, "/v1/orders/empty/items", map[string]any{"sku": "durian", "quantity": 1}, 422, "unknown-sku"},
			{"unknown order", http.MethodPost, "/v1/orders/nobody/submit", nil, 404, "order-not-found"},
			{"create twice", http.MethodPost, "/v1/orders", map[string]any{"id": "empty", "customerId": "c"}, 409, "order-exists"},
		}
		for _, c := range cases {
			r := s.call(0, c.method, c.path, c.body)
			if r.Status != c.status || r.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%s: status %d (%s), want %d problem+json; body %s", c.name, r.Status, r.Header.Get("Content-Type"), c.status, r.Body)
				continue
			}
			if p := r.json(t); p["type"] != c.problem || p["title"] == "" || p["status"] != float64(c.status) {
				t.Errorf("%s: problem %v, want type %s", c.name, p, c.problem)
			}
		}
		if evs := s.eventsOf("orders", "empty"); len(evs) != 1 {
			t.Errorf("order 'empty' has %d events, want only its creation", len(evs))
		}
		// The gateway remembers SKUs it found, never one it did not: once
		// durian joins the catalog, both gateways take it, twice.
		s.mustCall(0, http.StatusOK, http.MethodPut, "/v1/catalog/durian", map[string]any{"name": "Durian", "unitPrice": 900, "stock": 10, "maxPerOrder": 5, "active": true})
		for _, gw := range []int{0, 1, 0, 1} {
			s.mustCall(gw, http.StatusOK, http.MethodPost, "/v1/orders/empty/items", map[string]any{"sku": "durian", "quantity": 1})
		}
		if evs := s.eventsOf("orders", "empty"); len(evs) != 5 {
			t.Errorf("order 'empty' has %d events, want its creation and four durians", len(evs))
		}
		if evs := s.eventsOf("orders", "done"); len(evs) != 3 {
			t.Errorf("order 'done' has %d events, want 3 (created, item added, submitted)", len(evs))
		}
		if evs := s.eventsOf("orders", "nobody"); len(evs) != 0 {
			t.Errorf("order 'nobody' has %d events, want none", len(evs))
		}
	})
}

// TestReplyAfterProjectorOutage: with the projector stopped no reply can
// come; the gateway answers 202 with Location, and once the projector runs
// again the command's status shows the outcome with its reply.
func TestReplyAfterProjectorOutage(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStackWithOrder(t, k, stackOptions{replyWait: 2 * time.Second})

		s.stop("projector")
		accepted := s.mustCall(1, http.StatusAccepted, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "apple", "quantity": 2})
		loc := accepted.Header.Get("Location")
		if loc == "" || accepted.Header.Get("Retry-After") == "" {
			t.Fatalf("202 without Location or Retry-After: %v", accepted.Header)
		}
		if st := s.mustCall(1, http.StatusOK, http.MethodGet, loc, nil).json(t); st["status"] != "pending" {
			t.Errorf("status while the projector is down: %v, want pending", st)
		}

		s.startProjector()
		testenv.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
			st := s.call(0, http.MethodGet, loc, nil)
			if st.Status != http.StatusOK || st.json(t)["status"] != "applied" {
				return fmt.Errorf("command not applied: status %d %s", st.Status, st.Body)
			}
			reply := st.json(t)["reply"].(map[string]any)
			if reply["version"] != float64(2) || reply["order"].(map[string]any)["total"] != float64(240) {
				t.Errorf("recorded reply %v: want version 2 and total 240", reply)
			}
			return nil
		})
	})
}

// TestBadRequests: malformed input is refused at the edge with problem+json.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	s := startStack(t, testenv.EmbeddedKafka(t), stackOptions{gateways: 1})
	for _, c := range []struct {
		name, method, path, contentType, body string
		status                                int
	}{
		{"not JSON", http.MethodPost, "/v1/orders", "application/json", "{", 400},
		{"unknown field", http.MethodPost, "/v1/orders", "application/json", `{"customerId":"c","colour":"red"}`, 400},
		{"wrong media type", http.MethodPost, "/v1/orders", "text/plain", `{"customerId":"c"}`, 415},
		{"bad order ID", http.MethodPost, "/v1/orders", "application/json", `{"id":"a b","customerId":"c"}`, 400},
		{"too large", http.MethodPost, "/v1/orders", "application/json", fmt.Sprintf(`{"customerId":"%0100000d"}`, 1), 413},
		{"unknown command", http.MethodGet, "/v1/commands/nope", "", "", 404},
		{"unknown order", http.MethodGet, "/v1/orders/nope", "", "", 404},
	} {
		req, _ := http.NewRequest(c.method, s.gateways[0]+c.path, stringsReader(c.body))
		req.Header.Set("Authorization", "Bearer "+s.token)
		if c.contentType != "" {
			req.Header.Set("Content-Type", c.contentType)
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s, want %d problem+json", c.name, resp.StatusCode, resp.Header.Get("Content-Type"), c.status)
		}
	}
}

// TestInFlightBound: a gateway waits on at most MaxInFlight commands and
// version-waiting reads; one more is answered 503 with Retry-After at once,
// not queued.
func TestInFlightBound(t *testing.T) {
	t.Parallel()
	s := startStackWithOrder(t, testenv.EmbeddedKafka(t), stackOptions{gateways: 1, maxInFlight: 1, replyWait: 3 * time.Second})
	s.stop("projector") // the first command now waits its whole bound
	first := make(chan response, 1)
	go func() {
		first <- s.call(0, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "apple", "quantity": 1})
	}()
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	second := s.call(0, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "apple", "quantity": 1})
	if second.Status != http.StatusServiceUnavailable || second.Header.Get("Retry-After") == "" || second.json(t)["type"] != "overloaded" {
		t.Errorf("second command while one is in flight: %d %s, want 503 overloaded with Retry-After", second.Status, second.Body)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Errorf("the refusal took %s: it must not queue", waited)
	}
	if read := s.call(0, http.MethodGet, "/v1/orders/o?minVersion=99", nil); read.Status != http.StatusServiceUnavailable || read.json(t)["type"] != "overloaded" {
		t.Errorf("read waiting for a version while the gateway is full: %d %s, want 503 overloaded", read.Status, read.Body)
	}
	if plain := s.call(0, http.MethodGet, "/v1/orders/o", nil); plain.Status != http.StatusOK {
		t.Errorf("plain read while the gateway is full: %d, want 200 (it waits for nothing)", plain.Status)
	}
	if r := <-first; r.Status != http.StatusAccepted {
		t.Errorf("first command: %d, want 202 (no projector)", r.Status)
	}
}

// TestValidItemsPaging: with a catalog larger than a reply lists, the reply
// carries the first view.MaxValidItems valid items and moreValidItems, and
// GET /v1/orders/{id}/valid-items pages through all of them, on any gateway.
func TestValidItemsPaging(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStack(t, k, stackOptions{})
		const n = view.MaxValidItems + 20
		items := map[string]map[string]any{}
		for i := range n {
			items[fmt.Sprintf("p-%03d", i)] = map[string]any{"name": "Part", "unitPrice": 5, "currency": "EUR", "stock": 10, "maxPerOrder": 1, "active": true}
		}
		s.seedCatalog(items)
		s.mustCall(0, http.StatusCreated, http.MethodPost, "/v1/orders", map[string]any{"id": "big", "customerId": "c"})
		// p-000 reaches its maximum of 1: no longer valid.
		reply := s.mustCall(1, http.StatusOK, http.MethodPost, "/v1/orders/big/items", map[string]any{"sku": "p-000", "quantity": 1}).json(t)
		if got := skus(reply["validItems"].([]any)); len(got) != view.MaxValidItems || reply["moreValidItems"] != true || got[0] != "p-001" {
			t.Fatalf("reply lists %d valid items from %v (more: %v), want %d from p-001 and more", len(got), got[:min(1, len(got))], reply["moreValidItems"], view.MaxValidItems)
		}
		var all []string
		after := ""
		for page := 0; ; page++ {
			if page > n {
				t.Fatal("paging does not end")
			}
			body := s.mustCall(page%2, http.StatusOK, http.MethodGet, "/v1/orders/big/valid-items?limit=50&after="+after, nil).json(t)
			all = append(all, skus(body["validItems"].([]any))...)
			next, _ := body["next"].(string)
			if next == "" {
				break
			}
			after = next
		}
		if len(all) != n-1 || !slices.IsSorted(all) || all[0] != "p-001" || len(slices.Compact(slices.Clone(all))) != n-1 {
			t.Fatalf("pages listed %d SKUs, want p-001..p-%03d once each, in order", len(all), n-1)
		}
		s.mustCall(0, http.StatusBadRequest, http.MethodGet, "/v1/orders/big/valid-items?limit=0", nil)
		s.mustCall(0, http.StatusBadRequest, http.MethodGet, "/v1/orders/big/valid-items?limit=", nil)
		s.mustCall(0, http.StatusBadRequest, http.MethodGet, "/v1/orders/big?minVersion=", nil)            // found by schemathesis
		s.mustCall(0, http.StatusBadRequest, http.MethodGet, "/v1/orders/big/valid-items?after=a%00", nil) // found by schemathesis: PostgreSQL refuses NUL
		s.mustCall(0, http.StatusNotFound, http.MethodGet, "/v1/orders/nobody/valid-items", nil)
	})
}
