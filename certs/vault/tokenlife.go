package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// A token with a TTL (`vault token create` gives 768h unless told otherwise)
// stops working when it expires, and with it every pod create. These let an
// operator alert before that: the expiry is absent while the token does not
// expire or is not known.
var (
	tokenExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fsm_webhooks_vault_token_expiry_timestamp_seconds",
		Help: "When the Vault token in use expires (Unix seconds), as last looked up or renewed; absent for a token that does not expire.",
	}, nil)
	tokenRenewing = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fsm_webhooks_vault_token_renewing",
		Help: "1 while the Vault token in use is renewed (its last renewal succeeded and extended it), 0 when it cannot be (not renewable, at its max TTL, a lookup or renewal failing); absent for a token that does not expire.",
	}, nil)
	tokenRenewals = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fsm_webhooks_vault_token_renewals_total",
		Help: "Renewals of the Vault token that Vault accepted.",
	})
)

func init() {
	metrics.Registry.MustRegister(tokenExpiry, tokenRenewing, tokenRenewals)
}

// How long a failed lookup or renewal waits before the next, doubling
// between the two bounds (and never past a quarter of the token's
// remaining life); how often a token Secret is re-read for a rotated token.
const (
	tokenRetryMin   = 10 * time.Second
	tokenRetryMax   = 5 * time.Minute
	tokenSecretPoll = time.Minute
	// tokenIdle is how long a token with nothing to renew is left before
	// it is looked up again (its Secret is still re-read every
	// tokenSecretPoll).
	tokenIdle = time.Hour
)

// tokenLife is what lookup-self says of a token.
type tokenLife struct {
	// expires is when it expires; zero for a token that does not (a
	// token's ttl reads 0 in its last second too).
	expires   time.Time
	ttl       time.Duration
	renewable bool
	// increment is asked for at each renewal: the TTL the token was
	// created with, so that renewing does not lengthen it beyond what its
	// creator chose (a periodic token's period wins in Vault anyway).
	increment time.Duration
}

// KeepTokenAlive renews the Vault token for as long as Vault lets it, as
// Vault Agent would: a renewable token with a TTL is renewed
// (auth/token/renew-self) at once, then at about two thirds of each lease,
// up to its max TTL. A failed lookup or renewal (Vault down or sealed, a
// 403) is logged once and retried with a backoff from 10 s to 5 min,
// sooner as the token nears its end, and sets
// fsm_webhooks_vault_token_renewing to 0 until a renewal succeeds again. A
// token Secret is re-read every minute: a rotated token is switched to
// (once Vault accepts it), so it is renewed from then on, with no issuance
// needed. A token that does not expire is left alone; one that cannot be
// extended (not renewable, at its max TTL) is logged once with its expiry.
// It returns when ctx is done.
//
// The API client's LifetimeWatcher is not used: it treats a 403 on
// renew-self as "not renewable" without a word, retries without pause
// against an unavailable Vault (its backoff's Stop is never set), and gives
// up for good after an outage near the end of a lease.
func (i *Issuer) KeepTokenAlive(ctx context.Context) {
	k := &keeper{i: i, backoff: tokenRetryMin}
	var poll <-chan time.Time
	if i.opts.Token == "" {
		every := i.opts.TokenSecretPoll
		if every <= 0 {
			every = tokenSecretPoll
		}
		t := time.NewTicker(every)
		defer t.Stop()
		poll = t.C
	}
	for {
		timer := time.NewTimer(k.step(ctx, i.client().Token()))
		// Until the step is due, or the token changes: a Secret re-read
		// that finds the same token neither renews early nor cuts a
		// backoff short.
		for due := false; !due; {
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-i.tokenChanged:
				due = true
			case <-poll:
				due = k.pollSecret(ctx)
			case <-timer.C:
				due = true
			}
		}
		timer.Stop()
	}
}

