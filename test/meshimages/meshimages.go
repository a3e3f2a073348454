// Package meshimages builds the images a meshed pod runs on the node suite
// (test/node), under the names the injector uses by default, so that pods it
// mutates start without a registry:
//
//	flomesh/pipy:1.5.12               the sidecar: Pipy built by test/meshassets plus
//	                                  its Debian 12 runtime libraries, and the
//	                                  hooks the injector names (wait-pipy, gkill)
//	flomesh/pipy-repo:1.5.12          the same Pipy started with no script: a
//	                                  codebase repository on port 6060
//	flomesh/fsm-sidecar-init:1.5.1    Debian's dash as /bin/sh and iptables
//	                                  (nft) with their libraries and extensions
//	flomesh/fsm-healthcheck:1.5.1     /fsm-healthcheck, no entrypoint (as FSM's)
//	AppImage                          meshtool app: HTTP, HTTPS, TCP, gRPC health
//
// Where a registry is reachable, FSM_WEBHOOKS_PIPY_IMAGE,
// FSM_WEBHOOKS_PIPY_REPO_IMAGE, FSM_WEBHOOKS_INIT_IMAGE and
// FSM_WEBHOOKS_HEALTHCHECK_IMAGE replace the first four with published images
// (published.go); the node harness pulls those instead.
//
// Dynamic binaries are copied from the host with every library ldd lists, at
// the paths ldd prints, so the host must be the Debian release the images
// claim (Debian 12 on the development machines and CI).
package meshimages

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/flomesh-io/fsm-webhooks/test/images"
	"github.com/flomesh-io/fsm-webhooks/test/meshassets"
)

// Image names, as the injector's defaults and FSM's chart name them.
const (
	SidecarImage     = "flomesh/pipy:" + meshassets.PipyVersion
	RepoImage        = "flomesh/pipy-repo:" + meshassets.PipyVersion
	InitImage        = "flomesh/fsm-sidecar-init:1.5.1"
	HealthcheckImage = "flomesh/fsm-healthcheck:1.5.1"
	// AppImage runs `meshtool app` (see meshtool's doc).
	AppImage = "localhost/fsm-node/meshapp:v1"
	// RepoPort is where the repo image listens (FSM's repoServer.port).
	RepoPort = 6060
)

// Specs returns the specs of every image above that pulls (Published's
// result) does not replace. pipyBin is a Pipy binary (meshassets.Pipy),
// needed only when NeedsPipy(pulls); work is a scratch directory for the
// built meshtool.
func Specs(ctx context.Context, repoRoot, pipyBin, work string, pulls map[string]string) ([]images.Spec, error) {
	tool := filepath.Join(work, "meshtool")
	if err := images.GoBinary(ctx, repoRoot, "./test/meshimages/meshtool", tool); err != nil {
		return nil, fmt.Errorf("meshimages: %w", err)
	}
	tmp := map[string]int64{"/tmp": 0o1777}
	var specs []images.Spec
	if NeedsPipy(pulls) {
		if pipyBin == "" {
			return nil, fmt.Errorf("meshimages: %s or %s is built here but no Pipy binary was given", SidecarImage, RepoImage)
		}
		pipyFiles, err := withLibraries(ctx, map[string]string{"/usr/local/bin/pipy": pipyBin})
		if err != nil {
			return nil, err
		}
		sidecarFiles := append(slices.Clone(pipyFiles),
			images.File{Path: "/usr/local/bin/wait-pipy", Source: tool, Mode: 0o755},
			images.File{Path: "/usr/local/bin/gkill", Source: tool, Mode: 0o755})
		specs = append(specs,
			// The injector's args begin with "pipy": no entrypoint, PATH finds it.
			images.Spec{Tag: SidecarImage, Files: sidecarFiles, Dirs: tmp},
			images.Spec{Tag: RepoImage, Files: pipyFiles, Dirs: tmp,
				Entrypoint: []string{"/usr/local/bin/pipy"}, Cmd: []string{fmt.Sprintf("--admin-port=%d", RepoPort)}})
	}
	if NeedsBuild(InitImage, pulls) {
		initFiles, err := initImageFiles(ctx)
		if err != nil {
			return nil, err
		}
		// The injector runs `/bin/sh -c "iptables-restore --noflush <<EOF"`.
		specs = append(specs, images.Spec{Tag: InitImage, Files: initFiles, Dirs: map[string]int64{"/tmp": 0o1777, "/run": 0o755}})
	}
	if NeedsBuild(HealthcheckImage, pulls) {
		specs = append(specs, images.Spec{Tag: HealthcheckImage, Files: []images.File{{Path: "/fsm-healthcheck", Source: tool, Mode: 0o755}}})
	}
	// The app is the test's own: never pulled.
	specs = append(specs, images.Spec{Tag: AppImage, Files: []images.File{{Path: "/meshtool", Source: tool, Mode: 0o755}},
		Entrypoint: []string{"/meshtool"}, Cmd: []string{"app"}})
	// Both Pipy images are made when either is still built: drop the one
	// pulled instead.
	return slices.DeleteFunc(specs, func(s images.Spec) bool { return !NeedsBuild(s.Tag, pulls) }), nil
}

