package node

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// debianPackages are what the node needs from Debian 12: containerd 1.6 and
// runc, the CNI plugins (bridge, host-local, loopback, portmap) and the
// iptables commands the kubelet and kube-proxy run.
var debianPackages = []string{"containerd", "containernetworking-plugins", "iptables"}

// hostCommands are the files that show the packages are installed.
var hostCommands = []string{
	"/usr/bin/containerd", "/usr/bin/ctr", "/usr/sbin/runc",
	cniBinDir + "/bridge", cniBinDir + "/host-local", cniBinDir + "/loopback", cniBinDir + "/portmap",
	"/usr/sbin/iptables", "/usr/sbin/iptables-save", "/usr/sbin/iptables-restore",
	"/usr/sbin/ip6tables-save", "/usr/sbin/ip6tables-restore",
}

const cniBinDir = "/usr/lib/cni"

// cannotRun says why this machine cannot run containers at all, or "" when it
// can. Only these reasons skip the node tests.
func cannotRun() string {
	if os.Geteuid() != 0 {
		return "node: skipped: running a kubelet and containerd needs root (uid 0), this is uid " + fmt.Sprint(os.Geteuid())
	}
	for _, c := range []string{"memory", "cpu", "pids"} {
		if _, err := os.Stat(filepath.Join(cgroupRoot, c)); err == nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
			break // cgroup v2: one hierarchy
		}
		return "node: skipped: no cgroup " + c + " controller under " + cgroupRoot
	}
	return ""
}

const cgroupRoot = "/sys/fs/cgroup"

var installOnce struct {
	sync.Mutex
	done bool
}

// EnsureHostPackages installs what Start needs from Debian, as Start does:
// for callers that take host files (iptables for fsm-init's image) before
// a node starts.
func EnsureHostPackages(ctx context.Context, progress io.Writer) error {
	return ensurePackages(ctx, progress)
}

// ensurePackages installs the Debian packages the node needs when any of
// their files is missing: `apt-get update` once, then `apt-get install`.
// CI runs on a fresh machine as root; a developer machine usually has them.
func ensurePackages(ctx context.Context, progress io.Writer) error {
	installOnce.Lock()
	defer installOnce.Unlock()
	if installOnce.done {
		return nil
	}
	var missing []string
	for _, f := range hostCommands {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) == 0 {
		installOnce.done = true
		return nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("node: missing %s and no apt-get to install %s: install them by hand",
			strings.Join(missing, ", "), strings.Join(debianPackages, " "))
	}
	fmt.Fprintf(progress, "node: installing %s (missing %s)\n", strings.Join(debianPackages, " "), strings.Join(missing, ", "))
	start := time.Now()
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{
		{"update"},
		append([]string{"install", "-y", "--no-install-recommends"}, debianPackages...),
	} {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("node: apt-get %s: %w\n%s", strings.Join(args, " "), err, lastLines(out, 20))
		}
		fmt.Fprintf(progress, "node: apt-get %s done (%s elapsed)\n", args[0], time.Since(start).Round(time.Second))
	}
	for _, f := range hostCommands {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("node: after installing %s: %w", strings.Join(debianPackages, " "), err)
		}
	}
	installOnce.done = true
	return nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// hostLock serialises node harnesses on the machine: the kubelet and
