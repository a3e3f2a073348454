package vault

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// vaultProxy sits between an Issuer and a real Vault dev server: while down,
// every request is answered 503 as a sealed or unavailable Vault would; it
// records the path and time of every request it receives.
type vaultProxy struct {
	srv  *httptest.Server
	down atomic.Bool

	mu   sync.Mutex
	seen []proxiedReq
}

type proxiedReq struct {
	at   time.Time
	path string
	down bool
	// namespace is the request's X-Vault-Namespace (a Vault Enterprise
	// namespace; the dev server, open source, ignores it).
	namespace string
}

func newVaultProxy(t *testing.T, vaultAddr string) *vaultProxy {
	t.Helper()
	u, err := url.Parse(vaultAddr)
	if err != nil {
		t.Fatal(err)
	}
	p := &vaultProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		down := p.down.Load()
		p.mu.Lock()
		p.seen = append(p.seen, proxiedReq{at: time.Now(), path: r.URL.Path, down: down, namespace: r.Header.Get("X-Vault-Namespace")})
		p.mu.Unlock()
		if down {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"errors":["Vault is sealed"]}`))
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *vaultProxy) hostPort(t *testing.T) (string, int) {
	u, _ := url.Parse(p.srv.URL)
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return u.Hostname(), port
}

// first returns when the first request whose path contains sub arrived.
func (p *vaultProxy) first(sub string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.seen {
		if strings.Contains(r.path, sub) {
			return r.at
		}
	}
	return time.Time{}
}

// count returns how many requests whose path contains sub arrived at or
// after since, and how many of those arrived while down.
func (p *vaultProxy) count(sub string, since time.Time) (all, whileDown int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.seen {
		if strings.Contains(r.path, sub) && !r.at.Before(since) {
			all++
			if r.down {
				whileDown++
			}
		}
	}
	return
}

// requests returns what the proxy has received so far.
func (p *vaultProxy) requests() []proxiedReq {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]proxiedReq(nil), p.seen...)
}
