package problem

import (
	"net/http"
	"testing"
)

// TestTable: each type has a title and an error status; a name is defined
// once; an unknown type is answered 500.
func TestTable(t *testing.T) {
	all := All()
	if len(all) < 19 {
		t.Fatalf("%d types, want at least the pipeline's 19", len(all))
	}
	for i, typ := range all {
		if typ.Title == "" || typ.Status < 400 {
			t.Errorf("%+v: want a title and an error status", typ)
		}
		if i > 0 && all[i-1].Name >= typ.Name {
			t.Errorf("All is not sorted by name at %q", typ.Name)
		}
	}
	if Status(StaleCommand) != http.StatusConflict || Status("no-such-type") != http.StatusInternalServerError {
		t.Errorf("Status: stale-command %d, unknown %d; want 409 and 500", Status(StaleCommand), Status("no-such-type"))
	}
	if typ, _ := Lookup(StaleCommand); typ.DeadLetter != "stale command" {
		t.Errorf("stale-command's dead-letter reason %q", typ.DeadLetter)
	}
	defer func() {
		if recover() == nil {
			t.Error("defining a type twice did not panic")
		}
	}()
	Define(Type{Name: Malformed, Title: "again", Status: 400})
}
