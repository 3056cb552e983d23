package integration

import (
	"log/slog"
	"os"
	"testing"
)

// testLogger logs to stderr at warning level (LOG_LEVEL=debug|info for more),
// so failures show what the components saw.
func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	level := slog.LevelWarn
	_ = level.UnmarshalText([]byte(os.Getenv("LOG_LEVEL")))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("test", t.Name())
}
