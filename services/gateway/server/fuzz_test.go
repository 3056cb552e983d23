package server

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// FuzzParsePrefer: any Prefer header gives a wait within [0, max].
func FuzzParsePrefer(f *testing.F) {
	for _, seed := range []string{"wait=5", "respond-async, wait=0.5", "wait=-1", "wait=1e99", `wait="3"`, "handling=strict", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, prefer string) {
		h := http.Header{}
		h.Set("Prefer", prefer)
		p := parsePrefer(h, 5*time.Second, 30*time.Second)
		if p.wait < 0 || p.wait > 30*time.Second {
			t.Fatalf("Prefer %q gave wait %s", prefer, p.wait)
		}
	})
}

// FuzzParseIfMatch: a parsed If-Match is NoVersion or a version ≥ 0.
func FuzzParseIfMatch(f *testing.F) {
	for _, seed := range []string{`"3"`, `W/"0"`, "*", "3", `"-1"`, `"99999999999999999999"`, ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ifMatch string) {
		h := http.Header{}
		h.Set("If-Match", ifMatch)
		if v, err := parseIfMatch(h); err == nil && v < 0 && v != envelope.NoVersion {
			t.Fatalf("If-Match %q gave version %d", ifMatch, v)
		}
	})
}

// FuzzDecodeBody: any body is either decoded or refused with 400, 413 or
// 415 problem+json — never a panic, never another status.
func FuzzDecodeBody(f *testing.F) {
	for _, seed := range []string{`{"sku":"pear","quantity":2}`, `{"sku":1}`, `{`, `[]`, `{"sku":"a"} {}`, `{"x":` + string(bytes.Repeat([]byte("["), 10000))} {
		f.Add([]byte(seed), "application/json")
	}
	f.Add([]byte(`{}`), "text/plain")
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		req := httptest.NewRequest(http.MethodPost, "/v1/orders/o/items", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		var v orders.AddItem
		if _, ok := decodeBody(rec, req, &v); ok {
			return
		}
		switch rec.Code {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		default:
			t.Fatalf("body %q (%s): status %d", body, contentType, rec.Code)
		}
		if rec.Header().Get("Content-Type") != envelope.ProblemJSON {
			t.Fatalf("refusal without problem+json: %s", rec.Header().Get("Content-Type"))
		}
	})
}

// FuzzValidID: accepted IDs are 1..100 bytes of the documented characters.
func FuzzValidID(f *testing.F) {
	for _, seed := range []string{"order-1", "a b", "", "é", "x:y.z_1"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if !validID(id) {
			return
		}
		if len(id) == 0 || len(id) > 100 {
			t.Fatalf("accepted %q of length %d", id, len(id))
		}
		for _, c := range []byte(id) {
			alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
			if !alnum && bytes.IndexByte([]byte("-_.:"), c) < 0 {
				t.Fatalf("accepted %q with byte %q", id, c)
			}
		}
	})
}
