package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/flomesh-io/fsm-webhooks/certs/certmanager"
	"github.com/flomesh-io/fsm-webhooks/certs/status"
	"github.com/flomesh-io/fsm-webhooks/certs/vault"
)

// notFromDeployment are flags a command reads from the operator only: how to
// reach the cluster, how to print, what to read, and files (--vault-ca-file
// and the Vault client certificate's are paths in the servers' pods, not on
// the operator's machine).
var notFromDeployment = []string{"kubeconfig", "context", "log-level", "output", "deployment", "help",
	"vault-ca-file", "vault-client-cert-file", "vault-client-key-file"}

// runningServers is what runningConfig found of the servers.
type runningServers struct {
	// source says where the configuration came from.
	source string
	// found is false when there is no Deployment (the flags stand alone).
	found bool
	// webhooks are those the servers serve (their --webhooks; all without
	// a Deployment).
	webhooks []string
}

// runningConfig fills the flags the operator did not give from the servers'
// Deployment, validates the result and says where the configuration came
// from and which webhooks the servers serve. --fsm-namespace and
// --mesh-name, when given, narrow the search.
func runningConfig(ctx context.Context, fs *pflag.FlagSet, o *options, cs kubernetes.Interface, deployment string) (running runningServers, err error) {
	namespace, mesh := "", ""
	if fs.Changed("fsm-namespace") || deployment != "" {
		namespace = o.fsmNamespace
	}
	if fs.Changed("mesh-name") {
		mesh = o.meshName
	}
	d, err := status.FindDeployment(ctx, cs, namespace, deployment, mesh)
	if err != nil {
		return runningServers{}, err
	}
	if d == nil {
		if err := o.validate(); err != nil {
			return runningServers{}, fmt.Errorf("no fsm-webhooks Deployment found (%s) to read settings from: %w", deploymentSearch(fs, o, deployment), err)
		}
		return runningServers{source: "flags (no fsm-webhooks Deployment found)", webhooks: allHooks}, nil
	}
	flags, err := status.DeploymentFlags(d)
	if err != nil {
		return runningServers{}, err
	}
	// The chart always names it; a hand-written Deployment may rely on the
	// namespace it runs in.
	if _, ok := flags["fsm-namespace"]; !ok {
		flags["fsm-namespace"] = d.Namespace
	}
	source := "Deployment " + d.Namespace + "/" + d.Name
	if err := applyDeploymentFlags(fs, flags, source); err != nil {
		return runningServers{}, err
	}
	if err := o.validate(); err != nil {
		return runningServers{}, fmt.Errorf("configuration read from %s: %w", source, err)
	}
	served, err := servedWebhooks(flags, source)
	if err != nil {
		return runningServers{}, err
	}
	return runningServers{source: source, found: true, webhooks: served}, nil
}

// servedWebhooks are the webhooks servers running with flags serve: their
// --webhooks, else serve's default (all). --webhooks is serve's own flag,
// which no other command has, so applyDeploymentFlags does not carry it:
// `certs status` checked all three and reported the ones a
// `serve --webhooks=injector,validator` never serves as needing attention,
// failing every run.
func servedWebhooks(flags map[string]string, source string) ([]string, error) {
	v, ok := flags["webhooks"]
	if !ok {
		return allHooks, nil
	}
	var served []string
	for _, h := range strings.Split(v, ",") {
		h = strings.TrimSpace(h)
		switch {
		case !slices.Contains(allHooks, h):
			return nil, fmt.Errorf("invalid value %q for --webhooks in %s: %q is not one of %s", v, source, h, strings.Join(allHooks, ", "))
		case slices.Contains(served, h):
			return nil, fmt.Errorf("invalid value %q for --webhooks in %s: %s is listed twice", v, source, h)
		}
		served = append(served, h)
	}
	return served, nil
}

// deploymentSearch says where runningConfig looked for the Deployment.
func deploymentSearch(fs *pflag.FlagSet, o *options, deployment string) string {
	if deployment != "" {
		return "Deployment " + o.fsmNamespace + "/" + deployment
	}
	where := "labelled " + labels.Set(status.ServerLabels).String()
	if fs.Changed("mesh-name") {
		where += "," + status.MeshLabel + "=" + o.meshName
	}
	if fs.Changed("fsm-namespace") {
		return where + " in namespace " + o.fsmNamespace
	}
	return where + " in any namespace"
}

// applyDeploymentFlags sets every flag of fs the operator left unset to the
// Deployment's value; flags fs does not have (serve's own) are ignored.
func applyDeploymentFlags(fs *pflag.FlagSet, flags map[string]string, source string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		v, ok := flags[f.Name]
		if err != nil || !ok || f.Changed || slices.Contains(notFromDeployment, f.Name) {
			return
		}
		if setErr := fs.Set(f.Name, v); setErr != nil {
			err = fmt.Errorf("invalid value %q for --%s in %s: %w", v, f.Name, source, setCause(setErr))
		}
	})
	return err
}

// statusConfiguration is what `certs status` reports it checked.
func (o *options) statusConfiguration(source string) *status.Configuration {
	c := &status.Configuration{Source: source, MeshName: o.meshName, FSMNamespace: o.fsmNamespace, Provider: o.certificateManager}
	switch o.certificateManager {
	case vault.ProviderName:
		c.VaultAddress = o.vaultProtocol + "://" + net.JoinHostPort(o.vaultHost, strconv.Itoa(o.vaultPort))
		c.VaultRole = o.vaultRole
		c.VaultNamespace = o.vaultNamespace
	case certmanager.ProviderName:
		c.CertManagerIssuer = o.certManagerIssuerKind + "/" + o.certManagerIssuerName + " (" + o.certManagerIssuerGroup + ")"
	}
	return c
}
