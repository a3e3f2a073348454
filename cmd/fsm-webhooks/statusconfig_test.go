package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestServedWebhooks: the webhooks `certs status` checks are those the
// servers' Deployment serves; a --webhooks serve would refuse is an error
// naming it and the Deployment.
func TestServedWebhooks(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flags   map[string]string
		want    string
		wantErr string
	}{
		{"no flag: serve's default", map[string]string{"mesh-name": "fsm"}, "injector,validator,converter", ""},
		{"all three", map[string]string{"webhooks": "injector,validator,converter"}, "injector,validator,converter", ""},
		{"two", map[string]string{"webhooks": "injector,validator"}, "injector,validator", ""},
		{"order kept", map[string]string{"webhooks": "converter,injector"}, "converter,injector", ""},
		{"one", map[string]string{"webhooks": "validator"}, "validator", ""},
		{"unknown", map[string]string{"webhooks": "injector,mutator"}, "", `invalid value "injector,mutator" for --webhooks in Deployment ns/d: "mutator" is not one of injector, validator, converter`},
		{"empty", map[string]string{"webhooks": ""}, "", `"" is not one of`},
		{"twice", map[string]string{"webhooks": "injector,injector"}, "", "injector is listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := servedWebhooks(tc.flags, "Deployment ns/d")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v; want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || strings.Join(got, ",") != tc.want {
				t.Fatalf("got %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}

// TestLocalStatusArgs: the `certs status` local suggests carries local's
// settings that certs status reads, no secret, and nothing it lacks.
func TestLocalStatusArgs(t *testing.T) {
	o := &options{}
	fs := pflag.NewFlagSet("local", pflag.ContinueOnError)
	for _, g := range flagScopes["local"] {
		g.add(o, fs)
	}
	if err := fs.Parse([]string{"--mesh-name=demo", "--vault-token=s3cret", "--trust-domain=example.org", "--vault-role=a b"}); err != nil {
		t.Fatal(err)
	}
	o.webhookURLHost = "127.0.0.1"
	got := strings.Join(localStatusArgs(o, fs), " ")
	if want := "--fsm-namespace=fsm-system --mesh-name=demo --vault-role='a b' --webhook-url-host=127.0.0.1"; got != want {
		t.Errorf("certs status %s; want %s", got, want)
	}
}

// refusingValue is a flag value whose Set fails with errRefused.
type refusingValue struct{}

var errRefused = errors.New("refused")

func (refusingValue) String() string   { return "" }
func (refusingValue) Set(string) error { return errRefused }
func (refusingValue) Type() string     { return "refusing" }

// TestApplyDeploymentFlagsWrapsTheCause: the error of a flag the
// Deployment sets to a bad value names the flag and wraps why, so callers
// can errors.Is it (it was printed with %v).
func TestApplyDeploymentFlagsWrapsTheCause(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.Var(refusingValue{}, "thing", "")
	err := applyDeploymentFlags(fs, map[string]string{"thing": "x"}, "Deployment fsm-system/fsm-webhooks")
	if want := `invalid value "x" for --thing in Deployment fsm-system/fsm-webhooks: refused`; err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if !errors.Is(err, errRefused) {
		t.Errorf("errors.Is(%v, errRefused) = false", err)
	}
}
