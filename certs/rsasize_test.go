package certs

import (
	"crypto/rsa"
	"testing"
)

func TestRSAKeySizes(t *testing.T) {
	for _, tc := range []struct {
		bits int
		want KeyAlgorithm // "" = refused
	}{
		{2048, RSA2048},
		{3072, RSA3072},
		{4096, RSA4096},
		{2560, "RSA2560"},
		{2049, "RSA2049"},
		{2047, ""},
		{4097, ""},
		{1024, ""},
		{0, ""},
	} {
		got, err := RSAKeyAlgorithm(tc.bits)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("RSAKeyAlgorithm(%d) = %q, %v; want %q", tc.bits, got, err, tc.want)
		}
		if tc.want == "" {
			continue
		}
		if err := got.Validate(); err != nil {
			t.Errorf("%s.Validate() = %v", got, err)
		}
		if got.RSABits() != tc.bits {
			t.Errorf("%s.RSABits() = %d, want %d", got, got.RSABits(), tc.bits)
		}
	}
	for _, bad := range []KeyAlgorithm{"RSA", "RSA+2560", "RSA02560", "RSA1024", "RSA8192", "rsa2560", "ECDSAP521"} {
		if bad.RSABits() != 0 || bad.Validate() == nil {
			t.Errorf("%q accepted (bits %d)", bad, bad.RSABits())
		}
		if _, err := GenerateKey(bad); err == nil {
			t.Errorf("GenerateKey(%q) succeeded", bad)
		}
	}
}

func TestGenerateUnnamedRSASize(t *testing.T) {
	k, err := GenerateKey("RSA2560")
	if err != nil {
		t.Fatal(err)
	}
	if n := k.(*rsa.PrivateKey).N.BitLen(); n != 2560 {
		t.Fatalf("key has %d bits, want 2560", n)
	}
	if alg, err := AlgorithmOf(k.Public()); err != nil || alg != "RSA2560" {
		t.Errorf("AlgorithmOf = %q, %v; want RSA2560", alg, err)
	}
}
