// Package certmanager issues mesh certificates through cert-manager: each
// certificate is a cert-manager.io/v1 CertificateRequest signed by the
// configured [Cluster]Issuer, awaited through a watch and deleted afterwards.
// The private key never leaves this process.
package certmanager

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/keypool"
)

// ProviderName is Provider()'s value and the --certificate-manager flag value.
const ProviderName = "cert-manager"

// FSM's defaults for the issuer reference.
const (
	DefaultIssuerName  = "fsm-ca"
	DefaultIssuerKind  = "Issuer"
	DefaultIssuerGroup = "cert-manager.io"
)

const (
	// generateName prefixes every CertificateRequest, as FSM's do, and
	// requestNameSuffix random characters follow (chosen here, not by the
	// apiserver, so a create whose answer is lost can be deleted by name).
	generateName      = "fsm-"
	requestNameSuffix = 10
	// DefaultTimeout bounds one issuance when the caller's ctx has no
	// deadline (serving certs; an admission brings its own): an Issuer that
	// never answers must not hang it. FSM v1.5.1 waited 60 s: an issuer
	// that signs within that (manual approval, a slow external CA) served
	// FSM and must serve us, as each retry is a new request.
	DefaultTimeout = 60 * time.Second
	// deleteTimeout bounds the clean-up of a CertificateRequest, which runs
	// even when the caller's ctx has expired.
	deleteTimeout = 10 * time.Second
	// initCertName is the common name of the certificate learnCA asks
	// for, FSM's.
	initCertName = "init-cert"
	// learnRetry spaces learnCA's requests after one failed.
	learnRetry = 30 * time.Second

	// labelManagedBy=managedByValue marks every CertificateRequest we
	// create, so that one left behind by a process that died while waiting
	// for it is told from FSM's and the user's (Sweep).
	labelManagedBy = "app.kubernetes.io/managed-by"
	managedByValue = "fsm-webhooks"
	// SweepAge is the age from which a CertificateRequest of ours is left
	// over: every wait for one ends long before (DefaultTimeout, or the
	// admission's deadline of at most 30 s).
	SweepAge = time.Hour
	// SweepInterval spaces RunSweeper's passes.
	SweepInterval = 30 * time.Minute
	// sweepPage and sweepPages bound one pass: at most 10 lists of 100.
	sweepPage  = 100
	sweepPages = 10
)

// Options configure the cert-manager provider (FSM's --cert-manager-issuer-*
// flags).
type Options struct {
	IssuerName  string
	IssuerKind  string
	IssuerGroup string
	// Namespace where CertificateRequests are created (the fsm namespace;
	// an Issuer must live there).
	Namespace string
	Client    cmclient.Interface
	// Keys supplies leaf keys; nil means keys generated per request.
	Keys *keypool.Set
	// CABundleSecret, when set, is read (key ca.crt) with Secrets at every
	// call and, while it exists, is all CABundle returns: it is known
	// before the first certificate is issued, and every replica reads the
	// same one (certs/rootrotation). A certificate that does not chain to
	// it is refused. Unset, absent or without ca.crt (a CA issuer's
	// Secret of tls.crt and tls.key alone), CABundle is the status.ca of the
	// newest certificate this process issued, which is all FSM v1.5.1
	// reads with cert-manager (its docs ask for the Secret, its code never
	// reads it: a ClusterIssuer's CA Secret, for one, lives elsewhere).
	CABundleSecret string
	Secrets        kubernetes.Interface
	Logger         logr.Logger
}

// Validate checks the options with FSM's wording.
func (o Options) Validate() error {
	switch {
	case o.IssuerName == "":
		return errors.New("IssuerName not specified in cert-manager.io options")
	case o.IssuerKind == "":
		return errors.New("IssuerKind not specified in cert-manager.io options")
	case o.IssuerGroup == "":
		return errors.New("IssuerGroup not specified in cert-manager.io options")
	}
	// External issuers have their own kinds; cert-manager's own group has two.
	if o.IssuerGroup == DefaultIssuerGroup && o.IssuerKind != "Issuer" && o.IssuerKind != "ClusterIssuer" {
		return fmt.Errorf("IssuerKind in cert-manager.io options must be one of [Issuer, ClusterIssuer] for group %s, got %s", o.IssuerGroup, o.IssuerKind)
	}
	if o.Namespace == "" {
		return errors.New("namespace for CertificateRequests not specified in cert-manager.io options")
	}
	if o.Client == nil {
		return errors.New("cert-manager client is required")
	}
	if o.CABundleSecret != "" && o.Secrets == nil {
		return errors.New("CABundleSecret is set but no Kubernetes client to read it")
	}
	return nil
}

