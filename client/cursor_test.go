package client_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/eventrelay/eventrelay/client"
)

func TestFileCursorStore(t *testing.T) {
	dir := t.TempDir()
	s := client.FileCursorStore{Path: filepath.Join(dir, "cursor")}
	ctx := context.Background()
	if c, err := s.Load(ctx); c != "" || err != nil {
		t.Fatalf("Load of a missing file = %q, %v; want no cursor", c, err)
	}
	for _, c := range []string{"one", "two"} {
		if err := s.Save(ctx, c); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(s.Path); string(b) != c+"\n" {
			t.Errorf("file %q, want %q", b, c+"\n")
		}
		if got, err := s.Load(ctx); got != c || err != nil {
			t.Errorf("Load = %q, %v; want %q", got, err, c)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	missing := client.FileCursorStore{Path: filepath.Join(dir, "missing", "cursor")}
	if err := missing.Save(ctx, "x"); !os.IsNotExist(err) {
		t.Errorf("Save into a missing directory: %v", err)
	}
}
