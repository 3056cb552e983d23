package idempotency

import (
	"context"
	"errors"
	"testing"

	"github.com/answerback/answerback/libs/domain/database"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/testenv"
)

// TestKeysAndMarks: a key's first use reserves it; the same request again
// gets the first command's ID, another request under it ErrKeyReused, and
// another tenant's key of the same name is its own. A pending mark is seen
// by its tenant only, and Prune keeps what is within Retention.
func TestKeysAndMarks(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	ctx := context.Background()
	if err := database.EnsureGatewaySchema(ctx, pg.Pool); err != nil {
		t.Fatal(err)
	}
	s := Store{Pool: pg.Pool}
	print := Fingerprint("POST", "/v1/orders/o/items", "", "o", []byte(`{"sku":"apple"}`))
	if first, err := s.Reserve(ctx, "acme", "k1", print, "c-1", "o"); err != nil || first != "c-1" {
		t.Fatalf("first use: %q, %v; want c-1", first, err)
	}
	if first, err := s.Reserve(ctx, "acme", "k1", print, "c-2", "o"); err != nil || first != "c-1" {
		t.Errorf("the same request again: %q, %v; want the first command c-1", first, err)
	}
	other := Fingerprint("POST", "/v1/orders/o/items", "", "o", []byte(`{"sku":"pear"}`))
	if _, err := s.Reserve(ctx, "acme", "k1", other, "c-3", "o"); !errors.Is(err, ErrKeyReused) {
		t.Errorf("another request under the key: %v, want ErrKeyReused", err)
	}
	if first, err := s.Reserve(ctx, "globex", "k1", other, "c-4", "o"); err != nil || first != "c-4" {
		t.Errorf("another tenant's key: %q, %v; want its own c-4", first, err)
	}
	if first, again := DerivedID("acme", "k1"), DerivedID("acme", "k1"); first != again || first == DerivedID("globex", "k1") {
		t.Error("DerivedID: want the same ID for the same tenant and key, another for another tenant")
	}
	for _, k := range []string{"", "a b", string(make([]byte, 256))} {
		if ValidKey(k) {
			t.Errorf("ValidKey(%q) = true", k)
		}
	}

	s.MarkPending(ctx, envelope.Command{Meta: envelope.Meta{CommandID: "c-9", AggregateID: "o", Tenant: "acme"}})
	if ok, err := s.IsPending(ctx, "acme", "c-9"); err != nil || !ok {
		t.Errorf("own mark: %v, %v; want pending", ok, err)
	}
	if ok, err := s.IsPending(ctx, "globex", "c-9"); err != nil || ok {
		t.Errorf("another tenant sees the mark: %v, %v", ok, err)
	}
	s.Prune(ctx)
	if ok, _ := s.IsPending(ctx, "acme", "c-9"); !ok {
		t.Error("Prune dropped a mark within Retention")
	}
}