// Issuer is the cert-manager certs.Issuer. It is safe for concurrent use.
type Issuer struct {
	opts Options
	keys *keypool.Set
	log  logr.Logger

	// The status.ca of the newest certificate issued (by NotBefore, so an
	// issuance that completes late with the previous signer does not bring
	// its CA back) and that NotBefore. Never read while the CABundleSecret
	// exists: a replica that has not issued since the signer changed would
	// keep publishing the old root after it left the Secret.
	mu     sync.Mutex
	lastCA []byte
	lastAt time.Time
	// secretAbsent is whether the CABundleSecret was last found missing,
	// so the change is logged once each way.
	secretAbsent bool
	// learning serialises learnCA (a one-slot semaphore, so that a caller
	// waiting for another's init-cert still gives up at its own deadline);
	// learnErr and learnAt are its last failure and when, so an issuer that
	// never answers with a status.ca is not asked again on every call (every
	// caBundle resync).
	learning chan struct{}
	learnErr error
	learnAt  time.Time
	// signer is the CA that signed the newest certificate: requests are
	// cut to end before it.
	signer *x509.Certificate
}

var _ certs.Issuer = (*Issuer)(nil)

// New validates opts. It makes no API call: the Issuer may not exist yet
// (cert-manager may be installed after us) and each issuance reports its
// state.
func New(opts Options) (*Issuer, error) {
	if err := opts.Validate(); err != nil {
		return nil, &certs.ProviderError{Provider: ProviderName, Op: "options", Err: err}
	}
	keys := opts.Keys
	if keys == nil {
		var err error
		if keys, err = keypool.NewSet(keypool.Options{Size: 0}); err != nil {
			return nil, &certs.ProviderError{Provider: ProviderName, Op: "options", Err: err}
		}
	}
	return &Issuer{opts: opts, keys: keys, log: opts.Logger, learning: make(chan struct{}, 1)}, nil
}

// Provider implements certs.Issuer.
func (i *Issuer) Provider() string { return ProviderName }

func (i *Issuer) issuerRef() cmmeta.IssuerReference {
	return cmmeta.IssuerReference{Name: i.opts.IssuerName, Kind: i.opts.IssuerKind, Group: i.opts.IssuerGroup}
}

// Issue implements certs.Issuer: create a CertificateRequest, wait for it
// through a watch, delete it.
func (i *Issuer) Issue(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	return certs.IssueRemote(ctx, ProviderName, req, i.issue)
}

func (i *Issuer) issue(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	// The CA Secret is read before anything is asked of cert-manager, so
	// a broken one costs no CertificateRequest.
	secretCA, fromSecret, err := i.secretBundle(ctx)
	if err != nil {
		return nil, err
	}
	key, err := i.keys.Get(ctx, req.KeyAlgorithm)
	if err != nil {
		return nil, err
	}
	csrPEM, err := csrFor(req, key)
	if err != nil {
		return nil, err
	}
	// cert-manager's CA issuer signs for as long as asked, also past its
	// own end: the request is cut to end before the CA that signed the last
	// certificate (Tresor and Vault cut theirs too: a leaf verifies no
	// longer than its CA, and its renewal is scheduled from its NotAfter).
	// The certificate is asked for once more, cut at the CA that signed it,
	// when that CA is another (the first certificate of the process, a
	// root rotation's switch) and the first one outlives it or was cut
	// shorter than it allows.
	validity := req.Validity
	i.mu.Lock()
	capCA := i.signer
	i.mu.Unlock()
	if capCA != nil {
		validity = certs.CappedValidity(req.Validity, time.Now(), capCA.NotAfter)
	}
	c, leaf, signer, err := i.issueOnce(ctx, req, key, csrPEM, secretCA, fromSecret, validity)
	if err != nil || signer == nil {
		return c, err
	}
	again := certs.CappedValidity(req.Validity, time.Now(), signer.NotAfter)
	outlives := leaf.NotAfter.After(signer.NotAfter) && again < validity
	cutShort := capCA != nil && validity < req.Validity && !bytes.Equal(signer.Raw, capCA.Raw) && again > validity
	if !outlives && !cutShort {
		return c, nil
	}
	c, _, _, err = i.issueOnce(ctx, req, key, csrPEM, secretCA, fromSecret, again)
	return c, err
}

