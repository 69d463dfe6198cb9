package testrig

import (
	"bytes"
	"sync"
)

// LogBuffer collects what a component logs from its goroutines (an slog handler's writer), for
// tests that assert on, or scan, the logs.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
