package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hostState is what the host looked like before the node started.
type hostState struct {
	sysctls  map[string]string
	iptables map[string]map[string]string // family -> table -> iptables-save
	// paths are the hostPaths that existed.
	paths map[string]bool
	// netns are the entries of /run/netns.
	netns map[string]bool
	// cgroups are the top-level directories of each cgroup hierarchy.
	cgroups       map[string]bool
	bridgeCreated bool
}

// cgroupNames are the top-level cgroups the kubelet (cgroupfs driver) and
// containerd create; new ones are removed at teardown.
var cgroupNames = []string{"kubepods", "k8s.io"}

func snapshotHost(ctx context.Context) (*hostState, error) {
	if _, err := os.Stat("/sys/class/net/" + BridgeName); err == nil {
		return nil, fmt.Errorf("node: bridge %s already exists: a previous node run on this machine did not clean up "+
			"(remove it with `ip link del %s` after checking no kubelet or containerd of ours still runs)", BridgeName, BridgeName)
	}
	h := &hostState{
		sysctls:  readSysctls(),
		iptables: map[string]map[string]string{},
		paths:    map[string]bool{},
		netns:    map[string]bool{},
		cgroups:  map[string]bool{},
	}
	for _, fam := range []string{"iptables", "ip6tables"} {
		dump, err := iptablesSave(ctx, fam)
		if err != nil {
			return nil, fmt.Errorf("node: recording iptables: %w", err)
		}
		h.iptables[fam] = dump
	}
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); err == nil {
			h.paths[p] = true
		}
	}
	for _, e := range readDirNames("/run/netns") {
		h.netns[e] = true
	}
	for _, d := range cgroupDirs() {
		h.cgroups[d] = true
	}
	return h, nil
}