// issueOnce asks for one certificate valid for validity and returns it with
// its leaf and the CA that signed it (nil when none of the chain,
// status.ca and the CA Secret's bundle is). fromSecret says secretCA is
// the CA Secret's (else it is empty: no Secret configured, or none there).
func (i *Issuer) issueOnce(ctx context.Context, req certs.Request, key crypto.Signer, csrPEM []byte, secretCA *certs.Bundle, fromSecret bool, validity time.Duration) (*certs.Certificate, *x509.Certificate, *x509.Certificate, error) {
	cr, err := i.request(ctx, &cmapi.CertificateRequest{
		Spec: cmapi.CertificateRequestSpec{
			Duration:  &metav1.Duration{Duration: validity},
			IsCA:      false,
			Usages:    usagesFor(key.Public()),
			Request:   csrPEM,
			IssuerRef: i.issuerRef(),
		},
	})
	if err != nil {
		return nil, nil, nil, err
	}
	ref := cr.Namespace + "/" + cr.Name
	c, err := certs.IssuedCertificate(cr.Status.Certificate, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("CertificateRequest %s: status.certificate: %w", ref, err)
	}
	reported, err := i.parseReported(cr.Status.CA)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("CertificateRequest %s: %w", ref, err)
	}
	chain, _ := certs.ParseCertsPEM(c.CertPEM) // parsed by IssuedCertificate
	signer := certs.SignerOf(chain[0], slices.Concat(chain[1:], reported.Certificates(), secretCA.Certificates())...)
	if reported.Len() > 0 {
		// Kept also while the Secret exists, for when it is deleted.
		i.remember(cr.Status.CA, chain[0].NotBefore)
	}
	if fromSecret {
		if secretCA, err = i.trustedBySecret(ctx, secretCA, chain, reported); err != nil {
			return nil, nil, nil, fmt.Errorf("CertificateRequest %s: %w", ref, err)
		}
		if signer == nil {
			signer = certs.SignerOf(chain[0], secretCA.Certificates()...) // a root added while in flight
		}
	} else if reported.Len() == 0 {
		if reported, err = i.lastBundle(); err != nil { // no status.ca: the last one known
			return nil, nil, nil, fmt.Errorf("CertificateRequest %s: %w", ref, err)
		}
	}
	// The certificate's own bundle also holds the status.ca it came with.
	if c.CABundle, err = i.nonEmpty(secretCA.Merge(time.Now(), reported)); err != nil {
		return nil, nil, nil, fmt.Errorf("CertificateRequest %s: %w", ref, err)
	}
	if signer != nil {
		i.mu.Lock()
		i.signer = signer
		i.mu.Unlock()
	}
	return c, chain[0], signer, nil
}

// request creates cr under a name of our own, so that a create whose
// answer is lost (the caller's deadline, a broken connection) can still be
// deleted, waits until it is done and deletes it whatever happened.
func (i *Issuer) request(ctx context.Context, cr *cmapi.CertificateRequest) (*cmapi.CertificateRequest, error) {
	cr.Namespace, cr.Name = i.opts.Namespace, generateName+utilrand.String(requestNameSuffix)
	cr.Labels = map[string]string{labelManagedBy: managedByValue}
	created, err := i.opts.Client.CertmanagerV1().CertificateRequests(cr.Namespace).Create(ctx, cr, metav1.CreateOptions{})
	if err != nil {
		if !apierrors.IsAlreadyExists(err) { // that one is not ours
			i.cleanUp(ctx, cr.Namespace, cr.Name)
		}
		return nil, fmt.Errorf("creating CertificateRequest %s/%s: %w", cr.Namespace, cr.Name, err)
	}
	defer i.cleanUp(ctx, created.Namespace, created.Name)
	done, err := i.waitReady(ctx, created)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", i.describeIssuer(), err)
	}
	return done, nil
}

