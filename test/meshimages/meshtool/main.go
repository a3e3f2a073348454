// Command meshtool is the one static binary of the meshed-pod images of the
// node suite (test/node, TestMeshed). It runs as the name it is called by,
// like busybox, because the injector names some of them by path:
//
//	fsm-healthcheck [--verbosity L]  the healthcheck container: GET
//	                                 /fsm-healthcheck on :15904 dials
//	                                 127.0.0.1:<Original-Tcp-Port>
//	wait-pipy                        the sidecar's postStart: wait up to 60 s
//	                                 for a 200 from 127.0.0.1:15000/config_dump,
//	                                 as Pipy's tools/wait-pipy does
//	gkill                            the sidecar's preStop: SIGINT to PID 1,
//	                                 Pipy's graceful stop (Pipy's own
//	                                 tools/gkill does `kill -SIGINT 1`)
//	meshtool app                     the app: HTTP :8080, HTTPS :8443, TCP
//	                                 :9000, gRPC health :9090
//	meshtool get URL TIMEOUT         GET URL until 200 or TIMEOUT; print it
//	meshtool dial ADDR TIMEOUT       TCP connect to ADDR once and close; exit 1
//	                                 on error
//
// FSM's own healthcheck, wait-pipy and gkill are not on any registry this
// machine reaches; these stand-ins do what the injected pod needs of them.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/flomesh-io/fsm-webhooks/test/internal/toolcmd"
)

func main() {
	args := os.Args
	cmd := filepath.Base(args[0])
	if cmd == "meshtool" && len(args) > 1 {
		cmd, args = args[1], args[1:]
	}
	var err error
	switch cmd {
	case "fsm-healthcheck":
		err = healthcheck()
	case "wait-pipy":
		err = waitHTTP("http://127.0.0.1:15000/config_dump", 60*time.Second)
	case "gkill":
		err = prestop()
	case "app":
		err = app()
	case "get":
		if len(args) != 3 {
			usage()
		}
		err = toolcmd.Get(args[1], args[2])
	case "dial":
		if len(args) != 3 {
			usage()
		}
		err = dial(args[1], args[2])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: fsm-healthcheck | wait-pipy | gkill | meshtool app | meshtool get URL TIMEOUT | meshtool dial ADDR TIMEOUT")
	os.Exit(2)
}

// healthcheck answers the injector's rewritten TCP and HTTPS probes: a TCP
// connect to the original port on loopback (the healthcheck container
// shares the pod's network namespace).
func healthcheck() error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fsm-healthcheck", func(w http.ResponseWriter, r *http.Request) {
		port := r.Header.Get("Original-Tcp-Port")
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), 5*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_ = c.Close()
		_, _ = io.WriteString(w, "ok\n")
	})
	return toolcmd.ServeUntilSignal(&http.Server{Addr: ":15904", Handler: mux, ReadHeaderTimeout: 10 * time.Second})
}

// waitHTTP polls url every second until it answers 200: the codebase
// serves the proxy-admin port once Pipy has fetched and started it.
func waitHTTP(url string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no 200 within %s: %w", url, timeout, err)
		}
		time.Sleep(time.Second)
	}
}

// prestop asks Pipy, the container's PID 1, to stop: it stops listening and
// exits once its connections close. SIGINT is the only stop signal Pipy
// 1.5.12 handles on Linux (main.cpp: SIGINT stop, SIGHUP reload, SIGTSTP
// admin port); the SIGTERM the kubelet sends next, and the published image's
// STOPSIGNAL SIGQUIT, are ignored by a PID 1 without a handler, so without
// this hook the pod would last its whole termination grace period.
func prestop() error {
	if err := syscall.Kill(1, syscall.SIGINT); err != nil {
		return fmt.Errorf("SIGINT to PID 1: %w", err)
	}
	return nil
}

// app serves the endpoints the meshed test probes and calls: HTTP, HTTPS
// (self-signed), plain TCP and the gRPC health service.
func app() error {
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s to %s\n", host, r.RemoteAddr)
	})
	cert, err := selfSigned(host)
	if err != nil {
		return err
	}
	tcp, err := net.Listen("tcp", ":9000")
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "tcp ok\n")
			_ = c.Close()
		}
	}()
	g := grpc.NewServer()
	healthpb.RegisterHealthServer(g, health.NewServer()) // "" is SERVING
	gl, err := net.Listen("tcp", ":9090")
	if err != nil {
		return err
	}
	go func() { _ = g.Serve(gl) }()
	defer g.Stop()
	tlsSrv := &http.Server{Addr: ":8443", Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { _ = tlsSrv.ListenAndServeTLS("", "") }()
	defer func() { _ = tlsSrv.Close() }()
	fmt.Println("app: HTTP :8080, HTTPS :8443, TCP :9000, gRPC health :9090")
	return toolcmd.ServeUntilSignal(&http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: 10 * time.Second})
}

func selfSigned(host string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func dial(addr, timeout string) error {
	d, err := time.ParseDuration(timeout)
	if err != nil {
		return fmt.Errorf("timeout %q: %w", timeout, err)
	}
	c, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		return err
	}
	fmt.Printf("connected to %s from %s\n", addr, c.LocalAddr())
	return c.Close()
}
