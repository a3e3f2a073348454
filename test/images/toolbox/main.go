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
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
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
		err = get(args[0], args[1])
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
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	fmt.Printf("serving %s on %s\n", file, addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func get(url, timeout string) error {
	d, err := time.ParseDuration(timeout)
	if err != nil {
		return fmt.Errorf("timeout %q: %w", timeout, err)
	}
	deadline := time.Now().Add(d)
	client := &http.Client{Timeout: 5 * time.Second}
	var last error
	for attempt := 1; time.Now().Before(deadline); attempt++ {
		body, err := fetch(client, url)
		if err == nil {
			fmt.Print(body)
			return nil
		}
		last = err
		fmt.Fprintf(os.Stderr, "attempt %d: %v\n", attempt, err)
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("GET %s: no 200 within %s: %w", url, d, last)
}

func fetch(client *http.Client, url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s: %s", resp.Status, b)
	}
	return string(b), nil
}