// remember keeps ca as the trusted bundle (without the CABundleSecret)
// unless a certificate signed later already brought one.
func (i *Issuer) remember(ca []byte, signedAt time.Time) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !signedAt.Before(i.lastAt) {
		i.lastCA, i.lastAt = ca, signedAt
	}
}

// trustedBySecret checks that the issued chain verifies against the CA
// bundle Secret and returns the Secret's bundle it verified against. That
// Secret is all CABundle trusts, so a certificate from a signer outside it
// would be trusted by no caBundle (a serving cert would be re-issued on
// every pass, a bootstrap Secret called invalid); the rotation procedure
// adds the next root to ca.crt before the issuer signs with it. The Secret
// is re-read once in case that happened while the request was in flight.
func (i *Issuer) trustedBySecret(ctx context.Context, secretCA *certs.Bundle, chain []*x509.Certificate, reported *certs.Bundle) (*certs.Bundle, error) {
	leaf := chain[0]
	// status.ca may be an intermediate of a root in the Secret.
	inter := slices.Concat(chain[1:], reported.Certificates())
	verify := func(b *certs.Bundle) error {
		return b.VerifyAt(certs.VerifyTime(leaf, time.Now()), leaf, inter...)
	}
	if verify(secretCA) == nil {
		return secretCA, nil
	}
	reread, found, err := i.secretBundle(ctx)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("CA Secret %s/%s was deleted, or its ca.crt emptied, while the certificate was issued", i.opts.Namespace, i.opts.CABundleSecret)
	}
	if err := verify(reread); err != nil {
		return nil, fmt.Errorf("the issuer %s %q signed under CA %q, which no root in ca.crt of CA Secret %s/%s verifies: add its root to ca.crt before the issuer signs with it (certs/rootrotation): %w",
			i.opts.IssuerKind, i.opts.IssuerName, leaf.Issuer.CommonName, i.opts.Namespace, i.opts.CABundleSecret, err)
	}
	return reread, nil
}

// cleanUp deletes a CertificateRequest (delete) and waits for that only
// while the caller's ctx lasts; past it the delete goes on in the
// background, bounded by deleteTimeout. Waited for to its end, a slow
// delete (an overloaded apiserver) held an admission whose wait had reached
// its deadline up to 10 s longer, past the webhook's timeoutSeconds: the
// user saw the apiserver's "context deadline exceeded", not the error
// naming the issuer (TestSlowCleanUpKeepsTheCallersDeadline). A delete a
// stopping process leaves unfinished goes with the sweep (SweepAge).
func (i *Issuer) cleanUp(ctx context.Context, namespace, name string) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		i.delete(ctx, namespace, name)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// delete removes a CertificateRequest whatever happened, also after the
// caller's ctx expired, so no request is left behind.
func (i *Issuer) delete(ctx context.Context, namespace, name string) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	defer cancel()
	err := i.opts.Client.CertmanagerV1().CertificateRequests(namespace).Delete(dctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		i.log.Error(err, "Deleting CertificateRequest failed", "certificateRequest", namespace+"/"+name)
	}
}

// leftover says whether cr is a CertificateRequest of ours that nobody
// waits for any more: labelled by us and older than SweepAge. Its creator
// died before deleting it (SIGKILL, OOM kill), whatever state it is in
// (signed, denied, or never approved); FSM's and the user's carry no such
// label and are never touched.
func leftover(cr *cmapi.CertificateRequest, now time.Time) bool {
	return cr.Labels[labelManagedBy] == managedByValue && now.Sub(cr.CreationTimestamp.Time) >= SweepAge
}

// Sweep deletes the CertificateRequests of ours in the namespace that are
// leftover at now and returns how many it deleted. A standalone request has
// no owner for the garbage collector, and its creator deletes it only if it
// lives to: each replica killed mid-wait left one behind for ever. A pass
// lists by label, at most sweepPages pages of sweepPage requests; what is
// beyond is deleted by the next pass.
func (i *Issuer) Sweep(ctx context.Context, now time.Time) (int, error) {
	crs := i.opts.Client.CertmanagerV1().CertificateRequests(i.opts.Namespace)
	opts := metav1.ListOptions{LabelSelector: labelManagedBy + "=" + managedByValue, Limit: sweepPage}
	deleted := 0
	for range sweepPages {
		list, err := crs.List(ctx, opts)
		if err != nil {
			return deleted, fmt.Errorf("listing CertificateRequests %s in namespace %s: %w", opts.LabelSelector, i.opts.Namespace, err)
		}
		for _, cr := range list.Items {
			if !leftover(&cr, now) {
				continue
			}
			// The UID: never a request created since under the same name.
			err := crs.Delete(ctx, cr.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &cr.UID}})
			switch {
			case err == nil:
				deleted++
			case !apierrors.IsNotFound(err) && !apierrors.IsConflict(err):
				return deleted, fmt.Errorf("deleting CertificateRequest %s/%s left behind: %w", i.opts.Namespace, cr.Name, err)
			}
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			break
		}
	}
	return deleted, nil
}

