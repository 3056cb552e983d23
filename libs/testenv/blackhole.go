package testenv

import (
	"net"
	"sync"
	"testing"
)

// BlackHole listens on loopback and accepts connections that it never
// answers, until the test ends, and returns its address: a server stopped
// with SIGSTOP, or a network that drops every packet, as a client sees it.
func BlackHole(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() { // ended by the listener's close at the test's end
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return ln.Addr().String()
}
