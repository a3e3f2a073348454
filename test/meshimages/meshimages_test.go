package meshimages

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseLdd(t *testing.T) {
	for _, tc := range []struct {
		name    string
		out     string
		want    []string
		wantErr string
	}{
		{
			name: "dynamic executable",
			out: "\tlinux-vdso.so.1 (0x00007ffd)\n" +
				"\tlibssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x00007f1)\n" +
				"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2)\n" +
				"\t/lib64/ld-linux-x86-64.so.2 (0x00007f3)\n",
			want: []string{"/lib/x86_64-linux-gnu/libssl.so.3", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"},
		},
		{name: "static", out: "\tstatically linked\n"},
		{
			name: "several files, a library shared",
			out: "/usr/bin/dash:\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)\n" +
				"/usr/sbin/xtables-nft-multi:\n\tlibxtables.so.12 => /lib/x86_64-linux-gnu/libxtables.so.12 (0x2)\n" +
				"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)\n",
			want: []string{"/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libxtables.so.12"},
		},
		{
			name:    "missing library",
			out:     "\tlibnftnl.so.11 => not found\n",
			wantErr: "libnftnl.so.11 => not found",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseLdd([]byte(tc.out))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestInitImageAppliesRules lays the fsm-sidecar-init image's files out as a
// root file system and runs the injector's kind of command in it, in a new
// network namespace: the image has everything iptables-restore (nft) needs.
func TestInitImageAppliesRules(t *testing.T) {
	// make e2e-node runs it again once the node suite has put iptables on
	// the host, where a skip would hide that it never ran.
	skip := t.Skipf
	if os.Getenv("FSM_REQUIRE_HOST_IPTABLES") != "" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("needs root (chroot, a network namespace)")
	}
	if _, err := os.Stat(xtablesMulti); err != nil {
		skip("no %s on this host (apt-get install iptables): %v", xtablesMulti, err)
	}
	files, err := initImageFiles(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, f := range files {
		b, err := os.ReadFile(f.Source)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(root, f.Path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, os.FileMode(f.Mode)); err != nil {
			t.Fatal(err)
		}
	}
	script := "iptables-restore --noflush <<EOF\n*nat\n:FSM_PROXY_INBOUND - [0:0]\n" +
		"-A PREROUTING -p tcp -j FSM_PROXY_INBOUND\n" +
		"-A FSM_PROXY_INBOUND -p tcp --match multiport --dports 9000,9001 -j RETURN\n" +
		"-A OUTPUT -p tcp -m owner --uid-owner 1500 -j RETURN\n" +
		"-A OUTPUT -p tcp -j REDIRECT --to-port 15001\nCOMMIT\nEOF\niptables-save -t nat\n"
	cmd := exec.Command("unshare", "--net", "/usr/sbin/chroot", root, "/bin/sh", "-c", script)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"} // the image's
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("running the rules in the image: %v\n%s", err, out)
	}
	for _, want := range []string{"--dports 9000,9001 -j RETURN", "--uid-owner 1500 -j RETURN", "-j REDIRECT --to-ports 15001"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("iptables-save in the image lacks %q:\n%s", want, out)
		}
	}
}

func TestPublished(t *testing.T) {
	const (
		sidecar = "docker.io/flomesh/pipy:1.5.12"
		repo    = "docker.io/flomesh/pipy-repo:1.5.12"
		init    = "docker.io/flomesh/fsm-sidecar-init:1.5.1"
		health  = "docker.io/flomesh/fsm-healthcheck:1.5.1"
	)
	for _, tc := range []struct {
		name      string
		env       map[string]string
		want      map[string]string
		wantErr   string
		wantBuild []string // of SidecarImage, RepoImage, InitImage, HealthcheckImage
		wantPipy  bool
	}{
		{
			name:      "nothing set: everything built",
			want:      map[string]string{},
			wantBuild: []string{SidecarImage, RepoImage, InitImage, HealthcheckImage},
			wantPipy:  true,
		},
		{
			name:      "blank is unset",
			env:       map[string]string{EnvSidecarImage: "  "},
			want:      map[string]string{},
			wantBuild: []string{SidecarImage, RepoImage, InitImage, HealthcheckImage},
			wantPipy:  true,
		},
		{
			name: "short Docker Hub names are completed for ctr",
			env:  map[string]string{EnvSidecarImage: "flomesh/pipy:1.5.12", EnvRepoImage: "flomesh/pipy-repo:1.5.12"},
			want: map[string]string{sidecar: sidecar, repo: repo},
			// Pipy is not compiled when neither of its images is built.
			wantBuild: []string{InitImage, HealthcheckImage},
		},
		{
			name: "a mirror is pulled and tagged as the pods' name; no tag means latest",
			env: map[string]string{
				EnvInitImage:        "mirror.example:5000/fsm/fsm-sidecar-init:1.5.1",
				EnvHealthcheckImage: "mirror.example:5000/fsm/fsm-healthcheck",
			},
			want: map[string]string{
				init:   "mirror.example:5000/fsm/fsm-sidecar-init:1.5.1",
				health: "mirror.example:5000/fsm/fsm-healthcheck:latest",
			},
			wantBuild: []string{SidecarImage, RepoImage},
			wantPipy:  true,
		},
		{
			name:      "only the sidecar pulled: Pipy still built for the repo",
			env:       map[string]string{EnvSidecarImage: "flomesh/pipy:1.5.12"},
			want:      map[string]string{sidecar: sidecar},
			wantBuild: []string{RepoImage, InitImage, HealthcheckImage},
			wantPipy:  true,
		},
		{
			name:      "a digest is kept",
			env:       map[string]string{EnvSidecarImage: "flomesh/pipy@sha256:" + strings.Repeat("a", 64)},
			want:      map[string]string{sidecar: "docker.io/flomesh/pipy@sha256:" + strings.Repeat("a", 64)},
			wantBuild: []string{RepoImage, InitImage, HealthcheckImage},
			wantPipy:  true,
		},
		{
			name:    "an invalid reference names the variable and the value",
			env:     map[string]string{EnvInitImage: "Flomesh/Init:1.5.1"},
			wantErr: `FSM_WEBHOOKS_INIT_IMAGE="Flomesh/Init:1.5.1": invalid reference format: repository name (Init) must be lowercase`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Published(func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("pulls %v, want %v", got, tc.want)
			}
			var build []string
			for _, img := range []string{SidecarImage, RepoImage, InitImage, HealthcheckImage} {
				if NeedsBuild(img, got) {
					build = append(build, img)
				}
			}
			if !slices.Equal(build, tc.wantBuild) {
				t.Errorf("built %v, want %v", build, tc.wantBuild)
			}
			if NeedsPipy(got) != tc.wantPipy {
				t.Errorf("NeedsPipy %v, want %v", NeedsPipy(got), tc.wantPipy)
			}
			if !NeedsBuild(AppImage, got) {
				t.Errorf("the test app %s must always be built", AppImage)
			}
		})
	}
}
