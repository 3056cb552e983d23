package integration

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/answerback/answerback/libs/testenv"
)

// TestIdempotencyKey: a retry with the same key — through the other
// gateway, or both copies in flight at once — returns the first outcome
// (status, commandId, body) and emits nothing again; a key reused for another
// request is refused; a retried create makes one order.
func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStackWithOrder(t, k, stackOptions{})
		add := map[string]any{"sku": "apple", "quantity": 1}
		key := func(k string) map[string]string { return map[string]string{"Idempotency-Key": k} }

		first := s.callWith(0, http.MethodPost, "/v1/orders/o/items", add, key("k-1"))
		retry := s.callWith(1, http.MethodPost, "/v1/orders/o/items", add, key("k-1"))
		if first.Status != http.StatusOK || retry.Status != first.Status || !bytes.Equal(first.Body, retry.Body) || first.Header.Get("ETag") != retry.Header.Get("ETag") {
			t.Fatalf("first %d %s\nretry %d %s: want the same answer", first.Status, first.Body, retry.Status, retry.Body)
		}
		if r := s.callWith(0, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "apple", "quantity": 2}, key("k-1")); r.Status != http.StatusUnprocessableEntity || r.json(t)["type"] != "idempotency-key-reused" {
			t.Errorf("key reused with another body: %d %s, want 422 idempotency-key-reused", r.Status, r.Body)
		}
		if r := s.callWith(0, http.MethodPost, "/v1/orders/o/submit", nil, key("k-1")); r.Status != http.StatusUnprocessableEntity {
			t.Errorf("key reused on another route: %d %s, want 422", r.Status, r.Body)
		}

		// Both copies in flight at once, through both gateways and through one.
		const keys = 6
		answers := make([][2]response, keys)
		var wg sync.WaitGroup
		for i := range keys {
			for copy := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					gw := copy // copies on different gateways...
					if i%3 == 0 {
						gw = 0 // ...and, for some keys, on the same one
					}
					answers[i][copy] = s.callWith(gw, http.MethodPost, "/v1/orders/o/items", add, key(fmt.Sprintf("race-%d", i)))
				}()
			}
		}
		wg.Wait()
		for i, pair := range answers {
			if pair[0].Status != http.StatusOK || pair[1].Status != http.StatusOK || !bytes.Equal(pair[0].Body, pair[1].Body) {
				t.Errorf("key race-%d: answers %d %s / %d %s, want the same 200", i, pair[0].Status, pair[0].Body, pair[1].Status, pair[1].Body)
			}
		}
		if evs := s.eventsOf("orders", "o"); len(evs) != 1+1+keys {
			t.Errorf("order has %d events, want %d: each key emits once", len(evs), 2+keys)
		}

		// A retried create without an ID makes one order.
		c1 := s.callWith(0, http.MethodPost, "/v1/orders", map[string]any{"customerId": "c"}, key("create-1"))
		c2 := s.callWith(1, http.MethodPost, "/v1/orders", map[string]any{"customerId": "c"}, key("create-1"))
		if c1.Status != http.StatusCreated || c2.Status != http.StatusCreated || !bytes.Equal(c1.Body, c2.Body) || c1.Header.Get("Location") != c2.Header.Get("Location") {
			t.Fatalf("retried create: %d %s / %d %s", c1.Status, c1.Body, c2.Status, c2.Body)
		}
		if evs := s.eventsOf("orders", c1.json(t)["orderId"].(string)); len(evs) != 1 {
			t.Errorf("retried create emitted %d events, want 1", len(evs))
		}

		// A rejection is the first outcome too.
		s.mustCall(0, http.StatusCreated, http.MethodPost, "/v1/orders", map[string]any{"id": "empty", "customerId": "c"})
		r1 := s.callWith(0, http.MethodPost, "/v1/orders/empty/submit", nil, key("submit-1"))
		r2 := s.callWith(1, http.MethodPost, "/v1/orders/empty/submit", nil, key("submit-1"))
		if r1.Status != http.StatusUnprocessableEntity || r2.Status != r1.Status || !bytes.Equal(r1.Body, r2.Body) {
			t.Errorf("retried rejection: %d %s / %d %s, want the same 422", r1.Status, r1.Body, r2.Status, r2.Body)
		}
	})
}

