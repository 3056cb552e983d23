package service

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestProbe(t *testing.T) {
	status := http.StatusNoContent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	ctx := context.Background()
	for _, addr := range []string{":" + port, "0.0.0.0:" + port, "127.0.0.1:" + port} {
		if err := Probe(ctx, addr); err != nil {
			t.Errorf("Probe(%q) of a healthy server: %v", addr, err)
		}
	}
	status = http.StatusServiceUnavailable
	if err := Probe(ctx, ":"+port); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("Probe of a server answering 503: %v, want an error naming 503", err)
	}
	srv.Close()
	if err := Probe(ctx, ":"+port); err == nil {
		t.Error("Probe of a closed port: no error")
	}
	if err := Probe(ctx, ""); err == nil || !strings.Contains(err.Error(), "METRICS_ADDR") {
		t.Errorf("Probe of no address: %v, want an error naming METRICS_ADDR", err)
	}
	if err := Probe(ctx, "no-port"); err == nil {
		t.Error("Probe of an address without a port: no error")
	}
}

// TestHealthcheckOrExit runs this test binary as a service would run:
// HEALTHCHECK_ADDR is its configured address, the arguments after "--" its own.
func TestHealthcheckOrExit(t *testing.T) {
	if addr, ok := os.LookupEnv("HEALTHCHECK_CHILD_ADDR"); ok {
		f := NewFlags("svc")
		f.ParseOrExit(strings.Fields(os.Getenv("HEALTHCHECK_CHILD_ARGS")))
		f.HealthcheckOrExit(addr)
		os.Exit(42) // returned: the service would run
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	run := func(addr, args string) int {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHealthcheckOrExit$")
		cmd.Env = append(os.Environ(), "HEALTHCHECK_CHILD_ADDR="+addr, "HEALTHCHECK_CHILD_ARGS="+args)
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok { //nolint:errorlint // Run returns *exec.ExitError itself
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}
	for _, c := range []struct {
		addr, args string
		want       int
	}{
		{srv.Listener.Addr().String(), "", 42},
		{srv.Listener.Addr().String(), "healthcheck", 0},
		{"127.0.0.1:1", "healthcheck", 1},
		{"", "healthcheck", 1},
		{srv.Listener.Addr().String(), "healthcheck extra", 2},
		{srv.Listener.Addr().String(), "serve", 2},
	} {
		if got := run(c.addr, c.args); got != c.want {
			t.Errorf("address %q, arguments %q: exit %d, want %d", c.addr, c.args, got, c.want)
		}
	}
}
