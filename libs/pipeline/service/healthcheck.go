package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// HealthcheckCommand is the argument that turns a service binary into its
// own health probe: `<binary> healthcheck`, with the service's environment,
// for a container HEALTHCHECK on an image that has no shell or curl.
const HealthcheckCommand = "healthcheck"

// HealthcheckOrExit handles the positional arguments left after parsing.
// With none it returns, and the service runs. With "healthcheck" it probes
// GET /healthz at addr — the address the service is configured to serve it
// on, flags and environment applied — and exits 0 on a 2xx answer within 3
// seconds, 1 otherwise (saying why on stderr), 1 too when addr is empty
// (nothing to probe). Anything else exits 2.
func (f Flags) HealthcheckOrExit(addr string) {
	switch {
	case f.NArg() == 0:
		return
	case f.NArg() == 1 && f.Arg(0) == HealthcheckCommand:
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := Probe(ctx, addr)
		cancel()
		if err != nil {
			_, _ = fmt.Fprintf(os.Stderr, "%s: unhealthy: %v\n", f.Name(), err)
			os.Exit(1)
		}
		os.Exit(0)
	default:
		_, _ = fmt.Fprintf(os.Stderr, "%s: unexpected arguments %q (the only command is %q)\n", f.Name(), f.Args(), HealthcheckCommand)
		os.Exit(2)
	}
}

// Probe GETs /healthz on the listen address addr (":8080", "0.0.0.0:9464",
// "127.0.0.1:9464"; an unspecified host is this machine) and returns nil
// when it answers 2xx.
func Probe(ctx context.Context, addr string) error {
	if addr == "" {
		return errors.New("no address serves /healthz (for aggregator and projector, set METRICS_ADDR)")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	return nil
}