// RunSweeper sweeps (Sweep) at start and every SweepInterval until ctx
// ends. Every replica runs it: deleting what another deleted is NotFound.
func (i *Issuer) RunSweeper(ctx context.Context) {
	for {
		n, err := i.Sweep(ctx, time.Now())
		switch {
		case err != nil && ctx.Err() == nil:
			i.log.Error(err, "Sweeping CertificateRequests left behind by a process that stopped while waiting for them (it needs list and delete on certificaterequests)", "namespace", i.opts.Namespace)
		case n > 0:
			i.log.Info("Deleted CertificateRequests left behind by a process that stopped while waiting for them", "namespace", i.opts.Namespace, "deleted", n, "olderThan", SweepAge)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(SweepInterval):
		}
	}
}

// describeIssuer names the issuer reference for errors: cert-manager's own
// messages (an issuer not Ready, a denial) do not say which one.
func (i *Issuer) describeIssuer() string {
	return fmt.Sprintf("%s %q (%s)", i.opts.IssuerKind, i.opts.IssuerName, i.opts.IssuerGroup)
}

// waitReady watches the one CertificateRequest from the version we created
// until decide says it is done.
func (i *Issuer) waitReady(ctx context.Context, created *cmapi.CertificateRequest) (*cmapi.CertificateRequest, error) {
	crs := i.opts.Client.CertmanagerV1().CertificateRequests(created.Namespace)
	selector := fields.OneTermEqualSelector("metadata.name", created.Name).String()
	lw := &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return crs.Watch(ctx, o)
		},
	}
	last := created
	var verdict error
	// The issuer's own Ready condition, read once in the background when
	// the request first waits on the issuer (never on the happy path), so a
	// timeout can say why without a read after the caller's deadline.
	var issuerNote <-chan string
	nctx, stopNote := context.WithCancel(ctx)
	defer stopNote()
	_, err := watchtools.Until(ctx, created.ResourceVersion, lw, func(ev watch.Event) (bool, error) {
		switch ev.Type {
		case watch.Deleted:
			verdict = fmt.Errorf("CertificateRequest %s/%s was deleted before it was Ready", created.Namespace, created.Name)
			return false, verdict
		case watch.Error:
			// A watch refused (Forbidden, Unauthorized) or expired for
			// good: the status says why, where a timeout would blame
			// cert-manager for a request it may have signed.
			verdict = fmt.Errorf("watching CertificateRequest %s/%s: %w", created.Namespace, created.Name, apierrors.FromObject(ev.Object))
			return false, verdict
		case watch.Added, watch.Modified:
		default:
			return false, nil
		}
		cr, ok := ev.Object.(*cmapi.CertificateRequest)
		if !ok {
			return false, nil
		}
		last = cr
		if issuerNote == nil && i.heldByIssuer(cr) {
			issuerNote = i.readIssuerCondition(nctx)
		}
		done, err := decide(cr)
		verdict = err
		return done, err
	})
	switch {
	case err == nil:
		return last, nil
	case verdict != nil:
		return nil, verdict
	case errors.Is(ctx.Err(), context.Canceled):
		return nil, fmt.Errorf("gave up waiting for CertificateRequest %s/%s to be Ready (%s): %w",
			created.Namespace, created.Name, i.describeWait(last, issuerNote), ctx.Err())
	case ctx.Err() != nil || errors.Is(err, watchtools.ErrWatchClosed):
		return nil, fmt.Errorf("timed out waiting for CertificateRequest %s/%s to be Ready (%s): %w",
			created.Namespace, created.Name, i.describeWait(last, issuerNote), context.DeadlineExceeded)
	default:
		return nil, fmt.Errorf("watching CertificateRequest %s/%s: %w", created.Namespace, created.Name, err)
	}
}