// keeper is KeepTokenAlive's state between steps.
type keeper struct {
	i       *Issuer
	backoff time.Duration
	said    string // the last message logged, so that each is logged once
	// polled is the last problem with the token Secret logged (its own
	// memory: the Secret is re-read every minute, between steps).
	polled string
	// expires is the token's expiry as last known (zero: unknown), which
	// bounds the wait after a failure.
	expires time.Time
}

func (k *keeper) log(err error, msg string, kv ...any) {
	line := fmt.Sprint(err, msg, kv)
	if line == k.said {
		return
	}
	k.said = line
	if err != nil {
		k.i.opts.Logger.Error(err, msg, kv...)
		return
	}
	k.i.opts.Logger.Info(msg, kv...)
}

// retry is how long to wait after a failure, and doubles the next; a token
// known to expire soon is tried again sooner.
func (k *keeper) retry() time.Duration {
	d := k.backoff
	k.backoff = min(2*k.backoff, tokenRetryMax)
	if left := time.Until(k.expires); !k.expires.IsZero() && left > 0 {
		d = min(d, max(left/4, time.Second))
	}
	return d
}

// step looks token up and renews it if it can, and returns how long to wait
// before the next step.
func (k *keeper) step(ctx context.Context, token string) time.Duration {
	i := k.i
	c, err := i.client().Clone()
	if err != nil {
		k.log(err, "The Vault token is not renewed: no client")
		return k.retry()
	}
	c.SetToken(token)
	life, err := lookupSelf(ctx, c)
	if err != nil && ctx.Err() != nil {
		return k.retry() // cut short by the process stopping: nothing failed
	}
	if err != nil {
		tokenRenewing.WithLabelValues().Set(0)
		k.log(i.explain("auth/token/lookup-self", err), "Looking up the Vault token failed: it is not renewed until this succeeds",
			"secret", i.tokenSource())
		return k.retry()
	}
	if life.expires.IsZero() {
		k.expires = time.Time{}
		tokenExpiry.Reset()
		tokenRenewing.Reset()
		k.backoff = tokenRetryMin
		k.log(nil, "The Vault token does not expire: it is not renewed")
		return tokenIdle
	}
	expires := life.expires
	k.expires = expires
	tokenExpiry.WithLabelValues().Set(float64(expires.Unix()))
	if !life.renewable {
		tokenRenewing.WithLabelValues().Set(0)
		k.backoff = tokenRetryMin
		k.log(nil, "The Vault token is not renewable: write a new token into its Secret before it expires",
			"expires", expires.UTC().Format(time.RFC3339), "secret", i.tokenSource())
		return min(tokenIdle, max(life.ttl, time.Second))
	}
	s, err := c.Auth().Token().RenewSelfWithContext(ctx, int(life.increment/time.Second))
	if err == nil && (s == nil || s.Auth == nil) {
		err = errors.New("auth/token/renew-self answered without auth data")
	}
	if err != nil && ctx.Err() != nil {
		return k.retry() // cut short by the process stopping: nothing failed
	}
	if err != nil {
		tokenRenewing.WithLabelValues().Set(0)
		wait := k.retry()
		k.log(i.explain("auth/token/renew-self", err), "Renewing the Vault token failed: retrying",
			"in", wait, "expires", expires.UTC().Format(time.RFC3339), "secret", i.tokenSource())
		return wait
	}
	k.backoff = tokenRetryMin
	tokenRenewals.Inc()
	lease := time.Duration(s.Auth.LeaseDuration) * time.Second
	before := expires
	expires = time.Now().Add(lease)
	k.expires = expires
	tokenExpiry.WithLabelValues().Set(float64(expires.Unix()))
	// Granted less than asked and not moved later: the token's max TTL
	// (or the mount's) is reached, and no renewal takes it past expires.
	// (A fresh token's first renewal does not move it either, but is
	// granted all it asks.)
	if lease < life.increment && !expires.After(before.Add(time.Second)) {
		tokenRenewing.WithLabelValues().Set(0)
		k.log(nil, "The Vault token can no longer be extended (its max TTL): write a new token into its Secret before it expires",
			"expires", expires.UTC().Format(time.RFC3339), "secret", i.tokenSource())
		return min(tokenIdle, max(lease, time.Second))
	}
	tokenRenewing.WithLabelValues().Set(1)
	k.log(nil, "Renewing the Vault token at two thirds of each lease", "lease", lease)
	i.opts.Logger.V(1).Info("Renewed the Vault token", "expires", expires.UTC().Format(time.RFC3339))
	return renewAfter(lease)
}

