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

	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/injector/iptables"
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

// initImageRoot lays the fsm-sidecar-init image's files out as a root file
// system, or skips where the host cannot run it (make e2e-node runs these
// tests again once the node suite has put iptables on the host, where a skip
// would hide that they never ran).
func initImageRoot(t *testing.T) string {
	t.Helper()
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
	return root
}

// runInImage runs a shell script in the image's root file system, in a new
// network namespace, as the fsm-init container runs its command.
func runInImage(root, script string) (string, error) {
	cmd := exec.Command("unshare", "--net", "/usr/sbin/chroot", root, "/bin/sh", "-c", script)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"} // the image's
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestInitImageAppliesRules runs the injector's kind of command in the
// fsm-sidecar-init image: it has everything iptables-restore (nft) needs.
func TestInitImageAppliesRules(t *testing.T) {
	root := initImageRoot(t)
	script := "iptables-restore --noflush <<EOF\n*nat\n:FSM_PROXY_INBOUND - [0:0]\n" +
		"-A PREROUTING -p tcp -j FSM_PROXY_INBOUND\n" +
		"-A FSM_PROXY_INBOUND -p tcp --match multiport --dports 9000,9001 -j RETURN\n" +
		"-A OUTPUT -p tcp -m owner --uid-owner 1500 -j RETURN\n" +
		"-A OUTPUT -p tcp -j REDIRECT --to-port 15001\nCOMMIT\nEOF\niptables-save -t nat\n"
	out, err := runInImage(root, script)
	if err != nil {
		t.Fatalf("running the rules in the image: %v\n%s", err, out)
	}
	for _, want := range []string{"--dports 9000,9001 -j RETURN", "--uid-owner 1500 -j RETURN", "-j REDIRECT --to-ports 15001"} {
		if !strings.Contains(out, want) {
			t.Errorf("iptables-save in the image lacks %q:\n%s", want, out)
		}
	}
}

// TestIPTablesReadsRanges holds the injector's reading of a stored
// MeshConfig's outboundIPRangeExclusionList to what the real iptables of
// the init image does with the same value written as FSM v1.5.1 writes it
// (unparsed, pkg/injector/iptables.go: "-A FSM_PROXY_OUTBOUND -d %s -j
// RETURN"). Where iptables takes the value, the injector must apply the
// MeshConfig and its rules must leave the same rule in the pod; where
// iptables refuses it (every FSM pod of the mesh failed its init
// container), the injector must refuse the MeshConfig. The injector refuses
// only the values listed with a reason where iptables takes them.
func TestIPTablesReadsRanges(t *testing.T) {
	root := initImageRoot(t)
	// iptables reads its numbers with strtoul base 0: a zero-padded one is
	// octal, so what these mean to iptables is not what they look like.
	refusedOnPurpose := map[string]string{
		"10.0.0.0/010":         "iptables reads /8 (octal), net.ParseCIDR /10",
		"010.0.0.1/32":         "iptables reads 8.0.0.1 (octal)",
		"10.0.0.0/255.0.255.0": "a non-contiguous mask: no CIDR states it",
		"::ffff:10.0.0.1":      "iptables reads it as a host name, through the resolver",
	}
	// IPv6 traffic is never intercepted, so an IPv6 exclusion is true
	// already: the injector accepts it and writes no rule, where FSM's
	// IPv4 rule set failed the init container (docs: a fix).
	appliedOnPurpose := map[string]bool{"fd00::/8": true}
	base, err := savedRanges(root, strings.TrimPrefix(iptables.Rules(iptables.Config{}), "*nat\n"))
	if err != nil {
		t.Fatalf("the injector's rules without exclusions: %v", err)
	}
	for _, v := range []string{
		"10.0.0.0/8", "10.1.2.3/8", "169.254.169.254/32", "0.0.0.0/0",
		"169.254.169.254", "10.0.0.0/255.0.0.0", "192.168.7.0/255.255.255.128", " 172.16.0.0/12 ",
		"10.0.0.0/8,10.1.0.0/16,192.168.1.1", "10.0.0.0/8,10.1.0.0/255.255.0.0",
		"10.0.0.0/08", "10.0.0.0/33", "10.0.0.0/ 8", "10.0.0.0/8,", "256.0.0.0/8", "fd00::1", "fd00::/8",
		"10.0.0.0/010", "010.0.0.1/32", "10.0.0.0/255.0.255.0", "::ffff:10.0.0.1",
	} {
		t.Run(strings.TrimSpace(v), func(t *testing.T) {
			fsm, fsmErr := savedRanges(root, fmt.Sprintf("-A FSM_PROXY_OUTBOUND -d %s -j RETURN\n", v))

			mc := &configv1alpha3.MeshConfig{}
			mc.Spec.Traffic.OutboundIPRangeExclusionList = []string{v}
			set := injector.SettingsFromMeshConfig(mc)
			if err := set.Validate(); err != nil {
				switch why, ok := refusedOnPurpose[v]; {
				case fsmErr != nil:
					// Both refuse.
				case ok:
					t.Logf("iptables takes it as %q; refused on purpose: %s", fsm, why)
				default:
					t.Errorf("the injector refuses a MeshConfig with %q (%v), which iptables reads as %q", v, err, fsm)
				}
				return
			}
			if fsmErr != nil && !appliedOnPurpose[v] {
				t.Fatalf("the injector applies a MeshConfig with %q, which iptables refuses: %v", v, fsmErr)
			}
			rules := iptables.Rules(iptables.Config{OutboundIPRangeExclusions: set.OutboundIPRangeExclusionList})
			ours, err := savedRanges(root, strings.TrimPrefix(rules, "*nat\n"))
			if err != nil {
				t.Fatalf("the injector's rules for %q: %v", v, err)
			}
			ours = slices.DeleteFunc(ours, func(r string) bool { return slices.Contains(base, r) })
			if appliedOnPurpose[v] {
				if len(ours) != 0 {
					t.Errorf("for %q the injector's rules add %q", v, ours)
				}
				return
			}
			if !slices.Equal(ours, fsm) {
				t.Errorf("for %q iptables keeps %q from the injector's rules, %q from FSM's", v, ours, fsm)
			}
		})
	}
}

// savedRanges applies rules (without the *nat line, with their COMMIT, or
// with a trailing one added) in a fresh network namespace of the init image
// and returns the "-d <range> -j RETURN" rules of FSM_PROXY_OUTBOUND that
// iptables-save shows.
func savedRanges(root, rules string) ([]string, error) {
	if !strings.Contains(rules, "COMMIT\n") {
		rules = ":FSM_PROXY_OUTBOUND - [0:0]\n" + rules + "COMMIT\n"
	}
	out, err := runInImage(root, "set -e\niptables-restore --noflush <<EOF\n*nat\n"+rules+"EOF\niptables-save -t nat\n")
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	var got []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "-A FSM_PROXY_OUTBOUND -d ") && strings.HasSuffix(line, " -j RETURN") {
			got = append(got, line)
		}
	}
	return got, nil
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
