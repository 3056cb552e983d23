package server

import (
	"testing"
	"time"
)

// TestRecentSetForgetsAfterTwoWindows: a key is remembered for at least one
// window and forgotten once two have passed, however many keys came in
// between.
func TestRecentSetForgetsAfterTwoWindows(t *testing.T) {
	t.Parallel()
	s := recentSet{window: time.Minute}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.add("a", t0)
	s.add("b", t0.Add(59*time.Second))
	s.add("c", t0.Add(61*time.Second)) // a new generation: a and b are in the previous one
	if !s.has("a") || !s.has("b") || !s.has("c") {
		t.Fatal("keys forgotten within their window")
	}
	s.add("d", t0.Add(122*time.Second)) // another: a and b are gone
	if s.has("a") || s.has("b") {
		t.Error("keys remembered past two windows")
	}
	if !s.has("c") || !s.has("d") {
		t.Error("keys of the last two windows forgotten")
	}
}