// xtablesMulti is Debian's iptables-nft (the default alternative of
// Debian 12): one binary that acts as the name it is called by.
const xtablesMulti = "/usr/sbin/xtables-nft-multi"

const xtablesDir = "/usr/lib/x86_64-linux-gnu/xtables"

var xtablesExtensions = []string{
	"libxt_standard", "libxt_tcp", "libxt_udp", "libxt_multiport", "libxt_owner",
	"libxt_REDIRECT", "libxt_DNAT", "libxt_comment", "libxt_mark",
}

func initImageFiles(ctx context.Context) ([]images.File, error) {
	bins := map[string]string{"/bin/sh": "/usr/bin/dash"}
	for _, name := range []string{"iptables", "iptables-restore", "iptables-save", "ip6tables", "ip6tables-restore", "ip6tables-save"} {
		bins["/usr/bin/"+name] = xtablesMulti
	}
	// Matches and targets are loaded from the xtables directory at run
	// time: those the injector's rules use (-p tcp, multiport, owner,
	// REDIRECT, DNAT, RETURN).
	for _, ext := range xtablesExtensions {
		p := filepath.Join(xtablesDir, ext+".so")
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("meshimages: iptables extension %s (apt-get install iptables): %w", ext, err)
		}
		bins[p] = p
	}
	files, err := withLibraries(ctx, bins)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat("/etc/protocols"); err == nil {
		files = append(files, images.File{Path: "/etc/protocols", Source: "/etc/protocols", Mode: 0o644})
	}
	return files, nil
}

// withLibraries returns files (image path → host path) plus every shared
// library ldd lists for them, each at the path ldd prints and with the
// content of the file it resolves to. One ldd call covers all the files: it
// is slow on a busy machine.
func withLibraries(ctx context.Context, files map[string]string) ([]images.File, error) {
	byPath := map[string]images.File{}
	var sources []string
	for dst, src := range files {
		byPath[dst] = images.File{Path: dst, Source: src, Mode: 0o755}
		if !slices.Contains(sources, src) {
			sources = append(sources, src)
		}
	}
	slices.Sort(sources)
	out, err := exec.CommandContext(ctx, "ldd", sources...).CombinedOutput()
	if err != nil && !bytes.Contains(out, []byte("not a dynamic executable")) {
		return nil, fmt.Errorf("meshimages: ldd %s: %w: %s", strings.Join(sources, " "), err, out)
	}
	libs, err := parseLdd(out)
	if err != nil {
		return nil, fmt.Errorf("meshimages: ldd %s: %w", strings.Join(sources, " "), err)
	}
	for _, l := range libs {
		if _, ok := byPath[l]; ok {
			continue
		}
		real, err := filepath.EvalSymlinks(l)
		if err != nil {
			return nil, fmt.Errorf("meshimages: library %s: %w", l, err)
		}
		byPath[l] = images.File{Path: l, Source: real, Mode: 0o755}
	}
	list := make([]images.File, 0, len(byPath))
	for _, f := range byPath {
		list = append(list, f)
	}
	slices.SortFunc(list, func(a, b images.File) int { return strings.Compare(a.Path, b.Path) })
	return list, nil
}

// parseLdd extracts the library paths from ldd's output:
//
//	linux-vdso.so.1 (0x...)                          (no file: skipped)
//	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)
//	/lib64/ld-linux-x86-64.so.2 (0x...)
//
// With several files ldd heads each one's list with "path:"; a library
// listed twice is returned once.
func parseLdd(out []byte) ([]string, error) {
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line == "statically linked" || line == "not a dynamic executable" || strings.HasSuffix(line, ":") {
			continue
		}
		if strings.Contains(line, "=> not found") {
			return nil, fmt.Errorf("missing library: %s", line)
		}
		if _, after, ok := strings.Cut(line, "=> "); ok {
			line = after
		}
		p, _, _ := strings.Cut(line, " ")
		if filepath.IsAbs(p) && !slices.Contains(libs, p) {
			libs = append(libs, p)
		}
	}
	return libs, sc.Err()
}
