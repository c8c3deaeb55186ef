//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package store

// allocIndex returns n zeroed Ts. On this platform the index lives on the
// Go heap.
func allocIndex[T any](n int) ([]T, error) {
	if n <= 0 {
		return nil, nil
	}
	return make([]T, n), nil
}

// freeIndex drops memory from allocIndex (the GC reclaims it).
func freeIndex[T any]([]T) {}
