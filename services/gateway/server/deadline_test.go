package server

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/answerback/answerback/libs/testenv"
)

// TestReadsEndWhenTheDatabaseStalls: with a database that accepts
// connections and never answers — PostgreSQL stopped with SIGSTOP, or a
// black-holed network — every read route answers 503 with Retry-After once
// its read's deadline passes, instead of holding the request.
func TestReadsEndWhenTheDatabaseStalls(t *testing.T) {
	stalled := testenv.BlackHole(t)
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@"+stalled+"/none")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	a := newTestAuth(t)
	gw := &Gateway{cfg: Config{Auth: a.v, Pool: pool, ProduceTimeout: time.Second, ReadTimeout: 200 * time.Millisecond,
		DefaultWait: 5 * time.Second, MaxWait: 30 * time.Second}, log: slog.New(slog.DiscardHandler), streams: make(chan struct{}, 1)}
	routes := gw.routes()
	for _, path := range []string{
		"/v1/orders/o-1",
		"/v1/orders/o-1?minVersion=3", // waits for a version: each of its reads has the deadline too
		"/v1/orders/o-1/valid-items",
		"/v1/catalog",
		"/v1/orders/o-1/stream",
	} {
		done := make(chan *httptest.ResponseRecorder, 1)
		go func() { // ends with the request, or is abandoned with the failed test
			rec := httptest.NewRecorder()
			routes.ServeHTTP(rec, a.authorize(httptest.NewRequest(http.MethodGet, path, nil), "acme"))
			done <- rec
		}()
		select {
		case rec := <-done:
			if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
				t.Errorf("GET %s with the database stalled: %d, Retry-After %q; want 503 with Retry-After", path, rec.Code, rec.Header().Get("Retry-After"))
			}
		case <-time.After(20 * time.Second):
			t.Errorf("GET %s with the database stalled: no answer after 20 s, the read has no deadline", path)
		}
	}
}
