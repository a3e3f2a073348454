// Package images builds container images for the node harness (test/node)
// without a registry or a container engine: files from the host are packed
// into one layer appended to an empty base with go-containerregistry, and the
// image is written as a tarball that `ctr images import` loads.
//
// Nothing is pulled, so every image a test runs is built from source on the
// machine (Go binaries built with CGO_ENABLED=0 need no base image).
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// File is one regular file of an image.
type File struct {
	// Path is the absolute path in the image, e.g. /usr/local/bin/app.
	Path string
	// Source is the host file copied to Path.
	Source string
	// Mode holds the permission bits (0o755 for executables).
	Mode int64
}

// Spec describes an image.
type Spec struct {
	// Tag is the reference the image is stored under, as pods name it:
	// "localhost/fsm-node/pause:v1", "flomesh/fsm-webhooks:v0.1.0" (which
	// containerd stores as docker.io/flomesh/fsm-webhooks:v0.1.0).
	Tag   string
	Files []File
	// Dirs are extra directories to create (with their mode), e.g. /tmp.
	Dirs       map[string]int64
	Entrypoint []string
	Cmd        []string
	// User is the image's USER ("65532:65532"); empty means root.
	User string
	Env  []string
}

// Write builds spec and writes it to out as an image tarball (the docker
// archive format: `ctr images import`, `docker load` and `podman load` all
// read it).
func Write(spec Spec, out string) error {
	tag, err := name.NewTag(spec.Tag)
	if err != nil {
		return fmt.Errorf("image tag %q: %w", spec.Tag, err)
	}
	layerTar, err := layer(spec)
	if err != nil {
		return fmt.Errorf("image %s: %w", spec.Tag, err)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return fmt.Errorf("image %s: layer: %w", spec.Tag, err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return fmt.Errorf("image %s: appending layer: %w", spec.Tag, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("image %s: config: %w", spec.Tag, err)
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Config = v1.Config{
		Entrypoint: spec.Entrypoint,
		Cmd:        spec.Cmd,
		User:       spec.User,
		Env:        append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, spec.Env...),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return fmt.Errorf("image %s: setting config: %w", spec.Tag, err)
	}
	if err := tarball.WriteToFile(out, tag, img); err != nil {
		return fmt.Errorf("image %s: writing %s: %w", spec.Tag, out, err)
	}
	return nil
}

// entry is one member of a layer tarball.
type entry struct {
	name   string // relative to the root, no leading slash
	dir    bool
	mode   int64
	source string
}

// entries lists the members of spec's layer: every file, every directory
// asked for, and every parent directory of either (0755) so that unpacking
// never depends on the runtime creating them. Parents come before children.
func entries(spec Spec) ([]entry, error) {
	byName := map[string]entry{}
	addParents := func(p string) {
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			n := strings.TrimPrefix(d, "/")
			if _, ok := byName[n]; !ok {
				byName[n] = entry{name: n, dir: true, mode: 0o755}
			}
		}
	}
	for _, f := range spec.Files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			return nil, fmt.Errorf("file path %q: want a clean absolute path", f.Path)
		}
		n := strings.TrimPrefix(f.Path, "/")
		if _, dup := byName[n]; dup {
			return nil, fmt.Errorf("file path %q: listed twice", f.Path)
		}
		byName[n] = entry{name: n, mode: f.Mode, source: f.Source}
		addParents(f.Path)
	}
	for d, mode := range spec.Dirs {
		if !path.IsAbs(d) || path.Clean(d) != d || d == "/" {
			return nil, fmt.Errorf("directory %q: want a clean absolute path", d)
		}
		n := strings.TrimPrefix(d, "/")
		if e, ok := byName[n]; ok && !e.dir {
			return nil, fmt.Errorf("directory %q: also listed as a file", d)
		}
		byName[n] = entry{name: n, dir: true, mode: mode}
		addParents(d)
	}
	out := make([]entry, 0, len(byName))
	for _, e := range byName {
		out = append(out, e)
	}
	// Lexical order puts "a" before "a/b"; parents precede children.
	slices.SortFunc(out, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// layer is the uncompressed tar of spec's files. Times are zero so that the
// same inputs give the same layer digest.
func layer(spec Spec) ([]byte, error) {
	es, err := entries(spec)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		if e.dir {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: e.name + "/", Mode: e.mode, Format: tar.FormatPAX}); err != nil {
				return nil, err
			}
			continue
		}
		data, err := os.ReadFile(e.source)
		if err != nil {
			return nil, fmt.Errorf("file /%s: %w", e.name, err)
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: e.mode, Size: int64(len(data)), Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// GoBinary builds the main package pkg of the module in dir as a static
// linux binary at out: CGO_ENABLED=0 and -trimpath -ldflags "-s -w", as the
// repository's Dockerfile builds fsm-webhooks. The output of a failed build
// is in the error.
func GoBinary(ctx context.Context, dir, pkg, out string) error {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("building %s: the go command is not on PATH: %w", pkg, err)
	}
	cmd := exec.CommandContext(ctx, gobin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(goEnv(os.Environ()), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// goEnv drops the caller's settings that would change what go build makes
// (GOFLAGS=-race from a test run, cross-compilation targets, cgo).
func goEnv(environ []string) []string {
	drop := map[string]bool{"GOFLAGS": true, "GOOS": true, "GOARCH": true, "CGO_ENABLED": true}
	env := make([]string, 0, len(environ))
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			env = append(env, kv)
		}
	}
	return env
}