// containerd 1.6 write fixed host paths (/var/lib/kubelet, /run/containerd)
// whatever their flags say, so there is one node per machine at a time.
func hostLock(ctx context.Context, progress io.Writer) (unlock func(), err error) {
	const path = "/run/lock/fsm-webhooks-node.lock"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("node: opening %s: %w", path, err)
	}
	start := time.Now()
	for noted := false; ; {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("node: locking %s: %w", path, err)
		}
		if !noted {
			fmt.Fprintf(progress, "node: waiting for another node harness on this machine (lock %s)\n", path)
			noted = true
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("node: another node harness held %s for %s: %w", path, time.Since(start).Round(time.Second), ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// sysctls are the kernel settings the node changes: the kubelet sets the
// vm/kernel ones (protectKernelDefaults is false), the bridge plugin turns on
// forwarding, kube-proxy may touch conntrack and route_localnet. Their values
// are saved before anything starts and written back at teardown.
var sysctls = []string{
	"net/ipv4/ip_forward",
	"net/ipv6/conf/all/forwarding",
	"net/ipv4/conf/all/route_localnet",
	"net/bridge/bridge-nf-call-iptables",
	"net/bridge/bridge-nf-call-ip6tables",
	"net/netfilter/nf_conntrack_max",
	"net/netfilter/nf_conntrack_tcp_timeout_established",
	"net/netfilter/nf_conntrack_tcp_timeout_close_wait",
	"vm/overcommit_memory",
	"vm/panic_on_oom",
	"kernel/panic",
	"kernel/panic_on_oops",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
}

func readSysctls() map[string]string {
	m := map[string]string{}
	for _, k := range sysctls {
		if b, err := os.ReadFile(filepath.Join("/proc/sys", k)); err == nil {
			m[k] = strings.TrimSpace(string(b))
		}
	}
	return m
}

// restoreSysctls writes back every saved value that differs now.
func restoreSysctls(saved map[string]string) error {
	var errs []error
	now := readSysctls()
	for _, k := range slices.Sorted(mapKeys(saved)) {
		if now[k] == saved[k] {
			continue
		}
		if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(saved[k]), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restoring sysctl %s=%s (now %s): %w", k, saved[k], now[k], err))
		}
	}
	return errors.Join(errs...)
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// hostPaths are the host paths the kubelet, containerd 1.6 and the CNI
// library write whatever their configuration says. Those that did not exist
// before the node started are removed at teardown.
var hostPaths = []string{
	"/var/lib/kubelet",
	"/var/log/containers",
	"/var/log/pods",
	"/run/containerd",
	"/run/netns",
	"/var/lib/cni",
	"/etc/kubernetes",
}

// iptablesTables are the tables the kubelet, kube-proxy and the CNI plugins
// add chains and rules to.
var iptablesTables = []string{"filter", "nat", "mangle"}

// iptablesSave returns `<cmd>-save -t <table>` for each table.
func iptablesSave(ctx context.Context, family string) (map[string]string, error) {
	out := map[string]string{}
	for _, table := range iptablesTables {
		b, err := run(ctx, family+"-save", "-t", table)
		if err != nil {
			return nil, err
		}
		out[table] = string(b)
	}
	return out, nil
}

// iptablesCleanup computes the iptables-restore --noflush input that undoes
// what was added to table between two iptables-save dumps: every rule in a
// chain that existed before which jumps to a chain that did not (deleted by
// its exact text), then every new chain, flushed before any is deleted
// because new chains jump to one another. Rules added to old chains that jump
// to old targets are left alone: nothing here makes such rules.
// It returns "" when nothing was added.
func iptablesCleanup(table, before, after string) string {
	oldChains := chains(before)
	newChains := []string{}
	for _, c := range chainOrder(after) {
		if !oldChains[c] {
			newChains = append(newChains, c)
		}
	}
	if len(newChains) == 0 {
		return ""
	}
	isNew := map[string]bool{}
	for _, c := range newChains {
		isNew[c] = true
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%s\n", table)
	sc := bufio.NewScanner(strings.NewReader(after))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "-A ")
		if !ok {
			continue
		}
		chain, _, _ := strings.Cut(rest, " ")
		if isNew[chain] || !isNew[jumpTarget(rest)] {
			continue
		}
		fmt.Fprintf(&b, "-D %s\n", rest)
	}
	for _, c := range newChains {
		fmt.Fprintf(&b, "-F %s\n", c)
	}
	for _, c := range newChains {
		fmt.Fprintf(&b, "-X %s\n", c)
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// chains is the set of chain names declared in an iptables-save dump.
func chains(dump string) map[string]bool {
	m := map[string]bool{}
	for _, c := range chainOrder(dump) {
		m[c] = true
	}
	return m
}

func chainOrder(dump string) []string {
	var out []string
	for line := range strings.SplitSeq(dump, "\n") {
		if name, ok := strings.CutPrefix(line, ":"); ok {
			name, _, _ = strings.Cut(name, " ")
			out = append(out, name)
		}
	}
	return out
}

// jumpTarget is the chain a rule jumps or goes to ("" if none).
func jumpTarget(rule string) string {
	fields := strings.Fields(rule)
	for i := 0; i+1 < len(fields); i++ {
		if fields[i] == "-j" || fields[i] == "-g" {
			return fields[i+1]
		}
	}
	return ""
}

// run runs a command and returns its standard output; the error carries its
// standard error.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// runStdin is run with stdin.
func runStdin(ctx context.Context, stdin, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// mountsUnder lists the mount points at or below any of roots, deepest
// first, from /proc/self/mountinfo.
func mountsUnder(mountinfo string, roots []string) []string {
	var out []string
	for line := range strings.SplitSeq(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		for _, r := range roots {
			if mp == r || strings.HasPrefix(mp, strings.TrimSuffix(r, "/")+"/") {
				out = append(out, mp)
				break
			}
		}
	}
	// Deeper mounts first; among equal paths (stacked mounts) the later,
	// upper one first.
	slices.Reverse(out)
	slices.SortStableFunc(out, func(a, b string) int {
		return strings.Count(b, "/") - strings.Count(a, "/")
	})
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + (c - '0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountAll unmounts every mount under roots, deepest first, detaching
// lazily what is still busy.
func unmountAll(roots []string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var errs []error
	for _, mp := range mountsUnder(string(b), roots) {
		if err := syscall.Unmount(mp, 0); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
				errs = append(errs, fmt.Errorf("unmounting %s: %w", mp, err))
			}
		}
	}
	return errors.Join(errs...)
}
