// Package ports finds loopback ports free now: for local services, brokers
// and tests. (A port found free may be taken before it is used; callers that
// can retry on a bind error do.)
package ports

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
)

// Free returns a loopback port nobody listens on now.
func Free() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreeN returns n distinct loopback ports nobody listens on now (each
// held until all are found, so that none is returned twice).
func FreeN(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// FreeKafka returns a base port p such that p..p+n-1 (the client ports
// of an n-node local Kafka cluster) and p+100..p+100+n-1 (its controller
// ports) are all free now — the layout kafkalocal.Options.Port expects.
func FreeKafka(n int) (int, error) {
	for range 100 {
		base := 20000 + rand.IntN(40000)
		if allFree(base, n) && allFree(base+100, n) {
			return base, nil
		}
	}
	return 0, errors.New("no free port range for a " + fmt.Sprint(n) + "-node Kafka cluster")
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
