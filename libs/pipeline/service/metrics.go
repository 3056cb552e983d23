package service

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics defines -metrics-addr (METRICS_ADDR): where to serve Prometheus
// metrics at /metrics; empty turns them off.
func (f Flags) Metrics() *string {
	return f.String("metrics-addr", "METRICS_ADDR", "", "serve Prometheus metrics at /metrics on this address (empty: off)")
}

// ServeMetrics serves the default Prometheus registry at /metrics on addr
// until ctx ends; wait blocks until the server has stopped. An empty addr
// serves nothing. The listen error, if any, is returned at once.
func ServeMetrics(ctx context.Context, addr string, log *slog.Logger) (wait func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.Handler())
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
	log.Info("metrics served", "addr", ln.Addr().String())
	return func() { <-stopped; <-done }, nil
}
