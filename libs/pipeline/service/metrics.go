package service

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Admin is a service's operator endpoint: Prometheus metrics, and on demand
// Go's profiler.
type Admin struct {
	// Addr is where to serve /metrics; empty serves nothing.
	Addr string
	// Pprof also serves net/http/pprof's profiles under /debug/pprof/ — for
	// an operator's network only: a profile shows the process's internals.
	Pprof bool
}

// Metrics defines -metrics-addr (METRICS_ADDR): where to serve Prometheus
// metrics at /metrics, empty turning them off; and -pprof (PPROF=true):
// serve Go's profiles there too. Call the result after parsing.
func (f Flags) Metrics() func() Admin {
	addr := f.String("metrics-addr", "METRICS_ADDR", "", "serve Prometheus metrics at /metrics on this address (empty: off)")
	pprof := f.Bool("pprof", "PPROF", false, "also serve Go's profiles at /debug/pprof/ on the metrics address")
	return func() Admin { return Admin{Addr: *addr, Pprof: *pprof} }
}

// ServeMetrics serves the default Prometheus registry at /metrics and a
// liveness probe at /healthz (204) on a.Addr
// (and the profiles when a.Pprof) until ctx ends; wait blocks until the
// server has stopped. An empty address serves nothing. The listen error, if
// any, is returned at once.
func ServeMetrics(ctx context.Context, a Admin, log *slog.Logger) (wait func(), err error) {
	if a.Addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", a.Addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.Handler())
	// Liveness for orchestrators: the process serves. (Readiness of the
	// work itself shows in the consumer lag metrics.)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	if a.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { // stopped by Shutdown below
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server failed", "err", err)
		}
	}()
	stopped := make(chan struct{})
	go func() { // shuts the server down when ctx ends
		defer close(stopped)
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	log.Info("metrics served", "addr", ln.Addr().String(), "pprof", a.Pprof)
	return func() { <-stopped; <-done }, nil
}
