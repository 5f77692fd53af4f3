package reporter

// SetMaxKept sets the sparse sketch bytes a point keeps for its union,
// for tests of the path that merges the rest at once; the returned func
// restores it.
func SetMaxKept(n int) (restore func()) {
	old := maxKept
	maxKept = n
	return func() { maxKept = old }
}
