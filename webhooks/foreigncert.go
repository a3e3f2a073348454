package webhooks

import (
	"bytes"
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