// decide is the pure verdict on a CertificateRequest: done with a
// certificate, failed for good (Denied, InvalidRequest, Ready=False with
// reason Failed or Denied), or not yet.
func decide(cr *cmapi.CertificateRequest) (bool, error) {
	ref := cr.Namespace + "/" + cr.Name
	for _, c := range cr.Status.Conditions {
		if c.Status != cmmeta.ConditionTrue {
			continue
		}
		switch c.Type {
		case cmapi.CertificateRequestConditionDenied:
			return false, fmt.Errorf("CertificateRequest %s was denied: %s: %s", ref, c.Reason, c.Message)
		case cmapi.CertificateRequestConditionInvalidRequest:
			return false, fmt.Errorf("CertificateRequest %s is invalid: %s: %s", ref, c.Reason, c.Message)
		}
	}
	for _, c := range cr.Status.Conditions {
		if c.Type != cmapi.CertificateRequestConditionReady {
			continue
		}
		if c.Status == cmmeta.ConditionTrue && len(cr.Status.Certificate) > 0 {
			return true, nil
		}
		if c.Status == cmmeta.ConditionFalse && (c.Reason == cmapi.CertificateRequestReasonFailed || c.Reason == cmapi.CertificateRequestReasonDenied) {
			return false, fmt.Errorf("CertificateRequest %s failed: %s: %s", ref, c.Reason, c.Message)
		}
	}
	return false, nil
}

// describe summarises where a CertificateRequest got stuck, for timeouts.
func describe(cr *cmapi.CertificateRequest) string {
	for _, c := range cr.Status.Conditions {
		if c.Type == cmapi.CertificateRequestConditionReady {
			return fmt.Sprintf("last condition Ready=%s reason %s: %s", c.Status, c.Reason, c.Message)
		}
	}
	var parts []string
	for _, c := range cr.Status.Conditions {
		parts = append(parts, fmt.Sprintf("%s=%s (%s)", c.Type, c.Status, c.Reason))
	}
	if len(parts) == 0 {
		return "no conditions yet: nobody approved it (is cert-manager's approver running?)"
	}
	return "conditions " + strings.Join(parts, ", ")
}

// issuerNotReadyMessage is the Ready=False (reason Pending) message
// cert-manager's CertificateRequest controllers set while the referenced
// Issuer or ClusterIssuer is not Ready (pkg/controller/certificaterequests
// sync.go, v1.21.2); it does not say why.
const issuerNotReadyMessage = "Referenced issuer does not have a Ready status condition"

// heldByIssuer says whether cr waits on a cert-manager.io Issuer or
// ClusterIssuer that is not Ready, i.e. whether that issuer's own condition
// is what an operator needs. An external issuer's kinds are not ours to read.
func (i *Issuer) heldByIssuer(cr *cmapi.CertificateRequest) bool {
	if i.opts.IssuerGroup != DefaultIssuerGroup {
		return false
	}
	for _, c := range cr.Status.Conditions {
		if c.Type == cmapi.CertificateRequestConditionReady {
			return c.Status == cmmeta.ConditionFalse && c.Reason == cmapi.CertificateRequestReasonPending &&
				strings.HasPrefix(c.Message, issuerNotReadyMessage)
		}
	}
	return false
}

// readIssuerCondition reads the issuer's Ready condition in the background
// and sends issuerCondition's one line on the channel it returns.
func (i *Issuer) readIssuerCondition(ctx context.Context) <-chan string {
	out := make(chan string, 1)
	go func() { out <- i.issuerCondition(ctx) }()
	return out
}

