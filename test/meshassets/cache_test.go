package meshassets

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeAsset "builds" a file holding version; check accepts exactly that.
func fakeAsset(version string, builds *int, fail bool) asset {
	return asset{
		name: "fake", version: version, estimate: "instant",
		check: func(_ context.Context, path string) error {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if string(b) != version {
				return errors.New("wrong version " + string(b))
			}
			return nil
		},
		build: func(_ context.Context, out string, log io.Writer) error {
			*builds++
			_, _ = io.WriteString(log, "building\n")
			if fail {
				_ = os.WriteFile(out, []byte("partial"), 0o644)
				return errors.New("compiler said no")
			}
			return os.WriteFile(out, []byte(version), 0o755)
		},
	}
}

func TestEnsure(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	ctx := context.Background()
	var builds int
	var progress bytes.Buffer
	bin, err := ensure(ctx, fakeAsset("v1", &builds, false), &progress)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(os.Getenv("XDG_CACHE_HOME"), "fsm-webhooks", "assets", "fake-v1", "fake"); bin != want {
		t.Errorf("path %s, want %s", bin, want)
	}
	if !strings.Contains(progress.String(), "assets: building fake v1") || !strings.Contains(progress.String(), "assets: built fake v1") {
		t.Errorf("cold build progress %q, want a start and an end line", progress.String())
	}
	progress.Reset()
	if _, err := ensure(ctx, fakeAsset("v1", &builds, false), &progress); err != nil {
		t.Fatal(err)
	}
	if builds != 1 || progress.Len() != 0 {
		t.Errorf("warm cache: %d builds, progress %q; want 1 build and no progress", builds, progress.String())
	}
	// A broken binary (here: another version's content) is rebuilt.
	if err := os.WriteFile(bin, []byte("v0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ensure(ctx, fakeAsset("v1", &builds, false), nil); err != nil || builds != 2 {
		t.Errorf("broken binary: err %v, %d builds; want a rebuild", err, builds)
	}
}

func TestEnsureFailureLeavesNoBinary(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	var builds int
	_, err := ensure(context.Background(), fakeAsset("v2", &builds, true), nil)
	if err == nil || !strings.Contains(err.Error(), "compiler said no") || !strings.Contains(err.Error(), "fake.build.log") {
		t.Fatalf("err = %v, want the build error and the log path", err)
	}
	dir := filepath.Join(os.Getenv("XDG_CACHE_HOME"), "fsm-webhooks", "assets", "fake-v2")
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != ".lock,fake.build.log" {
		t.Errorf("after a failed build %s holds %v, want only .lock and the log", dir, names)
	}
}
