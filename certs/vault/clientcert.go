package vault

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clientCertAlerts are the TLS alerts by which a server refuses the client's
// certificate, as crypto/tls words them.
var clientCertAlerts = []string{
	"certificate required", "bad certificate", "unknown certificate authority", "expired certificate",
	"revoked certificate", "unknown certificate", "unsupported certificate", "access denied",
}

// h2NotEstablished is all the API client's HTTP/2 transport says of a
// connection the server closed before the first request, the reason
// (Vault's TLS alert) dropped.
const h2NotEstablished = "http2: client conn could not be established"

// connLost reports whether err is a connection closed under the API
// client, which is how its HTTP/2 transport may report a TLS alert: as
// h2NotEstablished, or as the error of a write or read that came before
// the alert was read.
func connLost(err error) bool {
	return strings.Contains(err.Error(), h2NotEstablished) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// probeTimeout bounds probeClientCert.
const probeTimeout = 10 * time.Second

// clientCertRefusal is the alert of a server that refused the client's
// TLS certificate (or its lack), if err is one.
func clientCertRefusal(err error) (string, bool) {
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "remote error" || oe.Err == nil {
		return "", false
	}
	alert := strings.TrimPrefix(oe.Err.Error(), "tls: ")
	return alert, slices.Contains(clientCertAlerts, alert)
}

// clientCertRefused is the alert by which Vault's listener refused this
// server's TLS client certificate (or its lack), if that is why a call
// failed with err: read from err, or, when it says only that the connection
// was lost, from probeClientCert. Over TLS 1.3 the server judges the
// client's certificate after the client's side of the handshake is done,
// so only a read sees its verdict, and HTTP/2 may write or read first.
func (i *Issuer) clientCertRefused(err error) (string, bool) {
	if alert, ok := clientCertRefusal(err); ok {
		return alert, true
	}
	if i.opts.Protocol != "https" || !connLost(err) {
		return "", false
	}
	return i.probeShared()
}

// probeShared is probeClientCert's result, probed at most once per
// probeTimeout: a Vault that drops connections fails every admission's
// issuance, each of which would otherwise add its own handshake to it.
// Concurrent callers wait for the probe in flight.
func (i *Issuer) probeShared() (string, bool) {
	i.probe.mu.Lock()
	defer i.probe.mu.Unlock()
	every := i.probe.every
	if every == 0 {
		every = probeTimeout
	}
	if i.probe.at.IsZero() || time.Since(i.probe.at) >= every {
		i.probe.alert, i.probe.refused = i.probeClientCert()
		i.probe.at = time.Now()
	}
	return i.probe.alert, i.probe.refused
}

// certProbe is the last probeClientCert's result.
type certProbe struct {
	// every is how long a result is used; zero means probeTimeout.
	every   time.Duration
	mu      sync.Mutex
	at      time.Time
	alert   string
	refused bool
}

// probeClientCert connects to Vault as the client in use does, over
// HTTP/1.1, asks for /v1/sys/health and returns the alert by which Vault
// refuses the client certificate, if it does: Vault's answer otherwise.
// Only on a lost connection, so the cost of a handshake is no concern.
func (i *Issuer) probeClientCert() (string, bool) {
	t, ok := i.client().CloneConfig().HttpClient.Transport.(*http.Transport)
	if !ok || t.TLSClientConfig == nil {
		return "", false
	}
	cfg := t.TLSClientConfig.Clone()
	cfg.NextProtos = nil // HTTP/1.1: its errors keep the alert
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	hostPort := net.JoinHostPort(i.opts.Host, strconv.Itoa(i.opts.Port))
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", hostPort)
	if err != nil {
		return clientCertRefusal(err) // TLS 1.2: refused in the handshake
	}
	defer func() { _ = conn.Close() }() // a probe: nothing to report
	deadline, _ := ctx.Deadline()
	if err = conn.SetDeadline(deadline); err == nil {
		// A write Vault closed the connection under fails; the alert it
		// sent before is read all the same.
		_, _ = io.WriteString(conn, "GET /v1/sys/health HTTP/1.1\r\nHost: "+hostPort+"\r\nConnection: close\r\n\r\n")
		_, err = conn.Read(make([]byte, 1))
	}
	if err == nil {
		return "", false
	}
	return clientCertRefusal(err)
}
