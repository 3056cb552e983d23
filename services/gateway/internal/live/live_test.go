package live

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A Subscriber that stops reading is dropped once its buffer is full; the
// others get every Frame, and delivering never waits for the stalled one.
func TestStalledSubscriberIsDropped(t *testing.T) {
	h := NewHub(nil, "orders.events", nil, nil, slog.Default())
	stalled := h.Subscribe("o-1", 1)
	reader := h.Subscribe("o-1", 1)
	got := make(chan int64)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the reader: ends with the test
		for {
			select {
			case f := <-reader.Frames:
				got <- f.Version
			case <-stop:
				return
			}
		}
	}()
	var slowest time.Duration
	for v := int64(2); v <= 200; v++ {
		started := time.Now()
		h.deliver("o-1", []Frame{{Version: v, Bytes: []byte("x")}})
		slowest = max(slowest, time.Since(started))
		select {
		case g := <-got:
			if g != v {
				t.Fatalf("the reader got version %d, want %d", g, v)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("the reader did not get version %d", v)
		}
	}
	if slowest > 100*time.Millisecond {
		t.Errorf("one delivery took %s: the stalled Subscriber held it up", slowest)
	}
	select {
	case <-stalled.Dropped:
	default:
		t.Fatal("the stalled Subscriber was not dropped")
	}
	if n := len(stalled.Frames); n != streamBuffer {
		t.Errorf("the stalled Subscriber holds %d frames, want its buffer of %d", n, streamBuffer)
	}
	if n := h.Subscribers(); n != 1 {
		t.Errorf("%d Subscribers left, want the reader alone", n)
	}
	h.Unsubscribe(reader)
	h.Unsubscribe(stalled) // dropped already: a no-op
	if n := h.Subscribers(); n != 0 {
		t.Errorf("%d Subscribers left after unsubscribing", n)
	}
}

// Frames are Server-Sent Events: id = the version, event = the change type.
func TestFrames(t *testing.T) {
	f := SnapshotFrame([]byte(`{"id":"o-1"}`), 3)
	if want := "id: 3\nevent: snapshot\ndata: {\"version\":3,\"type\":\"snapshot\",\"order\":{\"id\":\"o-1\"}}\n\n"; string(f.Bytes) != want {
		t.Errorf("snapshot Frame %q, want %q", f.Bytes, want)
	}
	if !strings.HasSuffix(string(encodeFrame(4, "item-added", liveEvent{Version: 4, Type: "orders.item-added.v1"}).Bytes), "\n\n") {
		t.Error("a Frame must end with a blank line")
	}
}
