// Command build fills the asset cache ahead of a test run (or `local`), so
// that the first test needing kube-apiserver/etcd (or Vault) does not spend
// minutes building them:
//
//	go run ./internal/kubeassets/build [--vault] [--node]
//
// It prints the kube-apiserver/etcd directory (and the vault path with
// --vault, the directory of kube-controller-manager, kube-scheduler, kubelet,
// kube-proxy and crictl with --node), and exits non-zero with the error if a
// build fails.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/flomesh-io/fsm-webhooks/internal/kubeassets"
)

func main() {
	withVault := flag.Bool("vault", false, "also build the vault binary")
	withNode := flag.Bool("node", false, "also build the node binaries (test/node)")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "usage: %s [--vault] [--node]\n", os.Args[0])
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *withVault, *withNode)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "assets: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, withVault, withNode bool) error {
	dir, err := kubeassets.Kube(ctx, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Println(dir)
	if withVault {
		path, err := kubeassets.Vault(ctx, os.Stderr)
		if err != nil {
			return err
		}
		fmt.Println(path)
	}
	if withNode {
		dir, err := kubeassets.Node(ctx, os.Stderr)
		if err != nil {
			return err
		}
		fmt.Println(dir)
	}
	return nil
}
