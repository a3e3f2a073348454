// Package toolcmd holds the subcommands the node suite's two test-image
// binaries (test/images/toolbox and test/meshimages/meshtool) share: serving
// until the kubelet's SIGTERM, and polling a URL until it answers 200.
package toolcmd

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

// ServeUntilSignal serves srv until SIGTERM or SIGINT, then shuts it down
// with 5 s for in-flight requests, inside the pod's termination grace.
func ServeUntilSignal(srv *http.Server) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Get GETs url every 500 ms until it answers 200 or timeout (a Go duration)
// passes, prints the body to stdout, and each failed attempt to stderr, so a
// test's exec output shows why a path never came up.
func Get(url, timeout string) error {
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
