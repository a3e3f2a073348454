package certs

import (
	"crypto/x509"
	"math"
	"strings"
	"testing"
	"time"
)

// lifetime builds the only fields Renewal reads.
func lifetime(notBefore time.Time, life time.Duration, raw string) *x509.Certificate {
	return &x509.Certificate{NotBefore: notBefore, NotAfter: notBefore.Add(life), Raw: []byte(raw)}
}

func spreadOf(u float64) func(*x509.Certificate) float64 {
	return func(*x509.Certificate) float64 { return u }
}

func TestRenewalAt(t *testing.T) {
	threeHours := lifetime(t0, 3*time.Hour, "a")
	decade := lifetime(t0, 87600*time.Hour, "b")
	for _, tc := range []struct {
		name string
		r    Renewal
		cert *x509.Certificate
		want time.Duration // after NotBefore
	}{
		{"default, latest in the window", Renewal{Spread: spreadOf(0)}, threeHours, 2 * time.Hour},
		{"default, earliest: a tenth of the lifetime before 2/3", Renewal{Spread: spreadOf(1)}, threeHours, 2*time.Hour - 18*time.Minute},
		{"default, middle", Renewal{Spread: spreadOf(0.5)}, threeHours, 2*time.Hour - 9*time.Minute},
		{"fraction 1/2", Renewal{Fraction: 0.5, Spread: spreadOf(1)}, threeHours, 72 * time.Minute},
		{"jitter clamped to a quarter of the fraction: never before half-life", Renewal{Jitter: 0.6, Spread: spreadOf(1)}, threeHours, 90 * time.Minute},
		{"negative jitter: none", Renewal{Jitter: -1, Spread: spreadOf(1)}, threeHours, 2 * time.Hour},
		{"fraction 1: at expiry, never after", Renewal{Fraction: 1, Spread: spreadOf(0)}, decade, 87600 * time.Hour},
		{"fraction above 1 means the default", Renewal{Fraction: 7, Spread: spreadOf(0)}, threeHours, 2 * time.Hour},
		{"NaN fraction means the default", Renewal{Fraction: math.NaN(), Spread: spreadOf(0)}, threeHours, 2 * time.Hour},
		{"NaN jitter means the default", Renewal{Jitter: math.NaN(), Spread: spreadOf(1)}, threeHours, 2*time.Hour - 18*time.Minute},
		{"spread above 1 clamped", Renewal{Spread: spreadOf(5)}, threeHours, 2*time.Hour - 18*time.Minute},
		{"negative spread clamped", Renewal{Spread: spreadOf(-1)}, threeHours, 2 * time.Hour},
		{"NaN spread clamped", Renewal{Spread: spreadOf(math.NaN())}, threeHours, 2 * time.Hour},
		{"no lifetime: due at once", Renewal{Spread: spreadOf(0)}, lifetime(t0, -time.Hour, "c"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.At(tc.cert).Sub(tc.cert.NotBefore); got != tc.want {
				t.Fatalf("At = NotBefore+%s, want NotBefore+%s", got, tc.want)
			}
		})
	}
}

func TestRenewalWindow(t *testing.T) {
	c := lifetime(t0, 3*time.Hour, "a")
	for _, tc := range []struct {
		name                     string
		r                        Renewal
		wantEarliest, wantLatest time.Duration
	}{
		{"default", Renewal{}, 102 * time.Minute, 2 * time.Hour},
		{"jitter 0.5 clamped to a quarter of fraction 0.75", Renewal{Fraction: 0.75, Jitter: 0.5}, 101*time.Minute + 15*time.Second, 135 * time.Minute},
		{"no jitter", Renewal{Jitter: -1}, 2 * time.Hour, 2 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			earliest, latest := tc.r.Window(c)
			if earliest.Sub(t0) != tc.wantEarliest || latest.Sub(t0) != tc.wantLatest {
				t.Fatalf("Window = (+%s, +%s), want (+%s, +%s)", earliest.Sub(t0), latest.Sub(t0), tc.wantEarliest, tc.wantLatest)
			}
		})
	}
}

// TestProcessSpread: without an injected Spread, one process places a
// certificate at one point (repeated checks agree), inside the window, and
// spreads different certificates over it.
func TestProcessSpread(t *testing.T) {
	var r Renewal
	seen := map[time.Time]bool{}
	for _, raw := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		c := lifetime(t0, 3*time.Hour, raw)
		at := r.At(c)
		if again := r.At(c); !again.Equal(at) {
			t.Fatalf("cert %q: At = %s, then %s", raw, at, again)
		}
		if earliest, latest := r.Window(c); at.Before(earliest) || at.After(latest) {
			t.Fatalf("cert %q: At = +%s outside the window (+%s, +%s)", raw, at.Sub(t0), earliest.Sub(t0), latest.Sub(t0))
		}
		seen[at] = true
	}
	if len(seen) < 4 {
		t.Fatalf("8 certificates share %d renewal instants", len(seen))
	}
}

