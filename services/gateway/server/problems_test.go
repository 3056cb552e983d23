package server

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/answerback/answerback/libs/pipeline/problem"
)

// TestOpenAPIProblemTypesMatchTable: every problem type the OpenAPI document
// names in a response's description — "(order-exists, order-not-open)" — is
// in the problem table, with the response's status.
func TestOpenAPIProblemTypesMatchTable(t *testing.T) {
	t.Parallel()
	type response struct {
		Ref         string `json:"$ref"`
		Description string `json:"description"`
	}
	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Responses map[string]response `json:"responses"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	lists := regexp.MustCompile(`\(([a-z-]+(?:, [a-z-]+)*)\)`)
	checked := 0
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			var op struct {
				Responses map[string]response `json:"responses"`
			}
			if json.Unmarshal(raw, &op) != nil {
				continue // path-level parameters
			}
			for code, r := range op.Responses {
				if r.Ref != "" {
					r = doc.Components.Responses[r.Ref[strings.LastIndex(r.Ref, "/")+1:]]
				}
				status, _ := strconv.Atoi(code)
				for _, m := range lists.FindAllStringSubmatch(r.Description, -1) {
					names := strings.Split(m[1], ", ")
					known := 0
					for _, n := range names {
						if _, ok := problem.Lookup(n); ok {
							known++
						}
					}
					if known == 0 {
						continue // a list of something else ("signature, algorithm, …")
					}
					for _, n := range names {
						typ, ok := problem.Lookup(n)
						switch {
						case !ok:
							t.Errorf("%s %s %s names %q, which the problem table does not define", method, path, code, n)
						case typ.Status != status:
							t.Errorf("%s %s %s names %q, whose status in the table is %d", method, path, code, n, typ.Status)
						}
						checked++
					}
				}
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d problem types named in the document: the check found nothing to check", checked)
	}
}

// TestGatewayProblemTypesDefined: every problem type this package answers
// with is in the problem table (an undefined one would be answered 500).
func TestGatewayProblemTypesDefined(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	types := regexp.MustCompile(`(?:Problem\{Type: |challenge\(w, [^\n]*?, )"([a-z-]+)"`)
	found := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range types.FindAllStringSubmatch(string(src), -1) {
			found++
			if _, ok := problem.Lookup(m[1]); !ok {
				t.Errorf("%s answers problem type %q, which the problem table does not define", f, m[1])
			}
		}
	}
	if found < 10 {
		t.Errorf("found only %d problem types in the package's code: the pattern is stale", found)
	}
}
