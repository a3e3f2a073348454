package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"

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

// runningConfig fills the flags the operator did not give from the servers'
// Deployment, validates the result and says where the configuration came
// from; found is false when there is no such Deployment (the flags stand
// alone). --fsm-namespace and --mesh-name, when given, narrow the search.
func runningConfig(ctx context.Context, fs *pflag.FlagSet, o *options, cs kubernetes.Interface, deployment string) (source string, found bool, err error) {
	namespace, mesh := "", ""
	if fs.Changed("fsm-namespace") || deployment != "" {
		namespace = o.fsmNamespace
	}
	if fs.Changed("mesh-name") {
		mesh = o.meshName
	}
	d, err := status.FindDeployment(ctx, cs, namespace, deployment, mesh)
	if err != nil {
		return "", false, err
	}
	if d == nil {
		if err := o.validate(); err != nil {
			return "", false, fmt.Errorf("no fsm-webhooks Deployment found (%s) to read settings from: %w", deploymentSearch(fs, o, deployment), err)
		}
		return "flags (no fsm-webhooks Deployment found)", false, nil
	}
	flags, err := status.DeploymentFlags(d)
	if err != nil {
		return "", false, err
	}
	// The chart always names it; a hand-written Deployment may rely on the
	// namespace it runs in.
	if _, ok := flags["fsm-namespace"]; !ok {
		flags["fsm-namespace"] = d.Namespace
	}
	source = "Deployment " + d.Namespace + "/" + d.Name
	if err := applyDeploymentFlags(fs, flags, source); err != nil {
		return "", false, err
	}
	if err := o.validate(); err != nil {
		return "", false, fmt.Errorf("configuration read from %s: %w", source, err)
	}
	return source, true, nil
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
			err = fmt.Errorf("invalid value %q for --%s in %s: %v", v, f.Name, source, setErr)
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
	case certmanager.ProviderName:
		c.CertManagerIssuer = o.certManagerIssuerKind + "/" + o.certManagerIssuerName + " (" + o.certManagerIssuerGroup + ")"
	}
	return c
}
