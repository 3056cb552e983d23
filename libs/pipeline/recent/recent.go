// Package recent remembers keys for a while at O(1) per key, with no scan:
// for sets of keys that must not grow without bound (commands sent lately,
// items seen lately).
package recent

import (
	"sync"
	"time"
)

// Set remembers keys for between one and two windows, at O(1) per key:
// keys go to the current generation, which becomes the previous one after a
// window, when the previous one is dropped whole.
type Set struct {
	// Window is how long a key is kept at least (twice at most).
	Window time.Duration

	mu        sync.Mutex
	cur, prev map[string]struct{}
	since     time.Time // when cur began
}

func (s *Set) Add(key string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil || now.Sub(s.since) >= s.Window {
		s.prev, s.cur, s.since = s.cur, map[string]struct{}{}, now
	}
	s.cur[key] = struct{}{}
}

func (s *Set) Has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, inCur := s.cur[key]
	_, inPrev := s.prev[key]
	return inCur || inPrev
}
