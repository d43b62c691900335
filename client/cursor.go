package client

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// CursorStore keeps a tail subscription's position across process restarts: Receive loads it
// at start and saves the cursor of every message once it and every message before it were
// handled (handlers returned nil), so a restart neither skips nor repeats an event.
type CursorStore interface {
	// Load returns the saved cursor, "" when none was saved.
	Load(ctx context.Context) (string, error)
	// Save records cursor.
	Save(ctx context.Context, cursor string) error
}

// FileCursorStore keeps the cursor in a file, replaced atomically on every Save (a crash
// leaves the old or the new cursor, never a mix).
type FileCursorStore struct {
	Path string
}

// Load reads the file; a missing file is no cursor.
func (f FileCursorStore) Load(context.Context) (string, error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return strings.TrimSpace(string(b)), err
}

// Save writes cursor to a temporary file, syncs it and renames it over the file.
func (f FileCursorStore) Save(_ context.Context, cursor string) error {
	tmp, err := os.CreateTemp(filepath.Dir(f.Path), "."+filepath.Base(f.Path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = tmp.WriteString(cursor + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), f.Path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
	}
	return err
}

// MemoryCursorStore keeps the cursor in memory (for tests, or resuming within one process).
type MemoryCursorStore struct {
	mu     sync.Mutex
	cursor string
}

func (m *MemoryCursorStore) Load(context.Context) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cursor, nil
}

func (m *MemoryCursorStore) Save(_ context.Context, cursor string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cursor = cursor
	return nil
}
