package testenv

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// TestEventually: it returns once the check passes, and reports the last
// error when the check never does.
func TestEventually(t *testing.T) {
	t.Parallel()
	calls := 0
	Eventually(t, time.Second, time.Millisecond, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 3 {
		t.Errorf("check called %d times, want 3", calls)
	}

	rec := &recorder{TB: t}
	done := make(chan struct{})
	go func() { // Fatalf ends this goroutine, as it ends a test's
		defer close(done)
		Eventually(rec, 30*time.Millisecond, 5*time.Millisecond, func() error { return errors.New("still broken") })
	}()
	<-done
	if rec.failure != "not within 30ms: still broken" {
		t.Errorf("failure %q, want the last error", rec.failure)
	}
}

// recorder records a Fatalf instead of failing the test.
type recorder struct {
	testing.TB
	failure string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failure = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
