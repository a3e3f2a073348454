package vault

import (
	"context"
	"encoding/json"
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
		Help: "1 while the Vault token in use is being renewed, 0 once it cannot be (not renewable, at its max TTL, renewals failing); absent for a token that does not expire.",
	}, nil)
	tokenRenewals = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fsm_webhooks_vault_token_renewals_total",
		Help: "Renewals of the Vault token that Vault accepted.",
	})
)

func init() {
	metrics.Registry.MustRegister(tokenExpiry, tokenRenewing, tokenRenewals)
}

// How long a failed token lookup waits before the next, doubling between the
// two bounds.
const (
	tokenRetryMin = 10 * time.Second
	tokenRetryMax = 5 * time.Minute
)

// tokenLife is what lookup-self says of a token.
type tokenLife struct {
	ttl       time.Duration // 0: it does not expire
	renewable bool
	// increment is asked for at each renewal: the TTL the token was
	// created with, so that renewing does not lengthen it beyond what its
	// creator chose (a periodic token's period wins in Vault anyway).
	increment time.Duration
}

// KeepTokenAlive renews the Vault token for as long as Vault lets it, as
// Vault Agent would: a renewable token with a TTL is renewed at about two
// thirds of it (vaultapi.LifetimeWatcher) up to its max TTL, and a token
// rotated in its Secret (reloadToken) is picked up and renewed in turn. A
// token that does not expire is left alone; one that cannot be renewed (not
// renewable, at its max TTL, no permission) is logged once with its expiry,
// which fsm_webhooks_vault_token_expiry_timestamp_seconds also shows: write
// a new token into the Secret before then. It returns when ctx is done.
func (i *Issuer) KeepTokenAlive(ctx context.Context) {
	delay := tokenRetryMin
	var said string // the last message logged, so that a retry loop logs it once
	say := func(msg string, kv ...any) {
		if line := fmt.Sprint(msg, kv); line != said {
			said = line
			i.opts.Logger.Info(msg, kv...)
		}
	}
	for {
		token := i.client.Token()
		changed, err := i.keepAlive(ctx, token, say)
		if ctx.Err() != nil {
			return
		}
		if changed {
			delay = tokenRetryMin
			continue
		}
		var retry <-chan time.Time
		if err != nil {
			if line := err.Error(); line != said {
				said = line
				i.opts.Logger.Error(err, "The Vault token's lifetime is not watched until this succeeds", "retryIn", delay)
			}
			retry = time.After(delay)
			delay = min(2*delay, tokenRetryMax)
		} else {
			delay = tokenRetryMin
		}
		select {
		case <-ctx.Done():
			return
		case <-i.tokenChanged:
		case <-retry:
		}
	}
}

// keepAlive watches token until it can no longer be renewed (nil), an error
// stops it, ctx is done, or the Issuer switches to another token (changed).
func (i *Issuer) keepAlive(ctx context.Context, token string, say func(string, ...any)) (changed bool, err error) {
	c, err := i.client.Clone()
	if err != nil {
		return false, fmt.Errorf("a Vault client for the token's renewal: %w", err)
	}
	c.SetToken(token)
	life, err := lookupSelf(ctx, c)
	if err != nil {
		return false, i.explain("auth/token/lookup-self", err)
	}
	if life.ttl == 0 {
		tokenExpiry.Reset()
		tokenRenewing.Reset()
		say("The Vault token does not expire: it is not renewed")
		return false, nil
	}
	expires := time.Now().Add(life.ttl)
	tokenExpiry.WithLabelValues().Set(float64(expires.Unix()))
	if !life.renewable {
		tokenRenewing.WithLabelValues().Set(0)
		say("The Vault token is not renewable: write a new token into its Secret before it expires",
			"expires", expires.UTC().Format(time.RFC3339), "secret", i.tokenSource())
		return false, nil
	}
	w, err := c.NewLifetimeWatcher(&vaultapi.LifetimeWatcherInput{
		Secret:    &vaultapi.Secret{Auth: &vaultapi.SecretAuth{ClientToken: token, Renewable: true, LeaseDuration: int(life.ttl / time.Second)}},
		Increment: int(life.increment / time.Second),
	})
	if err != nil {
		return false, fmt.Errorf("watching the Vault token: %w", err)
	}
	go w.Start()
	defer w.Stop()
	tokenRenewing.WithLabelValues().Set(1)
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case <-i.tokenChanged:
			return true, nil
		case r := <-w.RenewCh():
			expires = r.RenewedAt.Add(time.Duration(r.Secret.Auth.LeaseDuration) * time.Second)
			tokenExpiry.WithLabelValues().Set(float64(expires.Unix()))
			tokenRenewals.Inc()
			i.opts.Logger.V(1).Info("Renewed the Vault token", "expires", expires.UTC().Format(time.RFC3339))
		case err := <-w.DoneCh():
			tokenRenewing.WithLabelValues().Set(0)
			if err != nil {
				return false, fmt.Errorf("renewing the Vault token: %w", err)
			}
			// The watcher gives up near the end of a lease it can no longer
			// extend: the token's max TTL, or a policy without renew-self.
			say("The Vault token can no longer be renewed (its max TTL, or no permission to renew itself): write a new token into its Secret before it expires",
				"expires", expires.UTC().Format(time.RFC3339), "secret", i.tokenSource())
			return false, nil
		}
	}
}

// lookupSelf reads the lifetime of c's token.
func lookupSelf(ctx context.Context, c *vaultapi.Client) (tokenLife, error) {
	s, err := c.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return tokenLife{}, err
	}
	var life tokenLife
	if life.ttl, err = s.TokenTTL(); err != nil {
		return tokenLife{}, fmt.Errorf("auth/token/lookup-self: ttl: %w", err)
	}
	if life.renewable, err = s.TokenIsRenewable(); err != nil {
		return tokenLife{}, fmt.Errorf("auth/token/lookup-self: renewable: %w", err)
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
