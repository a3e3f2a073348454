package images

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestEntries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		spec    Spec
		want    []string // "name dir|file mode"
		wantErr string
	}{
		{
			name: "parents are created before their children",
			spec: Spec{Files: []File{{Path: "/usr/local/bin/app", Source: "x", Mode: 0o755}}},
			want: []string{"usr dir 755", "usr/local dir 755", "usr/local/bin dir 755", "usr/local/bin/app file 755"},
		},
		{
			name: "an explicit directory keeps its mode",
			spec: Spec{
				Files: []File{{Path: "/pause", Source: "x", Mode: 0o755}},
				Dirs:  map[string]int64{"/tmp": 0o1777},
			},
			want: []string{"pause file 755", "tmp dir 1777"},
		},
		{
			name:    "relative path",
			spec:    Spec{Files: []File{{Path: "bin/app", Source: "x", Mode: 0o755}}},
			wantErr: `file path "bin/app": want a clean absolute path`,
		},
		{
			name:    "unclean path",
			spec:    Spec{Files: []File{{Path: "/bin/../app", Source: "x", Mode: 0o755}}},
			wantErr: `file path "/bin/../app": want a clean absolute path`,
		},
		{
			name:    "file listed twice",
			spec:    Spec{Files: []File{{Path: "/app", Source: "x"}, {Path: "/app", Source: "y"}}},
			wantErr: `file path "/app": listed twice`,
		},
		{
			name: "directory that is also a file",
			spec: Spec{
				Files: []File{{Path: "/app", Source: "x"}},
				Dirs:  map[string]int64{"/app": 0o755},
			},
			wantErr: `directory "/app": also listed as a file`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es, err := entries(tc.spec)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("entries error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := make([]string, 0, len(es))
			for _, e := range es {
				kind := "file"
				if e.dir {
					kind = "dir"
				}
				got = append(got, fmt.Sprintf("%s %s %o", e.name, kind, e.mode))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("entries =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestWrite writes an image and reads it back as `ctr images import` would:
// the tag, the entrypoint and user, and the file in the layer.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "app")
	if err := os.WriteFile(src, []byte("#!/bin/true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "image.tar")
	spec := Spec{
		Tag:        "localhost/fsm-node/app:v1",
		Files:      []File{{Path: "/usr/local/bin/app", Source: src, Mode: 0o755}},
		Entrypoint: []string{"/usr/local/bin/app"},
		Cmd:        []string{"serve"},
		User:       "65532:65532",
	}
	if err := Write(spec, out); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(spec.Tag)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("reading back %s as %s: %v", out, spec.Tag, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || !slices.Equal(cf.Config.Entrypoint, spec.Entrypoint) ||
		!slices.Equal(cf.Config.Cmd, spec.Cmd) || cf.Config.User != spec.User {
		t.Errorf("config = os %q entrypoint %q cmd %q user %q, want linux %q %q %q",
			cf.OS, cf.Config.Entrypoint, cf.Config.Cmd, cf.Config.User, spec.Entrypoint, spec.Cmd, spec.User)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatal("layer has no usr/local/bin/app")
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != "usr/local/bin/app" {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != "#!/bin/true\n" || h.Mode != 0o755 {
			t.Errorf("usr/local/bin/app = %q mode %o, want the source file with mode 755", b, h.Mode)
		}
		return
	}
}
