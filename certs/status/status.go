// Package status is `fsm-webhooks certs status`: the mesh CA roots, each
// webhook's serving certificate and whether the caBundle of its
// registration object verifies it, as a report for humans (table) or tools
// (JSON). It only reads; the server that keeps these right is webhooks.
package status

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

// CertInfo describes one certificate in a status report.
type CertInfo struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	DaysLeft  int       `json:"daysLeft"`
}

func certInfo(c *x509.Certificate, now time.Time) CertInfo {
	return CertInfo{
		Subject:   c.Subject.String(),
		Issuer:    c.Issuer.String(),
		Serial:    c.SerialNumber.Text(16),
		NotBefore: c.NotBefore.UTC(),
		NotAfter:  c.NotAfter.UTC(),
		DaysLeft:  int(c.NotAfter.Sub(now).Hours() / 24),
	}
}

// WebhookStatus is one webhook's serving cert and registration.
type WebhookStatus struct {
	Name   string    `json:"name"`
	Secret string    `json:"secret"`
	Cert   *CertInfo `json:"cert,omitempty"`
	// CertProblem is why the stored cert is not good ("" when it is).
	CertProblem string `json:"certProblem,omitempty"`
	// Registration is "<Kind>/<name>".
	Registration string `json:"registration"`
	// CABundleVerifies is true when the registration's caBundle verifies
	// the stored serving cert for the name the apiserver uses.
	CABundleVerifies bool   `json:"caBundleVerifies"`
	CABundleProblem  string `json:"caBundleProblem,omitempty"`
	// ConversionOwner (a CRD conversion only) is the mesh
	// ("<fsm namespace>/<mesh>") whose converter holds the Lease that lets
	// it alone write the stanza; "" when no Lease is held.
	ConversionOwner string `json:"conversionOwner,omitempty"`
}

// Report is the `fsm-webhooks certs status` result.
type Report struct {
	Healthy       bool           `json:"healthy"`
	Problems      []string       `json:"problems,omitempty"`
	Configuration *Configuration `json:"configuration,omitempty"`
	Provider      string         `json:"provider"`
	CAs           []CertInfo     `json:"cas"`
	// RootRotation is the built-in (tresor) CA's root rotation; nil for
	// providers whose root is rotated elsewhere.
	RootRotation *RootRotation   `json:"rootRotation,omitempty"`
	Webhooks     []WebhookStatus `json:"webhooks"`
}

// Configuration is what the report was made with and where it came from.
type Configuration struct {
	// Source is "Deployment <namespace>/<name>" when read from the servers'
	// Deployment, else "flags".
	Source       string `json:"source"`
	MeshName     string `json:"meshName"`
	FSMNamespace string `json:"fsmNamespace"`
	Provider     string `json:"provider"`
	// VaultAddress and VaultRole are set with the vault provider, and
	// VaultNamespace when one is configured.
	VaultAddress   string `json:"vaultAddress,omitempty"`
	VaultRole      string `json:"vaultRole,omitempty"`
	VaultNamespace string `json:"vaultNamespace,omitempty"`
	// CertManagerIssuer is "<kind>/<name> (<group>)" with cert-manager.
	CertManagerIssuer string `json:"certManagerIssuer,omitempty"`
}

// RootRotation is where a root rotation stands and the signing root.
type RootRotation struct {
	// Phase is None (never rotated), NextRootAdded, NextRootActive or
	// Complete.
	Phase string `json:"phase"`
	// Since is when Phase was entered; omitted with None (omitempty never
	// omits a struct: it read 0001-01-01T00:00:00Z).
	Since time.Time `json:"since,omitzero"`
	// Managed is false for a bring-your-own root, which is never rotated
	// automatically.
	Managed bool `json:"managed"`
	// Root is the root that signs new certificates.
	Root *CertInfo `json:"root,omitempty"`
}

