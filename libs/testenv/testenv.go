// Package testenv gives tests real infrastructure: a Kafka seed list with a
// unique name prefix, and a fresh PostgreSQL database, both cleaned up when
// the test ends.
//
// Kafka comes in two kinds:
//   - real: the broker named by KAFKA_BROKERS (Apache Kafka started by
//     `make test` or `make infra-up`, a container, or any cluster);
//   - embedded: franz-go's in-process kfake cluster, started per test.
//
// PostgreSQL is the server named by DATABASE_URL; every test gets a database
// of its own, dropped afterwards.
//
// When a real broker or database cannot be had, a test is skipped with a
// message saying how to get one — except under CI=true, where it fails: a
// missing dependency in CI is a broken build, never a silent skip.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment variables read by this package.
const (
	EnvKafkaBrokers = "KAFKA_BROKERS" // comma-separated seed brokers of a real Kafka
	EnvDatabaseURL  = "DATABASE_URL"  // PostgreSQL connection string with rights to create databases
	EnvCI           = "CI"            // "true": missing infrastructure fails tests
)

// InCI reports whether tests run under CI=true.
func InCI() bool { return strings.EqualFold(os.Getenv(EnvCI), "true") }

// Unavailable stops the test because a dependency is missing: a failure under
// CI=true, a skip otherwise. The message says what is missing and how to get it.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + " — run `make test` (which starts real Kafka and PostgreSQL) or `make infra-up` and export the variables it prints"
	if InCI() {
		t.Fatalf("required infrastructure missing under CI=true: %s", msg)
	}
	t.Skip(msg)
}

// UniqueName returns prefix followed by a short random suffix, usable as a
// Kafka topic, group or transactional ID, or (lower case) a database name.
func UniqueName(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// Context returns a context that ends when the test does or after d, whichever comes first.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// probe runs check once per process and remembers its result, so that a
// missing server costs one timeout, not one per test.
type probe struct {
	once sync.Once
	err  error
}

func (p *probe) do(check func() error) error {
	p.once.Do(func() { p.err = check() })
	return p.err
}
