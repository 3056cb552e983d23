package server

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A subscriber that stops reading is dropped once its buffer is full; the
// others get every frame, and delivering never waits for the stalled one.
func TestStalledSubscriberIsDropped(t *testing.T) {
	h := newHub(nil, "orders.events", nil, slog.Default())
	stalled := h.subscribe("o-1", 1)
	reader := h.subscribe("o-1", 1)
	got := make(chan int64)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the reader: ends with the test
		for {
			select {
			case f := <-reader.frames:
				got <- f.version
			case <-stop:
				return
			}
		}
	}()
	var slowest time.Duration
	for v := int64(2); v <= 200; v++ {
		started := time.Now()
		h.deliver("o-1", []frame{{version: v, bytes: []byte("x")}})
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
		t.Errorf("one delivery took %s: the stalled subscriber held it up", slowest)
	}
	select {
	case <-stalled.dropped:
	default:
		t.Fatal("the stalled subscriber was not dropped")
	}
	if n := len(stalled.frames); n != streamBuffer {
		t.Errorf("the stalled subscriber holds %d frames, want its buffer of %d", n, streamBuffer)
	}
	if n := h.subscribers(); n != 1 {
		t.Errorf("%d subscribers left, want the reader alone", n)
	}
	h.unsubscribe(reader)
	h.unsubscribe(stalled) // dropped already: a no-op
	if n := h.subscribers(); n != 0 {
		t.Errorf("%d subscribers left after unsubscribing", n)
	}
}

// Frames are Server-Sent Events: id = the version, event = the change type.
func TestFrames(t *testing.T) {
	f := snapshotFrame([]byte(`{"id":"o-1"}`), 3)
	if want := "id: 3\nevent: snapshot\ndata: {\"version\":3,\"type\":\"snapshot\",\"order\":{\"id\":\"o-1\"}}\n\n"; string(f.bytes) != want {
		t.Errorf("snapshot frame %q, want %q", f.bytes, want)
	}
	if !strings.HasSuffix(string(encodeFrame(4, "item-added", liveEvent{Version: 4, Type: "orders.item-added.v1"}).bytes), "\n\n") {
		t.Error("a frame must end with a blank line")
	}
}
