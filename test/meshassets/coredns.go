package meshassets

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// CoreDNSVersion is the CoreDNS module the node's cluster DNS is built from.
const CoreDNSVersion = "v1.15.0"

// corednsMain is CoreDNS with only the plugins the node's Corefile uses
// (the full plugin set pulls in every cloud provider's SDK). Directives
// replaces the generated list: its order is the plugins' order in a chain.
const corednsMain = `package main

import (
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
)

func init() {
	dnsserver.Directives = []string{"bind", "errors", "log", "kubernetes"}
}

func main() { coremain.Run() }
`

// CoreDNS returns the path of a CoreDNS CoreDNSVersion binary with the
// bind, errors, log and kubernetes plugins, building it from the module
// proxy into the cache the first time (~3 min); progress may be nil.
func CoreDNS(ctx context.Context, progress io.Writer) (string, error) {
	return ensure(ctx, asset{
		name: "coredns", version: CoreDNSVersion, estimate: "~3 min",
		check: checkCoreDNS,
		build: buildCoreDNS,
	}, progress)
}

func checkCoreDNS(ctx context.Context, bin string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s -version: %w: %s", bin, err, bytes.TrimSpace(out))
	}
	if want := "CoreDNS-" + strings.TrimPrefix(CoreDNSVersion, "v"); !bytes.Contains(out, []byte(want)) {
		return fmt.Errorf("%s -version printed %q, want %s", bin, out, want)
	}
	return nil
}

// buildCoreDNS builds corednsMain in a throwaway module that requires
// CoreDNSVersion, statically, whatever the caller's Go settings.
func buildCoreDNS(ctx context.Context, out string, log io.Writer) error {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the go command is not on PATH: %w", err)
	}
	work, err := os.MkdirTemp("", "fsm-webhooks-coredns-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }() // best effort: a leftover is only disk
	gomod := "module fsm-webhooks-coredns\n\ngo 1.26\n\nrequire github.com/coredns/coredns " + CoreDNSVersion + "\n"
	if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte(gomod), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(work, "main.go"), []byte(corednsMain), 0o644); err != nil {
		return err
	}
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "GOFLAGS", "GOOS", "GOARCH", "CGO_ENABLED", "GOWORK":
		default:
			env = append(env, kv)
		}
	}
	env = append(env, "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if err := runLogged(ctx, work, env, log, gobin, "mod", "tidy"); err != nil {
		return err
	}
	return runLogged(ctx, work, env, log, gobin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
}
