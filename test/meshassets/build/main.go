// Command build fills the asset cache with the meshed-pod binaries of the
// node suite (Pipy from ../shared/pipy, CoreDNS from its module) and prints
// their paths; a warm cache prints only the paths.
//
//	go run ./test/meshassets/build
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/flomesh-io/fsm-webhooks/test/meshassets"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

func main() {
	ctx := context.Background()
	pipy, err := meshassets.Pipy(ctx, meshassets.PipySource(testenv.RepoRoot()), os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	coredns, err := meshassets.CoreDNS(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(pipy)
	fmt.Println(coredns)
}
