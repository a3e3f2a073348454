package kubeassets

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKube builds (or reuses) the real binaries from the per-user cache and
// checks they are the expected releases and that a second call reuses them.
func TestKube(t *testing.T) {
	t.Setenv(envKubebuilderAssets, "") // exercise the cache, not an override
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	dir, err := Kube(ctx, testWriter{t})
	if err != nil {
		t.Fatalf("Kube: %v", err)
	}
	root, err := CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "kube-"+KubeVersion()+"-etcd-"+EtcdVersion); dir != want {
		t.Errorf("Kube dir = %s, want %s", dir, want)
	}
	for bin, want := range map[string]string{
		"kube-apiserver": "Kubernetes " + KubeVersion() + "\n",
		"etcd":           "etcd Version: " + strings.TrimPrefix(EtcdVersion, "v") + "\n",
	} {
		out, err := exec.CommandContext(ctx, filepath.Join(dir, bin), "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("%s --version: %v\n%s", bin, err, out)
		}
		if !strings.Contains(string(out), want) {
			t.Errorf("%s --version = %q, want it to contain %q", bin, out, want)
		}
	}

	before := fileIDs(t, dir, "kube-apiserver", "etcd")
	var progress bytes.Buffer
	again, err := Kube(ctx, &progress)
	if err != nil {
		t.Fatalf("second Kube: %v", err)
	}
	if again != dir {
		t.Errorf("second Kube dir = %s, want %s", again, dir)
	}
	if after := fileIDs(t, dir, "kube-apiserver", "etcd"); !slices.Equal(before, after) {
		t.Errorf("second Kube replaced the binaries: before %v, after %v", before, after)
	}
	if progress.Len() != 0 {
		t.Errorf("second Kube reported progress, want none for a warm cache:\n%s", progress.String())
	}
}

// fileID identifies one version of a file: a rebuild renames a new inode into
// place and changes the modification time.
type fileID struct {
	ino   uint64
	mtime time.Time
}

func fileIDs(t *testing.T, dir string, names ...string) []fileID {
	t.Helper()
	ids := make([]fileID, 0, len(names))
	for _, n := range names {
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			t.Fatalf("stat %s: no inode information", n)
		}
		ids = append(ids, fileID{ino: st.Ino, mtime: fi.ModTime()})
	}
	return ids
}

func TestKubeEnvOverride(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]os.FileMode
		wantErr string // empty: success
	}{
		{
			name:  "both present",
			files: map[string]os.FileMode{"kube-apiserver": 0o755, "etcd": 0o755},
		},
		{
			name:    "empty dir",
			wantErr: "missing",
		},
		{
			name:    "etcd missing",
			files:   map[string]os.FileMode{"kube-apiserver": 0o755},
			wantErr: "etcd",
		},
		{
			name:    "apiserver not executable",
			files:   map[string]os.FileMode{"kube-apiserver": 0o644, "etcd": 0o755},
			wantErr: "kube-apiserver is not executable",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, mode := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv(envKubebuilderAssets, dir)
			got, err := Kube(context.Background(), nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Kube: %v", err)
				}
				if got != dir {
					t.Errorf("Kube = %s, want %s", got, dir)
				}
				return
			}
			if err == nil {
				t.Fatalf("Kube = %s, want error containing %q", got, tc.wantErr)
			}
			for _, want := range []string{envKubebuilderAssets, dir, tc.wantErr} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestVaultEnvOverride(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "vault")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envVaultBinary, exe)
	if got, err := Vault(context.Background(), nil); err != nil || got != exe {
		t.Errorf("Vault = %q, %v; want %q, nil", got, err, exe)
	}

	missing := filepath.Join(dir, "nope")
	t.Setenv(envVaultBinary, missing)
	_, err := Vault(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), envVaultBinary) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Vault with missing %s: error %v, want it to name the variable and the file", envVaultBinary, err)
	}
}