// Check inspects the mesh CA bundle (from opts.Issuer), each webhook's
// serving-cert Secret and each registration object's caBundle, through
// opts.Config. It reads only; Healthy is false when any cert is missing,
// expired, due, or not verified by its caBundle.
func Check(ctx context.Context, opts webhooks.Options, hooks []webhooks.Webhook) (*Report, error) {
	if opts.Config == nil || opts.Issuer == nil {
		return nil, fmt.Errorf("certs status: Options.Config and Options.Issuer are required")
	}
	client, err := kubernetes.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("certs status: kubernetes client: %w", err)
	}
	apiext, err := apiextclient.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("certs status: apiextensions client: %w", err)
	}
	return check(ctx, opts, hooks, client, webhooks.NewCABundleReader(client, apiext), time.Now())
}

// check is Check through the given clients at now.
func check(ctx context.Context, opts webhooks.Options, hooks []webhooks.Webhook, client kubernetes.Interface, reg *webhooks.CABundleReader, now time.Time) (*Report, error) {
	if opts.RenewFraction == 0 {
		opts.RenewFraction = certs.DefaultRenewFraction
	}
	r := &Report{Healthy: true, Provider: opts.Issuer.Provider()}
	problem := func(format string, args ...any) {
		r.Healthy = false
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
	trusted, err := opts.Issuer.CABundle(ctx)
	if err != nil {
		return nil, fmt.Errorf("certs status: reading the %s CA bundle: %w", opts.Issuer.Provider(), err)
	}
	cas, err := certs.ParseCertsPEM(trusted)
	if err != nil {
		problem("mesh CA bundle: %v", err)
	}
	for _, c := range cas {
		r.CAs = append(r.CAs, certInfo(c, now))
		if !now.Before(c.NotAfter) {
			problem("CA %s expired at %s", c.Subject.CommonName, c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	for _, w := range hooks {
		spec := w.ServingSpec(opts)
		ws := WebhookStatus{Name: w.Name, Secret: opts.Namespace + "/" + w.SecretName,
			Registration: w.Registration.Kind.String() + "/" + w.Registration.Name}
		var chain []*x509.Certificate
		sec, err := client.CoreV1().Secrets(opts.Namespace).Get(ctx, w.SecretName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			ws.CertProblem = "Secret not found"
		case err != nil:
			return nil, fmt.Errorf("certs status: reading Secret %s: %w", ws.Secret, err)
		default:
			// A cert kept past its renewal point because no CA outlives it
			// (Verdict.Final) still needs attention: it expires with its CA.
			if v := servingcert.CheckOverdue(spec, sec.Data, trusted, now, opts.RenewFraction); !v.OK() || v.Final {
				ws.CertProblem = v.Detail
			}
			if chain, err = certs.ParseCertsPEM(sec.Data[servingcert.KeyCert]); err == nil {
				info := certInfo(chain[0], now)
				ws.Cert = &info
			}
		}
		if ws.CertProblem != "" {
			problem("%s: serving cert in %s: %s", w.Name, ws.Secret, ws.CertProblem)
		}
		if w.Registration.Kind == webhooks.CRDConversion {
			if ws.ConversionOwner, err = webhooks.ConversionOwner(ctx, client, opts.ConversionLeaseNamespace, w.Registration.Name, now); err != nil {
				return nil, fmt.Errorf("certs status: %w", err)
			}
		}
		bundle, found, split, err := reg.Read(ctx, w.Registration)
		switch {
		case err != nil:
			return nil, fmt.Errorf("certs status: %w", err)
		case !found && w.Registration.Kind == webhooks.CRDConversion:
			// Read counts a CRD that calls no conversion webhook as not
			// found (no caBundle to trust); here it is still a problem:
			// nothing calls the converter this report checks.
			ws.CABundleProblem = "not found or without a conversion webhook"
		case !found:
			// Likewise a configuration with no webhook entries.
			ws.CABundleProblem = "not found or without webhooks"
		case split != "":
			ws.CABundleProblem = split
		case chain == nil:
			ws.CABundleProblem = "no serving cert to verify"
		default:
			if err := servingcert.Verifies(bundle, chain, spec.ServerName(), now); err != nil {
				ws.CABundleProblem = err.Error()
			} else {
				ws.CABundleVerifies = true
			}
		}
		otherMesh := ws.ConversionOwner != "" && ws.ConversionOwner != opts.Namespace+"/"+opts.MeshName
		if !ws.CABundleVerifies && !otherMesh {
			problem("%s: caBundle of %s: %s", w.Name, ws.Registration, ws.CABundleProblem)
		}
		r.Webhooks = append(r.Webhooks, ws)
	}
	return r, nil
}

// WriteJSON renders r as indented JSON (`-o json`).
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteYAML renders r as YAML (`-o yaml`), with the JSON field names.
func (r *Report) WriteYAML(w io.Writer) error {
	b, err := yaml.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// Write renders r in format: table, json or yaml.
func (r *Report) Write(w io.Writer, format string) error {
	switch format {
	case "table":
		return r.WriteTable(w)
	case "json":
		return r.WriteJSON(w)
	case "yaml":
		return r.WriteYAML(w)
	}
	return fmt.Errorf("output format %q: must be table, json or yaml", format)
}

// WriteTable renders r for humans.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if c := r.Configuration; c != nil {
		fmt.Fprintf(tw, "CONFIGURATION\t%s\n", c.Source)
		fmt.Fprintf(tw, "mesh\t%s (namespace %s)\n", c.MeshName, c.FSMNamespace)
		fmt.Fprintf(tw, "provider\t%s\n", c.Provider)
		if c.VaultAddress != "" {
			fmt.Fprintf(tw, "vault\t%s role %s", c.VaultAddress, c.VaultRole)
			if c.VaultNamespace != "" {
				fmt.Fprintf(tw, " namespace %s", c.VaultNamespace)
			}
			fmt.Fprintln(tw)
		}
		if c.CertManagerIssuer != "" {
			fmt.Fprintf(tw, "issuer\t%s\n", c.CertManagerIssuer)
		}
		fmt.Fprintln(tw)
	}
	if rr := r.RootRotation; rr != nil {
		since := ""
		if !rr.Since.IsZero() {
			since = " since " + rr.Since.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "ROOT ROTATION\t%s%s\n", rr.Phase, since)
		if rr.Root != nil {
			fmt.Fprintf(tw, "signing root\t%s, expires %s (%d days)\n", rr.Root.Subject, rr.Root.NotAfter.Format(time.RFC3339), rr.Root.DaysLeft)
		}
		if !rr.Managed {
			fmt.Fprintln(tw, "managed\tno: a root fsm-webhooks did not create (FSM's, or one brought by the operator) is never rotated by it")
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(tw, "CA (%s)\tSUBJECT\tNOT AFTER\tDAYS LEFT\n", r.Provider)
	for i, c := range r.CAs {
		fmt.Fprintf(tw, "root %d\t%s\t%s\t%d\n", i+1, c.Subject, c.NotAfter.Format(time.RFC3339), c.DaysLeft)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "WEBHOOK\tSECRET\tSUBJECT\tISSUER\tNOT AFTER\tDAYS LEFT\tREGISTRATION\tCABUNDLE")
	for _, ws := range r.Webhooks {
		subject, issuer, notAfter, days := "-", "-", "-", "-"
		if ws.Cert != nil {
			subject, issuer = ws.Cert.Subject, ws.Cert.Issuer
			notAfter, days = ws.Cert.NotAfter.Format(time.RFC3339), fmt.Sprint(ws.Cert.DaysLeft)
		}
		verdict := "verifies"
		if !ws.CABundleVerifies {
			verdict = "FAILS: " + ws.CABundleProblem
		}
		if ws.ConversionOwner != "" {
			verdict += " (conversion owned by mesh " + ws.ConversionOwner + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ws.Name, ws.Secret, subject, issuer, notAfter, days, ws.Registration, verdict)
	}
	fmt.Fprintln(tw)
	if r.Healthy {
		fmt.Fprintln(tw, "healthy: yes")
	} else {
		fmt.Fprintf(tw, "healthy: no\n  - %s\n", strings.Join(r.Problems, "\n  - "))
	}
	return tw.Flush()
}
