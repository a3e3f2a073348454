package vault

import (
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"syscall"
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
// client. Over TLS 1.3 the server judges the client's certificate after the
// client's side of the handshake is done, and the API client's HTTP/2
// transport often reports Vault's refusal only so: as h2NotEstablished, or
// as the error of a write or read that came before the alert was read.
func connLost(err error) bool {
	return strings.Contains(err.Error(), h2NotEstablished) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

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
