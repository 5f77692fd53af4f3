package reporter

import "time"

// SetMaxKept sets the sparse sketch bytes a point keeps for its union,
// for tests of the path that merges the rest at once; the returned func
// restores it.
func SetMaxKept(n int) (restore func()) {
	old := maxKept
	maxKept = n
	return func() { maxKept = old }
}

// SetClock makes s read the time from now (cached answers' ages, the near
// cache's checks); the returned func restores it.
func SetClock(s *Service, now func() time.Time) (restore func()) {
	old := s.now
	s.now = now
	return func() { s.now = old }
}
