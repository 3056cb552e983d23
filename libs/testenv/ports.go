package testenv

import (
	"testing"

	"github.com/answerback/answerback/libs/testenv/ports"
)

// FreePort returns a loopback port nobody listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := ports.Free()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// FreeKafkaPorts returns a base port for an n-node local Kafka cluster whose
// client and controller ports are all free (see ports.FreeKafka).
func FreeKafkaPorts(t testing.TB, n int) int {
	t.Helper()
	p, err := ports.FreeKafka(n)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