// renewAfter is how long after a renewal granted lease the next is due: at
// two thirds of it, which leaves a third for a slow Vault, a failed call's
// retries or a starved process.
func renewAfter(lease time.Duration) time.Duration {
	return max(lease*2/3, time.Second)
}

// pollSecret re-reads the token Secret and, when it holds another token
// that Vault accepts (lookup-self), uses it from now on: a token rotated
// there is picked up, and renewed, before the old one is revoked or
// expires, with no issuance needed to notice. A problem (the Secret
// unreadable, its token refused) is logged once, until it changes. It
// reports whether it switched.
func (k *keeper) pollSecret(ctx context.Context) bool {
	i := k.i
	report := func(err error, msg string) {
		if ctx.Err() != nil {
			return // cut short by the process stopping: nothing failed
		}
		if line := msg + err.Error(); line != k.polled {
			k.polled = line
			i.opts.Logger.Error(err, msg, "secret", i.tokenSource())
		}
	}
	token, err := readToken(ctx, i.opts)
	if err != nil {
		report(err, "Re-reading the Vault token Secret failed")
		return false
	}
	if token == i.client().Token() {
		k.polled = ""
		return false
	}
	c, err := i.client().Clone()
	if err != nil {
		report(err, "The token in the Vault token Secret is not used: no client")
		return false
	}
	c.SetToken(token)
	if _, err := lookupSelf(ctx, c); err != nil {
		report(i.explain("auth/token/lookup-self", err), "The token in the Vault token Secret is not used: Vault does not accept it")
		return false
	}
	k.polled = ""
	i.tokenMu.Lock()
	i.client().SetToken(token)
	i.tokenMu.Unlock()
	i.opts.Logger.Info("Using the new Vault token in its Secret", "secret", i.tokenSource())
	return true
}

// lookupSelf reads the lifetime of c's token.
func lookupSelf(ctx context.Context, c *vaultapi.Client) (tokenLife, error) {
	s, err := c.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return tokenLife{}, err
	}
	if s == nil {
		// A 2xx without a body (the client's ParseSecret gives nil, nil):
		// not Vault's answer, perhaps a proxy's.
		return tokenLife{}, errors.New("auth/token/lookup-self answered without data")
	}
	var life tokenLife
	if life.ttl, err = s.TokenTTL(); err != nil {
		return tokenLife{}, fmt.Errorf("auth/token/lookup-self: ttl: %w", err)
	}
	if life.renewable, err = s.TokenIsRenewable(); err != nil {
		return tokenLife{}, fmt.Errorf("auth/token/lookup-self: renewable: %w", err)
	}
	if at, ok := s.Data["expire_time"].(string); ok && at != "" {
		if life.expires, err = time.Parse(time.RFC3339Nano, at); err != nil {
			return tokenLife{}, fmt.Errorf("auth/token/lookup-self: expire_time: %w", err)
		}
	}
	if s.Data != nil {
		if n, ok := s.Data["creation_ttl"].(json.Number); ok {
			if secs, err := n.Int64(); err == nil {
				life.increment = time.Duration(secs) * time.Second
			}
		}
	}
	return life, nil
}

// tokenSource names where the token comes from, for messages.
func (i *Issuer) tokenSource() string {
	if i.opts.Token != "" {
		return "--vault-token"
	}
	return i.opts.TokenSecretNamespace + "/" + i.opts.TokenSecretName
}
