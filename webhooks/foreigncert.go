package webhooks

import (
	"bytes"
	"crypto/x509"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

// foreignCertHold is how long, in SettleDelays, a replica keeps a serving
// cert that another writer stored, that its own trust does not verify but
// the caBundle in the API does, before it replaces it with one of its own
// root: 30 s with serve's SettleDelay (3 s).
//
// Replicas whose trust differs share the serving-cert Secret during a
// rolling update that changes the mesh CA (the certificate provider, tresor's
// CA Secret name, the cert-manager issuer, or the helm rollback of any of
// them). Each found the other's cert untrusted and replaced it at once, with
// nothing to wait for: the caBundle already held both roots. The Secret was
// rewritten some 10-20 times a second until the old replicas stopped, and the
// replica that had just moved the cert to its root dropped the other root
// from the caBundle while the other replica wrote a cert of that root, so
// calls failed TLS (TestServing/MixedTrustRollout: 174-309 writes and 3-136
// of 500 admissions failed in 15 s). Held, the cert moves at most once per
// hold per replica, and it is one the apiserver trusts meanwhile. A cert the
// caBundle does not verify is never held: it is replaced as soon as the
// caBundle settles, as before.
const foreignCertHold = 10

// certHold is what a hook remembers to decide holdForeign: the cert it last
// wrote, and the foreign cert it last saw and since when. The loop's alone.
type certHold struct {
	own          []byte
	foreign      []byte
	foreignSince time.Time
}

// wrote records cert (tls.crt) as this hook's own write.
func (c *certHold) wrote(cert []byte) { c.own = bytes.Clone(cert) }

// wait returns how much longer the stored cert (tls.crt, whose verdict is v)
// is kept rather than replaced: see holdForeign. apiVerifies says whether
// the caBundle in the API verifies it.
func (c *certHold) wait(v servingcert.Verdict, cert []byte, apiVerifies bool, hold time.Duration, now time.Time) time.Duration {
	own := len(cert) > 0 && bytes.Equal(cert, c.own)
	if !own && !bytes.Equal(cert, c.foreign) {
		c.foreign, c.foreignSince = bytes.Clone(cert), now
	}
	return holdForeign(v.Reason, own, apiVerifies, c.foreignSince, hold, now)
}

// holdForeign returns how much longer a stored serving cert is kept instead
// of replaced (0: replace it now, as its verdict says): only a cert this
// replica did not write, first seen at seen, refused only because this
// replica's trust does not verify it (reason), while the caBundle in the API
// verifies it (apiVerifies) so that the apiserver's calls succeed, is kept
// for hold from seen.
func holdForeign(reason servingcert.Reason, own, apiVerifies bool, seen time.Time, hold time.Duration, now time.Time) time.Duration {
	if reason != servingcert.ReasonUntrusted || own || !apiVerifies {
		return 0
	}
	return max(0, seen.Add(hold).Sub(now))
}

// apiVerifiesStored says whether apiBundle, the caBundle in the API,
// verifies the cert stored in data for spec, as the apiserver will when it
// calls the webhook.
func apiVerifiesStored(apiBundle []byte, data map[string][]byte, spec servingcert.Spec, now time.Time) bool {
	if len(apiBundle) == 0 {
		return false
	}
	chain, err := certs.ParseCertsPEM(data[servingcert.KeyCert])
	if err != nil {
		return false
	}
	return servingcert.Verifies(apiBundle, chain, spec.ServerName(), now) == nil
}

// replacedRootKeep is how long, in SettleDelays, a replica keeps in the
// caBundle it publishes the root of a serving cert it has just replaced
// (and of the cert it was serving), after which that root leaves the
// caBundle as it did at once before: 60 s with serve's SettleDelay (3 s).
//
// Replicas whose trust differs share the serving-cert Secret (see
// foreignCertHold), and the one that moved the cert to its root used to
// drop the other root at once, while the other side still wrote certs of
// it: a replica of a release without the hold, which replaces a cert its CA
// does not verify as soon as its caBundle has settled, or a current one
// whose hold of the previous cert ran out meanwhile. Its cert was then
// served under a caBundle without its root and the apiserver's calls failed
// TLS until a repair, up to the repair back-off (30 s), put the root back
// (TestServing/MixedTrustReplacedRootKept). The other side writes its cert
// at the latest one hold after it first saw ours, and its issuer then
// takes milliseconds (tresor) to seconds (Vault, cert-manager, whose
// serving cert is waited for up to 60 s); a second hold covers that and a
// watch lagging on a loaded node. SettleDelay alone would not even cover
// an old release whose caBundle had to settle first, and one hold would end
// as the other side's hold of our cert does, a watch latency before its
// write. A root kept this way is one the caBundle already held: a retiring
// root still leaves it, one keep after the last cert of it this replica
// replaced.
const replacedRootKeep = 2 * foreignCertHold

// keptRoots are the roots a hook keeps in its caBundle after replacing
// certs of them, each until when. The loop's alone.
type keptRoots map[string]keptRoot

type keptRoot struct {
	cert  *x509.Certificate
	until time.Time
}

// keep records roots as kept until until (a later until extends it).
func (k *keptRoots) keep(roots []*x509.Certificate, until time.Time) {
	if len(roots) == 0 {
		return
	}
	if *k == nil {
		*k = keptRoots{}
	}
	for _, r := range roots {
		if cur, ok := (*k)[string(r.Raw)]; ok && !cur.until.Before(until) {
			continue
		}
		(*k)[string(r.Raw)] = keptRoot{cert: r, until: until}
	}
}

// at returns the roots still kept at now as PEM (nil when none), and how
// long until the first of them leaves (0 when none), forgetting those that
// have.
func (k keptRoots) at(now time.Time) ([]byte, time.Duration) {
	var roots []*x509.Certificate
	var next time.Duration
	for der, r := range k {
		left := r.until.Sub(now)
		if left <= 0 {
			delete(k, der)
			continue
		}
		roots = append(roots, r.cert)
		if next == 0 || left < next {
			next = left
		}
	}
	if len(roots) == 0 {
		return nil, 0
	}
	return certs.EncodeCertsPEM(roots...), next
}

// replacedRoots returns the roots that issued the cert a write replaced
// (replaced: the Secret data before it, nil if it created the Secret) and
// the cert this hook served until then: the certificates of each one's
// ca.crt that verify its tls.crt. A ca.crt that verifies nothing (edited by
// hand) gives nothing: only a root another writer may still issue certs of
// is kept.
func replacedRoots(replaced map[string][]byte, served *servingcert.Loaded, now time.Time) []*x509.Certificate {
	var roots []*x509.Certificate
	add := func(chain []*x509.Certificate, ca []byte) {
		if len(chain) == 0 || len(ca) == 0 {
			return
		}
		pemRoots, err := servingcert.IssuingRoots(chain, ca, now)
		if err != nil {
			return
		}
		if cs, err := certs.ParseCertsPEM(pemRoots); err == nil {
			roots = append(roots, cs...)
		}
	}
	if replaced != nil {
		if chain, err := certs.ParseCertsPEM(replaced[servingcert.KeyCert]); err == nil {
			add(chain, replaced[servingcert.KeyCA])
		}
	}
	if served != nil {
		add(served.Chain, served.CA)
	}
	return roots
}