func TestKubeVersionFromAPI(t *testing.T) {
	tests := []struct {
		in     string
		want   string
		wantOK bool
	}{
		{"v0.37.2", "v1.37.2", true},
		{"v0.36.0", "v1.36.0", true},
		{"v0.38.0-rc.1", "v1.38.0-rc.1", true},
		{"v0.0.0-20260101000000-abcdefabcdef", "", false}, // pseudo-version
		{"v0.37.3-0.20260101000000-abcdefabcdef", "", false},
		{"v1.37.2", "", false},
		{"(devel)", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		got, ok := kubeVersionFromAPI(tc.in)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("kubeVersionFromAPI(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.wantOK)
		}
	}
}

// This test binary is built with the repo's go.mod, so the version comes from
// its k8s.io/api requirement.
func TestKubeVersionFromBuildInfo(t *testing.T) {
	if got := KubeVersion(); got != "v1.37.2" {
		t.Errorf("KubeVersion() = %s, want v1.37.2 (k8s.io/api v0.37.2 in go.mod)", got)
	}
}

func TestGoEnv(t *testing.T) {
	in := []string{
		"PATH=/usr/bin", "GOFLAGS=-race -count=1", "GOWORK=/x/go.work", "GOOS=windows",
		"GOARCH=arm64", "GOPROXY=https://proxy.example", "HOME=/root", "GOFLAGSX=kept",
	}
	got := goEnv(in)
	want := []string{
		"PATH=/usr/bin", "GOPROXY=https://proxy.example", "HOME=/root", "GOFLAGSX=kept",
		"GOFLAGS=-mod=mod", "GOWORK=off", "GO111MODULE=on",
		"GOOS=" + runtime.GOOS, "GOARCH=" + runtime.GOARCH,
	}
	if !slices.Equal(got, want) {
		t.Errorf("goEnv = %q, want %q", got, want)
	}
}

func TestLockIsExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".lock")
	unlock, err := Lock(context.Background(), path, nil)
	if err != nil {
		t.Fatalf("first lock: %v", err)
	}

	// A second holder (own open file description, as in another process)
	// must wait; give up after a short deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var progress bytes.Buffer
	if _, err := Lock(ctx, path, &progress); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held: err = %v, want deadline exceeded", err)
	}
	if !strings.Contains(progress.String(), "waiting for another process") {
		t.Errorf("waiting lock did not report progress, got %q", progress.String())
	}

	unlock()
	unlock2, err := Lock(context.Background(), path, nil)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	unlock2()
}

// gosumcheck is the small binary the build tests build (its module is
// already in the module cache via go.mod); each test sets how it is linked
// and checked.
func gosumcheck() binary {
	return binary{
		name:     "gosumcheck",
		module:   "fsm-webhooks-assets/test",
		require:  "golang.org/x/mod@v0.41.0",
		main:     "golang.org/x/mod/gosumcheck",
		estimate: "seconds",
	}
}

// A failing build reports the go command and its log, and leaves nothing in
// the asset directory that could be mistaken for a binary.
func TestBuildFailureLeavesNoBinary(t *testing.T) {
	dir := t.TempDir()
	b := gosumcheck()
	b.ldflags = "-X" // invalid: the link step fails
	b.versionArgs, b.versionWant = []string{"-h"}, "usage"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	err := ensure(ctx, progressWriter(testWriter{t}), dir, []binary{b})
	if err == nil {
		t.Fatal("ensure succeeded with invalid ldflags")
	}
	t.Logf("ensure: %v", err)
	logPath := filepath.Join(dir, "gosumcheck.build.log")
	for _, want := range []string{"building gosumcheck", "go build", "-X flag", logPath} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	if want := []string{".lock", "gosumcheck.build.log"}; !slices.Equal(names, want) {
		t.Errorf("asset dir after failed build holds %q, want %q", names, want)
	}
}

// A binary that is present but does not run is rebuilt and atomically
// replaced; a working one is left alone.
func TestEnsureRebuildsBrokenBinary(t *testing.T) {
	dir := t.TempDir()
	b := gosumcheck()
	b.ldflags = "-s -w"
	b.versionArgs = []string{os.DevNull} // checking an empty go.sum succeeds silently
	broken := filepath.Join(dir, b.name)
	if err := os.WriteFile(broken, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if ready(context.Background(), dir, b) == nil {
		t.Fatal("broken binary reported ready")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := ensure(ctx, progressWriter(testWriter{t}), dir, []binary{b}); err != nil {
		t.Fatalf("ensure: %v", err)
	}
	if err := ready(ctx, dir, b); err != nil {
		t.Fatalf("rebuilt binary not ready: %v", err)
	}
	built := fileIDs(t, dir, b.name)

	var progress bytes.Buffer
	if err := ensure(ctx, &progress, dir, []binary{b}); err != nil {
		t.Fatalf("second ensure: %v", err)
	}
	if again := fileIDs(t, dir, b.name); !slices.Equal(built, again) {
		t.Errorf("second ensure replaced a working binary: %v -> %v", built, again)
	}
	if progress.Len() != 0 {
		t.Errorf("second ensure reported progress %q, want none", progress.String())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
