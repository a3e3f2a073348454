package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// localClock is the clock this process signs with: the tresor CA's, which
// stamps the roots it creates and the certificates it signs. Tests set it
// ahead to stand for a machine whose clock runs ahead.
var localClock = time.Now

// maxClockAhead is how far the clock of the machine running `certs
// rotate-root` may run ahead of the apiserver's. The root it creates and the
// serving certificates it re-issues from that root are valid from
// certs.ClockSkew before its own now (certs.NewRootAuthority,
// certs.Authority.Sign): with a clock further ahead they are not valid yet
// in the cluster, the apiserver refuses the webhooks' certificates until the
// cluster's clock catches up, and pod creates fail meanwhile. The margin
// under it covers the Date header's whole seconds and the round trip.
const maxClockAhead = certs.ClockSkew - 30*time.Second

// clockAhead is how far a clock that sent a request at sent and had its
// answer at received runs ahead of the server whose Date header said date.
// Date is whole seconds, truncated: the server's instant lies within the
// second after it, taken at its middle; ours at the middle of the round trip.
func clockAhead(sent, received, date time.Time) time.Duration {
	local := sent.Add(received.Sub(sent) / 2)
	return local.Sub(date.Add(500 * time.Millisecond))
}

// clockUse is who signs with the checked clock, for clockAheadProblem's
// words: whose clock, what it signs, what to do.
type clockUse struct{ whose, signs, fix string }

var (
	// rotateRootClock: `certs rotate-root`, run from a machine.
	rotateRootClock = clockUse{whose: "this machine's", signs: "the new root and the serving certificates rotate-root signs",
		fix: "sync this machine's clock (NTP) and run it again"}
	// serveClock: serve's automatic root rotation, on its node (the
	// maxClockAhead reasoning holds alike: the same signer, the same
	// backdating).
	serveClock = clockUse{whose: "this node's", signs: "the new root and the serving certificates the automatic root rotation signs",
		fix: "sync the node's clock (NTP); the rotation is retried, and a replica on another node may take it"}
)

// clockAheadProblem is nil when a clock ahead of the apiserver's by ahead
// signs certificates the cluster accepts at once; else it says by how much,
// what it would break and what to do.
func clockAheadProblem(ahead time.Duration, local, server time.Time, use clockUse) error {
	if ahead <= maxClockAhead {
		return nil
	}
	return fmt.Errorf("%s clock is %s ahead of the apiserver's (here %s, apiserver %s), more than the %s allowed (certificates are backdated %s): "+
		"%s would not be valid in the cluster yet, "+
		"and the apiserver would refuse the webhooks until its clock caught up; %s",
		use.whose, ahead.Round(time.Second), local.UTC().Format(time.RFC3339), server.UTC().Format(time.RFC3339), maxClockAhead, certs.ClockSkew,
		use.signs, use.fix)
}

// checkClockAgainstAPIServer reads the apiserver's clock from the Date
// header of one GET /version (any status carries it) and refuses a local
// clock too far ahead. An answer without a Date header (a proxy that drops
// it) cannot tell: it is let through with a warning on warn.
func checkClockAgainstAPIServer(ctx context.Context, cfg *rest.Config, warn io.Writer, use clockUse) error {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return fmt.Errorf("reading the apiserver's clock: %w", err)
	}
	base, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return fmt.Errorf("reading the apiserver's clock: %w", err)
	}
	u := *base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/version"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("reading the apiserver's clock: %w", err)
	}
	sent := localClock()
	resp, err := hc.Do(req)
	received := localClock()
	if err != nil {
		return fmt.Errorf("reading the apiserver's clock (GET %s): %w", u.String(), err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		fmt.Fprintf(warn, "warning: the apiserver's answer to GET %s has no usable Date header (%q): cannot check that %s clock is not ahead of the cluster's\n",
			u.String(), resp.Header.Get("Date"), use.whose)
		return nil
	}
	return clockAheadProblem(clockAhead(sent, received, date), received, date, use)
}

// logLines is an io.Writer logging each write as one info line (serve's
// clock check warns through it).
type logLines struct{ log logr.Logger }

func (l logLines) Write(p []byte) (int, error) {
	l.log.Info(strings.TrimSpace(string(p)))
	return len(p), nil
}
