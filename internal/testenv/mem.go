package testenv

import (
	"bytes"
	"runtime"
	"strings"
	"sync"
)

// GoroutinesIn counts the process's goroutines whose stack has fn (a
// function's name as a stack trace prints it): what a test that holds
// idle connections counts, by their stack, among goroutines of its own.
func GoroutinesIn(fn string) int {
	buf := make([]byte, 8<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

// HeapAfterGC returns the bytes of live heap after two collections (the
// second finishes what the first's finalizers and sweeping left): what a
// test compares before and after holding something.
func HeapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// Buffer collects a child process's or a logger's output, safe for
// concurrent writes. It keeps the first 8 MiB and drops the rest: a
// panic's first lines are at the head, and a chatty process must not grow
// a test's memory without bound.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// BufferMax is how much a Buffer keeps.
const BufferMax = 8 << 20

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > BufferMax {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
