package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/answerback/answerback/services/gateway/server"
)

// TestMain runs the tests, then checks that every response they received is
// documented in the gateway's OpenAPI document: its route and its status.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if undocumented := undocumentedResponses(); len(undocumented) > 0 {
			fmt.Println("FAIL: responses not documented in services/gateway/server/openapi.json:")
			for _, u := range undocumented {
				fmt.Println("  " + u)
			}
			code = 1
		}
	}
	os.Exit(code)
}

// observed is every (method, path, status) the tests' HTTP client saw.
var observed sync.Map // "METHOD path status" → struct{}

type recordingTransport struct{ next http.RoundTripper }

func (rt recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.next.RoundTrip(req)
	if err == nil {
		observed.Store(fmt.Sprintf("%s %s %d", req.Method, req.URL.Path, resp.StatusCode), struct{}{})
	}
	return resp, err
}

func undocumentedResponses() []string {
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]json.RawMessage `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(server.OpenAPI(), &doc); err != nil {
		return []string{"openapi.json does not parse: " + err.Error()}
	}
	var out []string
	observed.Range(func(k, _ any) bool {
		parts := strings.Fields(k.(string))
		method, path, status := parts[0], parts[1], parts[2]
		pattern, ok := server.RoutePattern(method, path)
		if !ok {
			if code, _ := strconv.Atoi(status); code == http.StatusNotFound || code == http.StatusMethodNotAllowed {
				return true // the router's own answer to no route
			}
			out = append(out, fmt.Sprintf("%s %s → %s: no route", method, path, status))
			return true
		}
		if _, ok := doc.Paths[pattern][strings.ToLower(method)].Responses[status]; !ok {
			out = append(out, fmt.Sprintf("%s %s → %s", method, pattern, status))
		}
		return true
	})
	sort.Strings(out)
	return out
}