// issuerCondition is the configured Issuer's (in the request namespace) or
// ClusterIssuer's Ready condition in one line; a failed read is said briefly
// (its reason: Forbidden without the chart's get grant), never in place of
// the request's own condition.
func (i *Issuer) issuerCondition(ctx context.Context) string {
	v1 := i.opts.Client.CertmanagerV1()
	var (
		ref    = fmt.Sprintf("%s %s/%s", i.opts.IssuerKind, i.opts.Namespace, i.opts.IssuerName)
		status *cmapi.IssuerStatus
		err    error
	)
	if i.opts.IssuerKind == cmapi.ClusterIssuerKind {
		ref = cmapi.ClusterIssuerKind + " " + i.opts.IssuerName
		var ci *cmapi.ClusterIssuer
		if ci, err = v1.ClusterIssuers().Get(ctx, i.opts.IssuerName, metav1.GetOptions{}); err == nil {
			status = &ci.Status
		}
	} else {
		var is *cmapi.Issuer
		if is, err = v1.Issuers(i.opts.Namespace).Get(ctx, i.opts.IssuerName, metav1.GetOptions{}); err == nil {
			status = &is.Status
		}
	}
	if err != nil {
		why := err.Error()
		if r := apierrors.ReasonForError(err); r != metav1.StatusReasonUnknown {
			why = string(r)
		}
		return fmt.Sprintf("%s not read: %s", ref, why)
	}
	for _, c := range status.Conditions {
		if c.Type == cmapi.IssuerConditionReady {
			return fmt.Sprintf("%s Ready=%s reason %s: %s", ref, c.Status, c.Reason, c.Message)
		}
	}
	return ref + " has no Ready condition (is cert-manager's issuers controller running?)"
}

// describeWait is describe(cr), followed by the issuer's condition when cr
// waits on it and it was read.
func (i *Issuer) describeWait(cr *cmapi.CertificateRequest, issuerNote <-chan string) string {
	d := describe(cr)
	if issuerNote == nil || !i.heldByIssuer(cr) {
		return d
	}
	// The read ends with the wait's ctx at the latest, done by now.
	return d + "; " + <-issuerNote
}

// usagesFor asks for what FSM v1.5.1 asked for (digital signature, key
// encipherment; the latter only for an RSA key, where it applies) and no
// extended usage: an approver-policy or issuer written for FSM's requests
// (allowed.usages) refuses any other. A leaf without extended key usages is
// valid for server and client authentication alike (x509.Verify, OpenSSL).
func usagesFor(pub crypto.PublicKey) []cmapi.KeyUsage {
	out := []cmapi.KeyUsage{cmapi.UsageDigitalSignature}
	if _, ok := pub.(*rsa.PublicKey); ok {
		out = append(out, cmapi.UsageKeyEncipherment)
	}
	return out
}

