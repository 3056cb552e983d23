package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
)

// FreePort returns a loopback port nobody listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreeKafkaPorts returns a base port p such that p..p+n-1 (the client ports of
// an n-node local Kafka cluster) and p+100..p+100+n-1 (its controller ports)
// are all free now — the layout kafkalocal.Options.Port expects.
func FreeKafkaPorts(t testing.TB, n int) int {
	t.Helper()
	for range 100 {
		base := 20000 + rand.IntN(40000)
		if allFree(base, n) && allFree(base+100, n) {
			return base
		}
	}
	t.Fatalf("no free port range for a %d-node Kafka cluster", n)
	return 0
}

func allFree(from, n int) bool {
	for p := from; p < from+n; p++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}
