package vault

import (
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// Vault shortens a certificate whose TTL is above the role's max_ttl (or the
// mount's max lease TTL) instead of refusing it. These metrics let an
// operator alert on it; the log line says what to change. A certificate the
// Issuer itself cut at its CA's expiry is not counted: nothing the role
// allows would make it longer (see reportCACap).
var (
	ttlClamped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fsm_webhooks_vault_ttl_clamped_total",
		Help: "Certificates Vault issued valid for less than requested (role max_ttl or mount max lease TTL), by Vault role.",
	}, []string{"role"})
	grantedValidity = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fsm_webhooks_vault_ttl_granted_seconds",
		Help: "Validity Vault granted to the latest certificate it issued valid for less than requested, by Vault role; " +
			"absent once a certificate is issued as asked for longer than that (the role's limit was raised).",
	}, []string{"role"})

	// grants is what grantedValidity shows, by role: a gauge cannot be
	// read back.
	grants = &roleGrants{byRole: map[string]time.Duration{}}
)

// roleGrants keeps fsm_webhooks_vault_ttl_granted_seconds to the present: a
// role's series is set by each clamp and dropped once Vault issues a
// certificate as asked for longer than the last clamp granted, which proves
// the role's limit was raised. An alert on the gauge then clears instead of
// showing the old grant forever. A certificate asked for no longer than that
// grant proves nothing (a role clamped at 24h serves 1h as asked) and leaves
// the series.
type roleGrants struct {
	mu     sync.Mutex
	byRole map[string]time.Duration
}

func (g *roleGrants) clamped(role string, d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.byRole[role] = d
	grantedValidity.WithLabelValues(role).Set(d.Round(time.Second).Seconds())
}

// issuedAsAsked notes a certificate of role issued valid for the asked ttl.
func (g *roleGrants) issuedAsAsked(role string, ttl time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	last, ok := g.byRole[role]
	if !ok || ttl <= last+grantSlack(last) {
		return
	}
	delete(g.byRole, role)
	grantedValidity.DeleteLabelValues(role)
}

func init() {
	metrics.Registry.MustRegister(ttlClamped, grantedValidity)
}

// clampLogSize bounds the grants remembered; past it the oldest is forgotten
// (and would be logged again), so memory stays bounded even if the granted
// validity keeps changing.
const clampLogSize = 32

// grantSlack is how far two validities may differ and still be the same
// grant: x509 times have second precision, Vault reads its clock a request's
// latency after ours, and the two clocks may be a little apart.
func grantSlack(d time.Duration) time.Duration {
	return max(5*time.Second, d/100)
}

// shortened reports whether a certificate valid for granted from the moment
// it was requested falls short of requested by more than measurement noise.
func shortened(requested, granted time.Duration) bool {
	return granted < requested-grantSlack(requested)
}

func sameGrant(a, b time.Duration) bool {
	d := a - b
	if d < 0 {
		d = -d
	}
	return d <= grantSlack(max(a, b))
}

type grant struct{ requested, granted time.Duration }

// clampLog remembers the shortenings already logged, so a role that shortens
// every certificate costs one log line, not one per pod admission. An Issuer
// talks to one role, so this is once per (role, requested, granted).
type clampLog struct {
	mu     sync.Mutex
	logged []grant // oldest first
}

// first records (requested, granted) and reports whether it is new: no
// grant within grantSlack of granted was recorded for the same request.
func (c *clampLog) first(requested, granted time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.logged {
		if g.requested == requested && sameGrant(g.granted, granted) {
			return false
		}
	}
	if len(c.logged) >= clampLogSize {
		c.logged = append(c.logged[:0], c.logged[1:]...)
	}
	c.logged = append(c.logged, grant{requested: requested, granted: granted})
	return true
}

// reportClamp counts a certificate Vault shortened and logs the first of its
// kind. The certificate is used as issued: serving certificates are renewed
// from their own lifetime, but nothing renews a pod's bootstrap certificate.
func (i *Issuer) reportClamp(req certs.Request, granted time.Duration, vaultWarning string) {
	ttlClamped.WithLabelValues(i.opts.Role).Inc()
	grants.clamped(i.opts.Role, granted)
	if !i.clamps.first(req.Validity, granted) {
		return
	}
	shown := displayValidity(granted)
	i.opts.Logger.Error(nil, "Vault issues certificates valid for less than requested; using them as issued (logged once per requested and granted validity)",
		"role", i.opts.Role, "mount", i.mount, "commonName", req.CommonName,
		"requested", req.Validity.String(), "granted", shown.String(), "vaultWarning", vaultWarning,
		"impact", fmt.Sprintf("webhook serving certificates are renewed before they expire, but nothing renews a pod's sidecar bootstrap certificate: "+
			"every meshed pod holds an expired one %s after it was created", shown),
		// "vault write" would replace the role, resetting allow_any_name and
		// the rest to their defaults; "vault patch" (Vault 1.11+) changes
		// max_ttl only.
		"action", fmt.Sprintf("raise max_ttl of Vault role %q, and the max lease TTL of mount %q, to at least --bootstrap-cert-validity-duration "+
			"(vault patch %s/roles/%s max_ttl=87600h; vault secrets tune -max-lease-ttl=87600h %s); "+
			"certificates that would outlive the mount's CA are cut at its expiry", i.opts.Role, i.mount, i.mount, i.opts.Role, i.mount))
}

// caCapLog remembers the CAs whose expiry already cut a certificate, so the
// note costs one line per CA (normally one: FSM's documented root ends
// before any 87600h leaf would), not one per pod admission.
type caCapLog struct {
	mu     sync.Mutex
	logged []string // oldest first
}

func (c *caCapLog) first(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range c.logged {
		if k == key {
			return false
		}
	}
	if len(c.logged) >= clampLogSize {
		c.logged = append(c.logged[:0], c.logged[1:]...)
	}
	c.logged = append(c.logged, key)
	return true
}

// reportCACap notes, once per CA, that a certificate was cut at the expiry
// of the CA that signed it. Informational: the certificate could not be
// verified past its CA anyway, so the date to act on is the CA's own.
func (i *Issuer) reportCACap(req certs.Request, granted time.Duration, signer *certs.Bundle) {
	var ca *x509.Certificate
	for _, c := range signer.Certificates() {
		if ca == nil || c.NotAfter.Before(ca.NotAfter) {
			ca = c
		}
	}
	if ca == nil || !i.caCaps.first(string(ca.Raw)) {
		return
	}
	end := ca.NotAfter.UTC().Format(time.RFC3339)
	i.opts.Logger.Info("Vault certificates that would outlive their CA end with it (logged once per CA)",
		"role", i.opts.Role, "mount", i.mount, "commonName", req.CommonName,
		"requested", req.Validity.String(), "granted", displayValidity(granted).String(),
		"ca", ca.Subject.String(), "caNotAfter", end,
		"impact", fmt.Sprintf("certificates from this CA, pods' sidecar bootstrap certificates included, are valid until at most %s: rotate the mount's root before then (certs/rootrotation)", end))
}