// TestIfMatch: a stale If-Match is refused with 412 naming the current
// version; the current one is applied; ETags are versions.
func TestIfMatch(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStack(t, k, stackOptions{})
		s.seedCatalog(defaultCatalog)
		created := s.mustCall(0, http.StatusCreated, http.MethodPost, "/v1/orders", map[string]any{"id": "o", "customerId": "c"})
		etag := created.Header.Get("ETag")
		add := map[string]any{"sku": "apple", "quantity": 1}
		ok := s.callWith(1, http.MethodPost, "/v1/orders/o/items", add, map[string]string{"If-Match": etag})
		if ok.Status != http.StatusOK || ok.Header.Get("ETag") != `"2"` {
			t.Fatalf("current If-Match %s: %d %s (ETag %s), want 200 with ETag \"2\"", etag, ok.Status, ok.Body, ok.Header.Get("ETag"))
		}
		stale := s.callWith(0, http.MethodPost, "/v1/orders/o/items", add, map[string]string{"If-Match": etag})
		if stale.Status != http.StatusPreconditionFailed {
			t.Fatalf("stale If-Match: %d %s, want 412", stale.Status, stale.Body)
		}
		if p := stale.json(t); p["type"] != "version-mismatch" || p["currentVersion"] != float64(2) {
			t.Errorf("412 problem %v: want version-mismatch naming current version 2", p)
		}
		if r := s.callWith(0, http.MethodPost, "/v1/orders/o/items", add, map[string]string{"If-Match": "two"}); r.Status != http.StatusBadRequest {
			t.Errorf("malformed If-Match: %d, want 400", r.Status)
		}
		if v := s.mustCall(1, http.StatusOK, http.MethodGet, "/v1/orders/o", nil); v.Header.Get("ETag") != `"2"` {
			t.Errorf("view ETag %s, want \"2\"", v.Header.Get("ETag"))
		}
	})
}

// TestRespondAsync: Prefer: respond-async answers 202 at once with Location;
// the command's status, on the other gateway, becomes applied with its reply.
// A rejected command's status carries its problem; an unknown one is 404.
func TestRespondAsync(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStackWithOrder(t, k, stackOptions{})
		async := map[string]string{"Prefer": "respond-async"}

		r := s.callWith(0, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "pear", "quantity": 1}, async)
		if r.Status != http.StatusAccepted || r.Header.Get("Location") == "" || r.Header.Get("Retry-After") == "" || r.Header.Get("Preference-Applied") != "respond-async" {
			t.Fatalf("respond-async: %d %v", r.Status, r.Header)
		}
		status := s.pollStatus(1, r.Header.Get("Location"))
		if status["status"] != "applied" || status["reply"].(map[string]any)["version"] != float64(2) {
			t.Errorf("status %v: want applied with the reply at version 2", status)
		}

		rej := s.callWith(0, http.MethodPost, "/v1/orders/o/submit", nil, map[string]string{"Prefer": "respond-async", "If-Match": `"1"`})
		status = s.pollStatus(1, rej.Header.Get("Location"))
		if p, _ := status["problem"].(map[string]any); status["status"] != "rejected" || p["type"] != "version-mismatch" || p["status"] != float64(412) {
			t.Errorf("status of a rejected command %v: want rejected with its problem", status)
		}
		if r := s.call(0, http.MethodGet, "/v1/commands/00000000-0000-0000-0000-000000000000", nil); r.Status != http.StatusNotFound {
			t.Errorf("unknown command: %d, want 404", r.Status)
		}
		if r := s.callWith(1, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "pear", "quantity": 1}, map[string]string{"Prefer": "wait=5"}); r.Header.Get("Preference-Applied") != "wait=5" || r.Status != http.StatusOK {
			t.Errorf("Prefer: wait=5: %d, Preference-Applied %q", r.Status, r.Header.Get("Preference-Applied"))
		}
	})
}

// pollStatus polls a command's status on gateway i until it is final.
func (s *stack) pollStatus(i int, location string) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := s.mustCall(i, http.StatusOK, http.MethodGet, location, nil)
		if st := r.json(s.t); st["status"] != "pending" {
			return st
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s still pending after 30s", location)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReadYourWrites: each write on gateway A, then a minVersion read on
// gateway B, never sees an older view; a version not reached in the bound is 504.
func TestReadYourWrites(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStackWithOrder(t, k, stackOptions{})
		for i := range 10 {
			w := s.mustCall(0, http.StatusOK, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "apple", "quantity": 1})
			version := int64(w.json(t)["version"].(float64))
			r := s.mustCall(1, http.StatusOK, http.MethodGet, "/v1/orders/o?minVersion="+strconv.FormatInt(version, 10), nil)
			if got := r.json(t)["version"].(float64); int64(got) < version {
				t.Fatalf("write %d: wrote version %d, read version %v on the other gateway", i, version, got)
			}
		}
		r := s.callWith(1, http.MethodGet, "/v1/orders/o?minVersion=99", nil, map[string]string{"Prefer": "wait=0.3"})
		if r.Status != http.StatusGatewayTimeout || r.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("minVersion never reached: %d %s, want 504 problem+json", r.Status, r.Body)
		}
	})
}

// TestNoLostAnswer: the projector commits but dies before producing the reply
// (injected); the waiting client still gets 200 with the right body, from the
// recorded outcome — not 202.
func TestNoLostAnswer(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStackWithOrder(t, k, stackOptions{})
		s.faults.DropReplies.Store(true)
		r := s.callWith(1, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "pear", "quantity": 2}, map[string]string{"Prefer": "wait=1"})
		if r.Status != http.StatusOK {
			t.Fatalf("reply dropped after commit: %d %s, want 200 from the recorded outcome", r.Status, r.Body)
		}
		if body := r.json(t); body["version"] != float64(2) || body["order"].(map[string]any)["total"] != float64(180) {
			t.Errorf("body %v: want version 2 and total 180", body)
		}
	})
}