func readDirNames(dir string) []string {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// cgroupDirs are the existing /sys/fs/cgroup/<hierarchy>/<name> directories
// for every name in cgroupNames (cgroup v2: /sys/fs/cgroup/<name>).
func cgroupDirs() []string {
	var out []string
	roots := []string{cgroupRoot}
	for _, h := range readDirNames(cgroupRoot) {
		roots = append(roots, filepath.Join(cgroupRoot, h))
	}
	for _, r := range roots {
		for _, n := range cgroupNames {
			d := filepath.Join(r, n)
			if fi, err := os.Stat(d); err == nil && fi.IsDir() {
				out = append(out, d)
			}
		}
	}
	return out
}

// teardown undoes Start in the recipe's order: components stop, sandboxes
// are removed through the CRI (CNI DEL frees addresses and veths),
// containerd and the control plane stop, then mounts, network namespaces,
// links, iptables chains, cgroups, host paths and sysctls are restored. It
// goes on after a step fails and reports every failure.
func (c *Cluster) teardown() {
	t := c.t
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var errs []error
	step := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	if t.Failed() && c.Clientset != nil && c.proc("kubelet") != nil {
		path, err := c.dumpPods(ctx)
		t.Logf("node: test failed: pod logs and events in %s (dump error: %v)", path, err)
	}
	for _, name := range []string{"coredns", "kube-proxy", "kube-scheduler", "kube-controller-manager", "kubelet"} {
		if p := c.proc(name); p != nil {
			step("stopping "+name, p.stop(stopTimeout))
		}
	}
	if ctrd := c.proc("containerd"); ctrd != nil {
		if done, _ := ctrd.exited(); !done {
			_, err := c.Crictl(ctx, "rmp", "--all", "--force")
			step("removing pod sandboxes", err)
		}
		step("stopping containerd", ctrd.stop(stopTimeout))
		step("stopping containerd shims", killShims(c.containerdSock()))
	}
	step("killing container processes", c.killCgroupProcs())
	if c.env != nil {
		step("stopping kube-apiserver and etcd", c.env.Stop())
	}
	for _, f := range c.logs {
		_ = f.Close()
	}
	if c.host != nil {
		step("restoring the host", c.restoreHost(ctx))
	}
	if c.dir != "" {
		step("unmounting under "+c.dir, unmountAll([]string{c.dir}))
		step("removing "+c.dir, os.RemoveAll(c.dir))
	}
	if err := errors.Join(errs...); err != nil {
		t.Errorf("node: teardown: %v\n(logs kept in %s)", err, c.LogDir)
		return
	}
	c.teardownOK = true
	if t.Failed() {
		t.Logf("node: torn down in %s; logs kept in %s", time.Since(start).Round(100*time.Millisecond), c.LogDir)
		return
	}
	_ = os.RemoveAll(c.LogDir)
}

// restoreHost undoes the host changes recorded against c.host.
func (c *Cluster) restoreHost(ctx context.Context) error {
	h := c.host
	var errs []error
	// Network namespaces left by sandboxes crictl could not remove.
	var nsPaths []string
	for _, e := range readDirNames("/run/netns") {
		if !h.netns[e] {
			nsPaths = append(nsPaths, filepath.Join("/run/netns", e))
		}
	}
	var newPaths []string
	for _, p := range hostPaths {
		if !h.paths[p] {
			if _, err := os.Lstat(p); err == nil {
				newPaths = append(newPaths, p)
			}
		}
	}
	if err := unmountAll(append(nsPaths, newPaths...)); err != nil {
		errs = append(errs, err)
	}
	for _, p := range nsPaths {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if h.bridgeCreated {
		if out, err := run(ctx, "ip", "-o", "link", "show", "master", BridgeName); err == nil {
			for _, l := range linkNames(string(out)) {
				if _, err := run(ctx, "ip", "link", "del", l); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if _, err := run(ctx, "ip", "link", "del", BridgeName); err != nil {
			errs = append(errs, err)
		}
	}
	for _, fam := range []string{"iptables", "ip6tables"} {
		now, err := iptablesSave(ctx, fam)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, table := range iptablesTables {
			if script := iptablesCleanup(table, h.iptables[fam][table], now[table]); script != "" {
				if err := runStdin(ctx, script, fam+"-restore", "--noflush"); err != nil {
					errs = append(errs, fmt.Errorf("removing the node's %s %s chains: %w\n%s", fam, table, err, script))
				}
			}
		}
	}
	for _, d := range cgroupDirs() {
		if !h.cgroups[d] {
			if err := removeCgroupTree(d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, p := range newPaths {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := restoreSysctls(h.sysctls); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// linkNames parses `ip -o link show` output ("7: veth1234@if2: <...").
func linkNames(out string) []string {
	var names []string
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n := strings.TrimSuffix(f[1], ":")
		n, _, _ = strings.Cut(n, "@")
		names = append(names, n)
	}
	return names
}

// killCgroupProcs kills every process left in the cgroups the node created
// (containers whose shim is gone): they are the node's by construction.
func (c *Cluster) killCgroupProcs() error {
	if c.host == nil {
		return nil
	}
	var pids []int
	for _, d := range cgroupDirs() {
		if c.host.cgroups[d] {
			continue
		}
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil || !e.IsDir() {
				return nil
			}
			pids = append(pids, cgroupProcs(p)...)
			return nil
		})
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return nil
}

func cgroupProcs(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for f := range strings.FieldsSeq(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// removeCgroupTree removes a cgroup and its children, deepest first,
// retrying while killed processes are still leaving.
func removeCgroupTree(root string) error {
	var dirs []string
	_ = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	deadline := time.Now().Add(10 * time.Second)
	for _, d := range dirs {
		for {
			err := syscall.Rmdir(d)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("removing cgroup %s (processes %v): %w", d, cgroupProcs(d), err)
			}
			for _, pid := range cgroupProcs(d) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// killShims kills containerd-shim processes started by the containerd at
// sock (their command line names its address); containerd 1.6's shims
// outlive containerd by design.
func killShims(sock string) error {
	var errs []error
	for _, e := range readDirNames("/proc") {
		pid, err := strconv.Atoi(e)
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) == 0 || !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") || !slices.Contains(args, sock) {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("killing shim %d: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}
