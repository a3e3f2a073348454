package webhooks

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// TestListenersCutSlowClients: every listener (a webhook's over TLS as
// serveWebhook builds it, a health or metrics one over plain HTTP) cuts off
// a client that stalls its TLS handshake, trickles its headers or its body,
// or says nothing before its first request or after one, once the timeout
// is up and not before; a prompt client is answered, and so is a client
// that sends its first request after longer than the header and request
// timeouts but within the idle one (a connection an HTTP client dialed and
// keeps in its pool). Short timeouts; production uses defaultTimeouts.
func TestListenersCutSlowClients(t *testing.T) {
	// Each sleep below lands at least a second from the timeout it must
	// miss, so a starved CI core cannot carry it across.
	tm := timeouts{handshake: 3 * time.Second, readHeader: 600 * time.Millisecond, read: 1200 * time.Millisecond, write: 5 * time.Second, idle: 3500 * time.Millisecond}
	// clientWait is how long the test's client waits for an answer: its
	// patience is not under test (a cut connection reads EOF at once).
	const clientWait = 5 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	t.Cleanup(func() {
		cancel()
		_ = g.Wait()
	})

	cert, roots := servingCert(t)
	s := &Server{opts: Options{BindHost: "127.0.0.1"}, timeouts: tm}
	webhookPort := freePort(t)
	allow := reviewhttp.NewAdmission(admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Allowed("")
	}))
	s.serveWebhook(gctx, g, Webhook{Name: "slow-clients", Port: webhookPort, Handlers: map[string]http.Handler{"/validate": allow}},
		func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }, logr.Discard())
	probeAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	serveHTTP(gctx, g, "health probes", probeAddr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}), nil, tm, logr.Discard())

	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}}`
	listeners := []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"webhook (TLS)", func() (net.Conn, error) {
			c, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(webhookPort)),
				&tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"h2", "http/1.1"}})
			if err == nil && c.ConnectionState().NegotiatedProtocol != "http/1.1" {
				c.Close()
				return nil, errors.New("negotiated " + c.ConnectionState().NegotiatedProtocol + ", want http/1.1")
			}
			return c, err
		}},
		{"health probes (plain)", func() (net.Conn, error) { return net.Dial("tcp", probeAddr) }},
	}
	request := "POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(review)) + "\r\n\r\n" + review
	for _, l := range listeners {
		waitListening(t, l.dial)
		answered := func(t *testing.T, c net.Conn) {
			t.Helper()
			if _, err := io.WriteString(c, request); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(clientWait))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || (strings.HasPrefix(l.name, "webhook") && !strings.Contains(string(body), `"allowed":true`)) {
				t.Fatalf("HTTP %d %s", resp.StatusCode, body)
			}
		}
		t.Run(l.name+"/prompt request answered", func(t *testing.T) {
			c, err := l.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			answered(t, c)
		})
		t.Run(l.name+"/first request after the header and request timeouts answered", func(t *testing.T) {
			c, err := l.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			time.Sleep(tm.read + (tm.idle-tm.read)/2)
			answered(t, c)
		})
		for _, tc := range []struct {
			name    string
			trickle func(w io.Writer, stop <-chan struct{}) error
			timeout time.Duration
		}{
			{"silent client", func(io.Writer, <-chan struct{}) error { return nil }, tm.idle},
			{"headers trickled", func(w io.Writer, stop <-chan struct{}) error {
				if _, err := io.WriteString(w, "POST /validate HTTP/1.1\r\nHost: x\r\n"); err != nil {
					return err
				}
				return every(stop, func(i int) error { _, err := io.WriteString(w, "X-Slow-"+strconv.Itoa(i)+": 1\r\n"); return err })
			}, tm.readHeader},
			{"body trickled", func(w io.Writer, stop <-chan struct{}) error {
				if _, err := io.WriteString(w, "POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"); err != nil {
					return err
				}
				return every(stop, func(int) error { _, err := io.WriteString(w, " "); return err })
			}, tm.read},
			{"idle after a request", func(w io.Writer, _ <-chan struct{}) error {
				_, err := io.WriteString(w, request)
				return err
			}, tm.idle},
		} {
			t.Run(l.name+"/"+tc.name, func(t *testing.T) {
				c, err := l.dial()
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				took, closed := timeToClose(c, tc.trickle, tc.timeout+3*time.Second)
				switch {
				case !closed:
					t.Fatalf("still open after %s (timeout %s)", took, tc.timeout)
				case took < tc.timeout-100*time.Millisecond:
					t.Fatalf("closed after %s, before the %s timeout", took, tc.timeout)
				case took > tc.timeout+2*time.Second:
					t.Fatalf("closed only after %s (timeout %s)", took, tc.timeout)
				}
				t.Logf("closed after %s (timeout %s)", took.Round(time.Millisecond), tc.timeout)
			})
		}
	}

	webhookAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(webhookPort))
	t.Run("webhook (TLS)/no handshake", func(t *testing.T) {
		c, err := net.Dial("tcp", webhookAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		took, closed := timeToClose(c, func(io.Writer, <-chan struct{}) error { return nil }, tm.handshake+3*time.Second)
		if !closed || took < tm.handshake-100*time.Millisecond || took > tm.handshake+2*time.Second {
			t.Fatalf("closed %v after %s, want after the %s handshake timeout", closed, took, tm.handshake)
		}
	})
	// As net/http's own TLS server: plain HTTP gets a 400 saying why.
	t.Run("webhook (TLS)/plain HTTP answered 400", func(t *testing.T) {
		c, err := net.Dial("tcp", webhookAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, request); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(clientWait))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTP request to an HTTPS server") {
			t.Fatalf("HTTP %d %q, want 400 naming the mistake", resp.StatusCode, body)
		}
	})
	// A TLS 1.3 client is done once it has sent its Finished, the server
	// only once it has read it. A client (a starved apiserver) that sends
	// its Finished late, within the handshake timeout, uses the connection
	// as established: the server must not have cut it.
	t.Run("webhook (TLS)/handshake finished after the header timeout answered", func(t *testing.T) {
		c, hc := heldHandshake(t, webhookAddr, roots)
		if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
			t.Fatalf("negotiated TLS version %x, want TLS 1.3", v)
		}
		time.Sleep(tm.readHeader + (tm.handshake-tm.readHeader)/2)
		if _, err := hc.flush(); err != nil {
			t.Fatalf("sending the client's Finished: %v", err)
		}
		if _, err := io.WriteString(c, request); err != nil {
			t.Fatal(err)
		}
		answeredOK(t, c, clientWait)
	})
	// The server may read the client's last handshake record and the
	// request in one read: the request must still be seen at once.
	t.Run("webhook (TLS)/request sent with the handshake's last record answered", func(t *testing.T) {
		c, hc := heldHandshake(t, webhookAddr, roots)
		if _, err := io.WriteString(c, request); err != nil {
			t.Fatal(err)
		}
		if n, err := hc.flush(); err != nil || n <= len(request) {
			t.Fatalf("flushed %d bytes (%v), want the client's Finished and the request in one write", n, err)
		}
		answeredOK(t, c, clientWait)
	})
}

// heldHandshake completes a TLS handshake with addr from the client's side,
// its last flight (the client's Finished) held in hc until hc.flush.
func heldHandshake(t *testing.T, addr string, roots *x509.CertPool) (*tls.Conn, *holdConn) {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	hc := &holdConn{Conn: raw}
	c := tls.Client(hc, &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	return c, hc
}

// answeredOK reads an HTTP 200 answer from c within wait.
func answeredOK(t *testing.T, c net.Conn, wait time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d", resp.StatusCode)
	}
}

// holdConn passes its writes through until its first read (the server's
// handshake flight) and holds them from then on until flush writes them at
// once.
type holdConn struct {
	net.Conn
	hold bool
	held []byte
}

func (c *holdConn) Read(b []byte) (int, error) {
	c.hold = true
	return c.Conn.Read(b)
}

func (c *holdConn) Write(b []byte) (int, error) {
	if c.hold {
		c.held = append(c.held, b...)
		return len(b), nil
	}
	return c.Conn.Write(b)
}

func (c *holdConn) flush() (int, error) {
	c.hold = false
	return c.Conn.Write(c.held)
}

// timeToClose runs trickle against c and reads whatever the server sends
// until it closes c (closed) or limit passes.
func timeToClose(c net.Conn, trickle func(io.Writer, <-chan struct{}) error, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := trickle(c, stop); err == nil {
			<-stop
		}
	}()
	_ = c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	took := time.Since(start)
	close(stop)
	<-done
	var ne net.Error
	return took, !errors.As(err, &ne) || !ne.Timeout()
}

// every calls write every 50 ms until stop or an error.
func every(stop <-chan struct{}, write func(i int) error) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		case <-tick.C:
			if err := write(i); err != nil {
				return err
			}
		}
	}
}

func waitListening(t *testing.T, dial func() (net.Conn, error)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := dial()
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not listening: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// servingCert is a localhost serving certificate from the test CA and the
// pool that verifies it.
func servingCert(t *testing.T) (*tls.Certificate, *x509.CertPool) {
	t.Helper()
	ca, err := certstest.New(t.Context(), certstest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Issue(t.Context(), certs.Request{CommonName: "localhost", DNSNames: []string{"localhost"}, Validity: time.Hour, Usage: certs.UsageServer})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(c.CABundle)
	return &pair, roots
}