func TestChainsTo(t *testing.T) {
	root := mustRoot(t, ECDSAP256, RootCAValidity, t0)
	other := mustRoot(t, ECDSAP256, RootCAValidity, t0)
	leaf := mustIssue(t, root, Request{CommonName: "svc.ns.svc", Validity: time.Hour, Usage: UsageServer}, ECDSAP256, t0)
	for _, tc := range []struct {
		name    string
		certPEM []byte
		root    *x509.Certificate
		at      time.Time
		wantErr string
	}{
		{"its root", leaf.CertPEM, root.Cert, t0, ""},
		{"another root", leaf.CertPEM, other.Cert, t0, `certificate "svc.ns.svc" does not chain to root "fsm-ca.flomesh.io" (serial ` + other.Cert.SerialNumber.Text(16)},
		{"after the leaf expired", leaf.CertPEM, root.Cert, t0.Add(2 * time.Hour), "expired"},
		{"not PEM", []byte("junk"), root.Cert, t0, "no PEM certificate"},
		// Issued by a CA whose clock runs ahead of ours (cert-manager does
		// not backdate NotBefore).
		{"valid ClockSkew from now", leaf.CertPEM, root.Cert, leafNotBefore(t, leaf.CertPEM).Add(-ClockSkew), ""},
		{"valid an hour from now", leaf.CertPEM, root.Cert, leafNotBefore(t, leaf.CertPEM).Add(-time.Hour), "not yet valid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ChainsTo(tc.certPEM, tc.root, tc.at)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func leafNotBefore(t *testing.T, certPEM []byte) time.Time {
	t.Helper()
	cs, err := ParseCertsPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cs[0].NotBefore
}

// TestRenewalOutlives: a leaf is worth renewing only while a CA of the
// trusted bundle ends more than OutliveMargin after it; its own signer,
// which cut it at (Tresor) or a minute before (Vault, cert-manager) its
// end, does not count, and any other CA that outlives it does, the
// signer's own root included.
func TestRenewalOutlives(t *testing.T) {
	end := t0.Add(3 * time.Minute) // the CA's last minutes
	ca := func(notAfter time.Time) *x509.Certificate {
		return &x509.Certificate{NotBefore: t0.Add(-time.Hour), NotAfter: notAfter, IsCA: true}
	}
	leaf := func(notAfter time.Time) *x509.Certificate {
		return &x509.Certificate{NotBefore: t0.Add(-ClockSkew), NotAfter: notAfter}
	}
	signer := ca(end)
	for _, tc := range []struct {
		name    string
		leaf    *x509.Certificate
		trusted []*x509.Certificate
		want    bool
	}{
		{"cut at its signer's end (Tresor)", leaf(end), []*x509.Certificate{signer}, false},
		{"a minute before its signer (Vault, cert-manager)", leaf(end.Add(-RemoteCASkew)), []*x509.Certificate{signer}, false},
		{"a remote CA's clock ClockSkew behind", leaf(end.Add(-OutliveMargin)), []*x509.Certificate{signer}, false},
		{"nothing trusted", leaf(end), nil, false},
		{"another CA ending with it", leaf(end), []*x509.Certificate{signer, ca(end.Add(OutliveMargin))}, false},
		{"an expired CA beside", leaf(end), []*x509.Certificate{ca(t0.Add(-time.Minute)), signer}, false},
		{"the next root of a rotation", leaf(end), []*x509.Certificate{signer, ca(end.Add(RootCAValidity))}, true},
		{"a CA an admin added, listed first", leaf(end), []*x509.Certificate{ca(end.Add(24 * time.Hour)), signer}, true},
		{"just past the margin", leaf(end), []*x509.Certificate{signer, ca(end.Add(OutliveMargin + time.Second))}, true},
		// An intermediate's root outlives it: the provider may sign with
		// a new intermediate under it that the bundle does not show.
		{"the root of an intermediate signer", leaf(end), []*x509.Certificate{ca(end.Add(365 * 24 * time.Hour))}, true},
		// Vault cuts to the earliest CA when it cannot tell the signer:
		// a signer that outlives the leaf gives a longer one.
		{"cut at another CA than its signer", leaf(end.Add(-RemoteCASkew)), []*x509.Certificate{signer, ca(end.Add(30 * 24 * time.Hour))}, true},
		{"not cut: a day of a decade-long root", leaf(t0.Add(24 * time.Hour)), []*x509.Certificate{ca(t0.Add(RootCAValidity))}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RenewalOutlives(tc.leaf, tc.trusted); got != tc.want {
				t.Errorf("RenewalOutlives(leaf ending %s, CAs %v) = %v, want %v", tc.leaf.NotAfter.Sub(end), notAfters(tc.trusted, end), got, tc.want)
			}
		})
	}
}

func notAfters(cas []*x509.Certificate, from time.Time) []time.Duration {
	var out []time.Duration
	for _, c := range cas {
		out = append(out, c.NotAfter.Sub(from))
	}
	return out
}
