package kubeassets

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestNodeEnvOverride(t *testing.T) {
	all := func(except string, mode os.FileMode) map[string]os.FileMode {
		m := map[string]os.FileMode{}
		for _, n := range NodeBinaries {
			m[n] = 0o755
		}
		if mode == 0 {
			delete(m, except)
		} else if except != "" {
			m[except] = mode
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		files   map[string]os.FileMode
		wantErr string // empty: success
	}{
		{name: "all present", files: all("", 0)},
		{name: "kubelet missing", files: all("kubelet", 0), wantErr: "missing %DIR%/kubelet"},
		{name: "crictl missing", files: all("crictl", 0), wantErr: "missing %DIR%/crictl"},
		{name: "kube-proxy not executable", files: all("kube-proxy", 0o644), wantErr: "kube-proxy is not executable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, mode := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv(envNodeAssets, dir)
			got, err := Node(context.Background(), nil)
			if tc.wantErr == "" {
				if err != nil || got != dir {
					t.Fatalf("Node = %s, %v; want %s", got, err, dir)
				}
				return
			}
			want := strings.ReplaceAll(tc.wantErr, "%DIR%", dir)
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), envNodeAssets+"="+dir) {
				t.Fatalf("Node error = %v, want it to name %s=%s and contain %q", err, envNodeAssets, dir, want)
			}
		})
	}
}

// TestKubeComponent checks what every component build shares with
// kube-apiserver's: the replaces that make k8s.io/kubernetes resolvable from
// the proxy (k8s.io/cri-streaming included, or `go mod tidy` asks the proxy
// for its v0.0.0 and fails) and the version stamp the binary is checked
// against.
func TestKubeComponent(t *testing.T) {
	for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"} {
		b := kubeComponent(name, "v1.37.2", "")
		if b.main != "k8s.io/kubernetes/cmd/"+name || b.require != "k8s.io/kubernetes@v1.37.2" {
			t.Errorf("%s: main %s require %s", name, b.main, b.require)
		}
		for _, want := range []string{"k8s.io/cri-streaming=k8s.io/cri-streaming@v0.37.2", "k8s.io/kubelet=k8s.io/kubelet@v0.37.2"} {
			if !slices.Contains(b.replaces, want) {
				t.Errorf("%s: replaces lack %s", name, want)
			}
		}
		if !strings.Contains(b.ldflags, "k8s.io/component-base/version.gitVersion=v1.37.2") || b.versionWant != "Kubernetes v1.37.2" {
			t.Errorf("%s: ldflags %q, versionWant %q", name, b.ldflags, b.versionWant)
		}
	}
}
