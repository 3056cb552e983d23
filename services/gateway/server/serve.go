package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/netutil"
)

// Serve listens on addr and serves gw until ctx ends, then shuts down
// gracefully: it stops accepting, lets in-flight requests finish (up to the
// longest reply wait plus a margin), stops routing replies and deletes the
// reply topic.
func Serve(ctx context.Context, gw *Gateway, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ServeListener(ctx, gw, ln)
}

// Server timeouts: a slow or stalled client holds a connection, never a
// goroutine, for longer than these.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 15 * time.Second
	idleTimeout       = 2 * time.Minute
)

// newHTTPServer is the gateway's HTTP server: bounded header and body reads,
// writes bounded by the longest reply wait plus a margin, idle connections
// closed.
func newHTTPServer(h http.Handler, maxWait time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      maxWait + 15*time.Second,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
}

// maxConnections bounds the open connections of one gateway (each holds a
// goroutine); further clients wait in the listen backlog until one closes.
const maxConnections = 10_000

// ServeListener is Serve on an open listener (tests pass one on port 0).
func ServeListener(ctx context.Context, gw *Gateway, ln net.Listener) error {
	ln = netutil.LimitListener(ln, maxConnections)
	srv := newHTTPServer(gw.Handler(), gw.cfg.MaxWait)
	srv.RegisterOnShutdown(gw.endStreams) // live views end at once; their clients reconnect elsewhere
	routerCtx, stopRouter := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the reply router: stopped after the HTTP server drained
		defer wg.Done()
		_ = gw.Run(routerCtx)
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }() // ends when Shutdown is called
	gw.log.Info("gateway listening", "addr", ln.Addr().String(), "reply_topic", gw.ReplyTopic())

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), gw.cfg.MaxWait+5*time.Second)
	defer cancel()
	if shutdownErr := srv.Shutdown(drainCtx); shutdownErr != nil {
		err = errors.Join(err, shutdownErr)
	}
	stopRouter()
	wg.Wait()
	if closeErr := gw.Close(drainCtx, true); closeErr != nil {
		err = errors.Join(err, closeErr)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
