package webhooks

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"

	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
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
}

// Report is the `fsm-webhooks certs status` result.
type Report struct {
	Healthy  bool            `json:"healthy"`
	Problems []string        `json:"problems,omitempty"`
	Provider string          `json:"provider"`
	CAs      []CertInfo      `json:"cas"`
	Webhooks []WebhookStatus `json:"webhooks"`
}

// Status inspects the mesh CA bundle (from opts.Issuer), each webhook's
// serving-cert Secret and each registration object's caBundle. It reads
// only; Healthy is false when any cert is missing, expired, due, or not
// verified by its caBundle.
func Status(ctx context.Context, opts Options, hooks []Webhook) (*Report, error) {
	if opts.Config == nil || opts.Issuer == nil {
		return nil, fmt.Errorf("certs status: Options.Config and Options.Issuer are required")
	}
	opts = opts.withDefaults()
	client, err := kubernetes.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("certs status: kubernetes client: %w", err)
	}
	apiext, err := apiextclient.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("certs status: apiextensions client: %w", err)
	}
	now := time.Now()
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
			if v := servingcert.Check(spec, sec.Data, trusted, now, opts.RenewFraction); !v.OK() {
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
		bundle, found, split, err := registrationCABundle(ctx, client, apiext, w.Registration)
		switch {
		case err != nil:
			return nil, fmt.Errorf("certs status: %w", err)
		case !found:
			ws.CABundleProblem = "not found"
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
		if !ws.CABundleVerifies {
			problem("%s: caBundle of %s: %s", w.Name, ws.Registration, ws.CABundleProblem)
		}
		r.Webhooks = append(r.Webhooks, ws)
	}
	return r, nil
}

// registrationCABundle reads reg's object and returns its caBundle, whether
// it exists and, when its webhook entries disagree, which two (bundle nil).
func registrationCABundle(ctx context.Context, client kubernetes.Interface, apiext apiextclient.Interface, reg Registration) (bundle []byte, found bool, split string, err error) {
	var obj any
	switch reg.Kind {
	case MutatingConfiguration:
		obj, err = client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, reg.Name, metav1.GetOptions{})
	case ValidatingConfiguration:
		obj, err = client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, reg.Name, metav1.GetOptions{})
	case CRDConversion:
		obj, err = apiext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, reg.Name, metav1.GetOptions{})
	default:
		return nil, false, "", fmt.Errorf("unknown registration kind %v", reg.Kind)
	}
	if apierrors.IsNotFound(err) {
		return nil, false, "", nil
	}
	if err != nil {
		return nil, false, "", fmt.Errorf("reading %s %s: %w", reg.Kind, reg.Name, err)
	}
	bundle, split = sharedCABundle(obj)
	return bundle, true, split, nil
}

// TrustCheck returns a rootrotation.Options.Trusted func: nil once the
// caBundle of every registration object that exists holds root.
func TrustCheck(cfg *rest.Config, regs []Registration) (func(context.Context, *x509.Certificate) error, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	apiext, err := apiextclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("apiextensions client: %w", err)
	}
	return func(ctx context.Context, root *x509.Certificate) error {
		for _, reg := range regs {
			bundle, found, split, err := registrationCABundle(ctx, client, apiext, reg)
			if err != nil {
				return err
			}
			if !found {
				continue
			}
			if split != "" {
				return fmt.Errorf("%s %s: %s", reg.Kind, reg.Name, split)
			}
			cs, err := certs.ParseCertsPEM(bundle)
			if err != nil {
				return fmt.Errorf("caBundle of %s %s: %w", reg.Kind, reg.Name, err)
			}
			held := false
			for _, c := range cs {
				held = held || bytes.Equal(c.Raw, root.Raw)
			}
			if !held {
				return fmt.Errorf("caBundle of %s %s does not hold root %s yet", reg.Kind, reg.Name, root.Subject.CommonName)
			}
		}
		return nil
	}, nil
}

// WriteJSON renders r as indented JSON (`-o json`).
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable renders r for humans.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
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
