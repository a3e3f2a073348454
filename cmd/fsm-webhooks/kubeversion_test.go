package main

import (
	"net"
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
	"k8s.io/client-go/rest"

	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestAPIServerVersion: serve hands the injector the gitVersion the real
// apiserver reports, read with serve's credentials (GET /version needs no
// RBAC rule of the chart's); an apiserver that cannot be reached gives ""
// and a logged error, and injection goes on as before.
func TestAPIServerVersion(t *testing.T) {
	t.Run("the apiserver's", func(t *testing.T) {
		env := testenv.Start(t, testenv.Options{})
		var logged []string
		log := funcr.New(func(_, args string) { logged = append(logged, args) }, funcr.Options{})
		got := apiserverVersion(env.Config, log)
		if !strings.HasPrefix(got, "v1.") || len(logged) > 0 {
			t.Fatalf("version %q (logged %q), want the apiserver's v1.x", got, logged)
		}
	})
	t.Run("none reachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		_ = l.Close()
		var logged []string
		log := funcr.New(func(_, args string) { logged = append(logged, args) }, funcr.Options{})
		if got := apiserverVersion(&rest.Config{Host: "http://" + addr}, log); got != "" || len(logged) != 1 {
			t.Fatalf("version %q, logged %q: want \"\" and one error", got, logged)
		}
	})
}
