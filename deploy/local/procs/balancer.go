package procs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Balancer is a round-robin load balancer in front of the gateways. A request
// whose gateway cannot be reached is tried on the next one — safe for this
// API's commands when they carry an Idempotency-Key.
type Balancer struct {
	backends []string
	next     atomic.Uint64
	client   *http.Client
	srv      *http.Server
	url      string
}

// StartBalancer listens on a free loopback port and balances over backends
// (host:port of each gateway). Close stops it.
func StartBalancer(backends []string) (*Balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Balancer{backends: backends, url: "http://" + ln.Addr().String(), client: &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 0},
	}}
	b.srv = &http.Server{Handler: b, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = b.srv.Serve(ln) }() // ends at Close
	return b, nil
}

// URL is the balancer's base URL.
func (b *Balancer) URL() string { return b.url }

// Close stops the balancer, letting requests in flight finish (5s at most).
func (b *Balancer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return b.srv.Shutdown(ctx)
}

func (b *Balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	start := b.next.Add(1)
	var lastErr error
	for i := range uint64(len(b.backends)) {
		backend := b.backends[(start+i)%uint64(len(b.backends))]
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, "http://"+backend+r.URL.RequestURI(), bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := b.client.Do(req)
		if err != nil {
			lastErr = err
			if r.Context().Err() != nil {
				return
			}
			continue
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
	w.Header().Set("Retry-After", "1")
	http.Error(w, fmt.Sprint("no gateway reachable: ", lastErr), http.StatusBadGateway)
}
