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
	wait, err := ServeMetrics(ctx, addr, slog.New(slog.DiscardHandler))
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
	cancel()
	wait()
	if l, err := net.Listen("tcp", addr); err != nil {
		t.Fatalf("port still held after stop: %v", err)
	} else {
		l.Close()
	}
}
