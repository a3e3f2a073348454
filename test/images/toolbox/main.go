// Command toolbox is the one binary of the node harness's test images
// (test/node): the pod sandbox's pause process and the workloads of the
// node tests. It is built static and needs no base image.
//
//	toolbox pause                 wait for SIGTERM or SIGINT (the sandbox image)
//	toolbox serve ADDR FILE       serve FILE's current content on GET / at ADDR
//	toolbox get URL TIMEOUT       GET URL until it answers 200 or TIMEOUT passes;
//	                              print the body, exit 1 on timeout
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/flomesh-io/fsm-webhooks/test/internal/toolcmd"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; {
	case cmd == "pause" && len(args) == 0:
		pause()
	case cmd == "serve" && len(args) == 2:
		err = serve(args[0], args[1])
	case cmd == "get" && len(args) == 2:
		err = toolcmd.Get(args[0], args[1])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "toolbox %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: toolbox pause | serve ADDR FILE | get URL TIMEOUT")
	os.Exit(2)
}

func pause() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
}

func serve(addr, file string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		b, err := os.ReadFile(file)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(b)
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("serving %s on %s\n", file, addr)
	return toolcmd.ServeUntilSignal(srv)
}