// csrFor asks for the common name and the request's SANs. Its subject is the
// common name alone, as FSM's CSRs were: a policy without
// allowed.subject.organizations refuses a subject O, and nothing reads the
// O of a leaf (FSM's controller identifies a sidecar by its pod).
func csrFor(req certs.Request, key crypto.Signer) ([]byte, error) {
	subject := pkix.Name{CommonName: req.CommonName}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     subject,
		DNSNames:    req.DNSNames,
		IPAddresses: req.IPAddresses,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("creating CSR for %q: %w", req.CommonName, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// CABundle implements certs.Issuer: the ca.crt of CABundleSecret while it
// exists (the same on every replica), else the status.ca of the newest
// certificate this process issued.
func (i *Issuer) CABundle(ctx context.Context) ([]byte, error) {
	b, err := i.bundle(ctx)
	if err != nil {
		return nil, &certs.ProviderError{Provider: ProviderName, Op: "CA bundle", Err: err}
	}
	return b, nil
}

func (i *Issuer) bundle(ctx context.Context) ([]byte, error) {
	b, fromSecret, err := i.secretBundle(ctx)
	if err != nil {
		return nil, err
	}
	if fromSecret {
		return b.PEM(), nil
	}
	if b, err = i.lastBundle(); err != nil {
		return nil, err
	}
	if b.Len() > 0 {
		return b.PEM(), nil
	}
	if b, err = i.learnCA(ctx); err != nil {
		return nil, err
	}
	return i.nonEmpty(b)
}

// learnCA asks for a throwaway certificate to learn the issuer's CA from
// its status.ca, when no Secret holds it and nothing has been issued yet:
// the caBundle of a webhook is needed before its first serving cert. FSM's
// controller does the same at start ("init-cert", 1 s). One caller asks at
// a time; the others then read what it learnt.
func (i *Issuer) learnCA(ctx context.Context) (*certs.Bundle, error) {
	select {
	case i.learning <- struct{}{}:
		defer func() { <-i.learning }()
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for another caller learning the CA from an %s certificate: %w", initCertName, ctx.Err())
	}
	if b, err := i.lastBundle(); err != nil || b.Len() > 0 {
		return b, err
	}
	if i.learnErr != nil && time.Since(i.learnAt) < learnRetry {
		return nil, i.learnErr
	}
	_, err := i.Issue(ctx, certs.Request{CommonName: initCertName, Validity: time.Second, Usage: certs.UsageServer})
	if err != nil && ctx.Err() != nil {
		// The caller's own deadline (a metrics scrape's few seconds) says
		// nothing of the issuer: the next caller asks again.
		return nil, fmt.Errorf("learning the CA from an %s certificate: %w", initCertName, err)
	}
	if err != nil {
		i.learnErr, i.learnAt = fmt.Errorf("learning the CA from an %s certificate (again in %s at the earliest): %w", initCertName, learnRetry, err), time.Now()
		return nil, i.learnErr
	}
	i.learnErr = nil
	return i.lastBundle()
}

func (i *Issuer) lastBundle() (*certs.Bundle, error) {
	i.mu.Lock()
	last := i.lastCA
	i.mu.Unlock()
	return i.parseReported(last)
}

// secretBundle is the ca.crt of CABundleSecret, parsed, and true; empty and
// false when none is configured, none exists or it has no ca.crt. The Secret is the user's
// (FSM's docs have it created by hand), so what is wrong with one that
// exists names the Secret and the key.
func (i *Issuer) secretBundle(ctx context.Context) (*certs.Bundle, bool, error) {
	if i.opts.CABundleSecret == "" {
		return certs.NewBundle(time.Now()), false, nil
	}
	name := i.opts.Namespace + "/" + i.opts.CABundleSecret
	s, err := i.opts.Secrets.CoreV1().Secrets(i.opts.Namespace).Get(ctx, i.opts.CABundleSecret, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, false, fmt.Errorf("reading CA Secret %s: %w", name, err)
	}
	// A Secret without ca.crt is as none: FSM v1.5.1 never reads it with
	// cert-manager, and cert-manager documents its CA issuer on a Secret of
	// tls.crt and tls.key alone (kubectl create secret tls), which may bear
	// this name: refusing it refused every certificate FSM got.
	var pem []byte
	if err == nil {
		pem = s.Data["ca.crt"]
	}
	absent := len(bytes.TrimSpace(pem)) == 0
	i.noteSecretAbsent(name, absent)
	if absent {
		return certs.NewBundle(time.Now()), false, nil
	}
	cas, err := certs.ParseCertsPEM(pem)
	if err != nil {
		return nil, false, fmt.Errorf("CA Secret %s, key ca.crt: %w", name, err)
	}
	b := certs.NewBundle(time.Now(), cas...)
	if b.Len() == 0 {
		return nil, false, fmt.Errorf("CA Secret %s, key ca.crt: every certificate has expired", name)
	}
	return b, true, nil
}

// noteSecretAbsent logs when the CA Secret goes missing or comes back.
func (i *Issuer) noteSecretAbsent(name string, absent bool) {
	i.mu.Lock()
	changed := absent != i.secretAbsent
	i.secretAbsent = absent
	i.mu.Unlock()
	if !changed || i.log.GetSink() == nil {
		return
	}
	if absent {
		i.log.Info("No CA Secret: trusting the status.ca the issuer reports with each certificate, as FSM does; create it (key ca.crt) to give every replica the same trust and to rotate the issuer's root (certs/rootrotation); one without ca.crt counts as none",
			"secret", name)
		return
	}
	i.log.Info("CA Secret found: its ca.crt is the trusted CA bundle", "secret", name)
}

// parseReported parses a status.ca (empty gives an empty bundle).
func (i *Issuer) parseReported(ca []byte) (*certs.Bundle, error) {
	b, err := certs.ParseBundle(time.Now(), ca)
	if err != nil {
		return nil, fmt.Errorf("the CA the issuer %s %q reported (status.ca): %w", i.opts.IssuerKind, i.opts.IssuerName, err)
	}
	return b, nil
}

func (i *Issuer) nonEmpty(b *certs.Bundle) ([]byte, error) {
	if b.Len() == 0 {
		return nil, fmt.Errorf("no CA known yet: set a CA bundle Secret or issue a certificate first (the issuer %s %q reports status.ca)", i.opts.IssuerKind, i.opts.IssuerName)
	}
	return b.PEM(), nil
}
