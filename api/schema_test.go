package api_test

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/answerback/answerback/api"
)

// eventType is the form of an event type: <domain>.<event>.v<n>.
var eventType = regexp.MustCompile(`^[a-z]+\.[a-z-]+\.v[0-9]+$`)

const regenerate = "run `go generate ./...` in api/ (or `go run ./api/cmd/gen` from the repository root) and commit the result"

// TestSchemasMatchGoTypes keeps the committed schemas what the Go types
// generate: a change of a data struct fails here until the schema is
// regenerated — and, when the change breaks consumers, until it is
// published as a new event type instead.
func TestSchemasMatchGoTypes(t *testing.T) {
	for _, e := range api.Events {
		t.Run(e.Type, func(t *testing.T) {
			next, err := e.Schema()
			if err != nil {
				t.Fatal(err)
			}
			published, err := os.ReadFile(api.SchemaFile(e.Type))
			if err != nil {
				t.Fatalf("%v: %s", err, regenerate)
			}
			if err := api.Compatible(e.Type, published, next); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(published, next) {
				t.Fatalf("%s differs from what %T generates: %s", api.SchemaFile(e.Type), e.Data, regenerate)
			}
		})
	}
}

// TestEveryEventTypeIsPublished finds the event type constants (Event*,
// "<domain>.<event>.v<n>") in the domain packages' source and requires each
// to be in api.Events, and nothing else to be there.
func TestEveryEventTypeIsPublished(t *testing.T) {
	declared := map[string]string{} // type → package directory
	files, err := filepath.Glob("../libs/domain/*/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no domain sources under ../libs/domain (%v)", err)
	}
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range spec.Names {
				if !strings.HasPrefix(name.Name, "Event") || i >= len(spec.Values) {
					continue
				}
				if lit, ok := spec.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if v, _ := strconv.Unquote(lit.Value); eventType.MatchString(v) {
						declared[v] = filepath.Base(filepath.Dir(path))
					}
				}
			}
			return true
		})
	}
	if len(declared) == 0 {
		t.Fatal("found no Event* constants in ../libs/domain")
	}
	for typ, pkg := range declared {
		e, ok := api.Lookup(typ)
		switch {
		case !ok:
			t.Errorf("event type %s (package %s) is not in api.Events: add it there and run `go generate ./...` in api/", typ, pkg)
		case e.Domain != pkg || !strings.HasPrefix(typ, e.Domain+"."):
			t.Errorf("event type %s: api.Events names domain %q, declared in package %s", typ, e.Domain, pkg)
		}
	}
	for _, e := range api.Events {
		if _, ok := declared[e.Type]; !ok {
			t.Errorf("api.Events has %s, which no domain package declares", e.Type)
		}
	}
}

func TestCompatible(t *testing.T) {
	e, _ := api.Lookup("orders.item-added.v1")
	base, err := e.Schema()
	if err != nil {
		t.Fatal(err)
	}
	const breaking = "breaking change to orders.item-added.v1: publish orders.item-added.v2 instead"
	for _, tc := range []struct {
		name   string
		change func(s map[string]any)
		want   string // "" when compatible
	}{
		{"unchanged", func(map[string]any) {}, ""},
		{"description", func(s map[string]any) { s["description"] = "reworded" }, ""},
		{"optional property added", func(s map[string]any) { props(s)["note"] = map[string]any{"type": "string"} }, ""},
		{"bound tightened", func(s map[string]any) { prop(s, "quantity")["minimum"] = 2 }, ""},
		{"required property added", func(s map[string]any) {
			props(s)["note"] = map[string]any{"type": "string"}
			s["required"] = append(s["required"].([]any), "note")
		}, "note became required"},
		{"property removed", func(s map[string]any) { delete(props(s), "sku") }, "sku was removed"},
		{"type changed", func(s map[string]any) { prop(s, "quantity")["type"] = "string" }, "type integer became string"},
		{"no longer required", func(s map[string]any) { s["required"] = []any{"sku"} }, "quantity is no longer required"},
		{"bound loosened", func(s map[string]any) { prop(s, "quantity")["minimum"] = 0 }, "minimum 1 loosened to 0"},
		{"bound dropped", func(s map[string]any) { delete(prop(s, "sku"), "minLength") }, "minLength 1 loosened"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s map[string]any
			if err := json.Unmarshal(base, &s); err != nil {
				t.Fatal(err)
			}
			tc.change(s)
			next, _ := json.Marshal(s)
			err := api.Compatible(e.Type, base, next)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("want compatible, got %v", err)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), breaking) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("want %q … %q, got %v", breaking, tc.want, err)
			}
		})
	}
}

// TestGeneratorKeepsFrozenSchemas: a committed schema the Go type no longer
// matches compatibly stays as it is; the others are still written.
func TestGeneratorKeepsFrozenSchemas(t *testing.T) {
	dir := t.TempDir()
	frozen := filepath.Join(dir, api.SchemaFile("orders.item-added.v1"))
	if err := os.MkdirAll(filepath.Dir(frozen), 0o755); err != nil {
		t.Fatal(err)
	}
	// As if quantity had been published as a string and the Go type made it an integer.
	published := []byte(`{"type":"object","properties":{"sku":{"type":"string"},"quantity":{"type":"string"}},"required":["sku","quantity"]}`)
	if err := os.WriteFile(frozen, published, 0o644); err != nil {
		t.Fatal(err)
	}
	changed, err := api.WriteSchemas(dir)
	if err == nil || !strings.Contains(err.Error(), "publish orders.item-added.v2 instead") {
		t.Fatalf("want the breaking change reported, got %v", err)
	}
	if got, _ := os.ReadFile(frozen); !bytes.Equal(got, published) {
		t.Fatalf("the frozen schema was overwritten:\n%s", got)
	}
	if len(changed) != len(api.Events)-1 {
		t.Fatalf("want every other schema written, got %v", changed)
	}
}

func TestNextVersion(t *testing.T) {
	for in, want := range map[string]string{
		"orders.item-added.v1": "orders.item-added.v2",
		"orders.created.v9":    "orders.created.v10",
		"orders.created":       "orders.created.v2",
	} {
		if got := api.NextVersion(in); got != want {
			t.Errorf("NextVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func props(s map[string]any) map[string]any             { return s["properties"].(map[string]any) }
func prop(s map[string]any, name string) map[string]any { return props(s)[name].(map[string]any) }
