package recent

import (
	"testing"
	"time"
)

// TestRecentSetForgetsAfterTwoWindows: a key is remembered for at least one
// window and forgotten once two have passed, however many keys came in
// between.
func TestRecentSetForgetsAfterTwoWindows(t *testing.T) {
	t.Parallel()
	s := Set{Window: time.Minute}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.Add("a", t0)
	s.Add("b", t0.Add(59*time.Second))
	s.Add("c", t0.Add(61*time.Second)) // a new generation: a and b are in the previous one
	if !s.Has("a") || !s.Has("b") || !s.Has("c") {
		t.Fatal("keys forgotten within their window")
	}
	s.Add("d", t0.Add(122*time.Second)) // another: a and b are gone
	if s.Has("a") || s.Has("b") {
		t.Error("keys remembered past two windows")
	}
	if !s.Has("c") || !s.Has("d") {
		t.Error("keys of the last two windows forgotten")
	}
}
