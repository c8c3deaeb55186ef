//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package store

import (
	"fmt"
	"syscall"
	"unsafe"
)

// allocIndex returns n zeroed Ts in anonymous memory mapped outside the Go
// heap. The lookup index is large (about 100 bytes a binding) and lives as
// long as the process: kept off the heap, it neither doubles the GC's heap
// goal (GOGC sizes the goal from the live heap) nor costs marking work.
// Pages are only resident once touched, so spare capacity is cheap. T must
// hold no pointers.
func allocIndex[T any](n int) ([]T, error) {
	if n <= 0 {
		return nil, nil
	}
	var zero T
	size := int(unsafe.Sizeof(zero)) * n
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("store: lookup index: mmap %d bytes: %w", size, err)
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), n), nil
}

// freeIndex releases memory from allocIndex. The slice must not be used
// afterwards.
func freeIndex[T any](s []T) {
	if cap(s) == 0 {
		return
	}
	s = s[:cap(s)]
	var zero T
	b := unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), int(unsafe.Sizeof(zero))*len(s))
	_ = syscall.Munmap(b)
}
