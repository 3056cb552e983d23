package service

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestServeMetrics: the default registry is served at /metrics until the
// context ends, then the port is free again.
func TestServeMetrics(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "answerback_service_test_total", Help: "test"})
	prometheus.MustRegister(c)
	defer prometheus.Unregister(c)
	c.Add(3)

	ctx, cancel := context.WithCancel(context.Background())
	wait, err := ServeMetrics(ctx, Admin{Addr: addr}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "answerback_service_test_total 3") {
		t.Fatalf("/metrics lacks the counter:\n%s", body)
	}
	if status := get(t, "http://"+addr+"/healthz"); status != http.StatusNoContent {
		t.Errorf("/healthz: status %d, want 204", status)
	}
	if status := get(t, "http://"+addr+"/debug/pprof/"); status != http.StatusNotFound {
		t.Fatalf("/debug/pprof/ without Pprof: status %d, want 404", status)
	}
	cancel()
	wait()
	if l, err := net.Listen("tcp", addr); err != nil {
		t.Fatalf("port still held after stop: %v", err)
	} else {
		l.Close()
	}
}

// TestServePprof: with Pprof, the profiles are served beside /metrics.
func TestServePprof(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	wait, err := ServeMetrics(ctx, Admin{Addr: addr, Pprof: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer wait()
	defer cancel()
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1", "/metrics"} {
		if status := get(t, "http://"+addr+path); status != http.StatusOK {
			t.Errorf("%s: status %d, want 200", path, status)
		}
	}
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
