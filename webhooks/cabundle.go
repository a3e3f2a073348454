package webhooks

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"time"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// CABundleReader reads the caBundle a registration object carries in the
// API, for readers outside the server (`certs status`, root rotation).
type CABundleReader struct {
	client kubernetes.Interface
	apiext apiextclient.Interface
}

// NewCABundleReader reads through client (webhook configurations) and
// apiext (CRDs).
func NewCABundleReader(client kubernetes.Interface, apiext apiextclient.Interface) *CABundleReader {
	return &CABundleReader{client: client, apiext: apiext}
}

// Read returns the caBundle of reg's object and whether the object exists
// and calls a webhook: a CRD whose conversion is not a webhook conversion
// (strategy None) calls none, nor does a configuration with no webhook
// entries (`webhooks: []`), so neither has a caBundle and both count as not
// found.
// When the webhook entries of a configuration disagree, bundle is nil and
// split names two of them (every entry calls the same server, so each must
// trust the same roots).
func (r *CABundleReader) Read(ctx context.Context, reg Registration) (bundle []byte, found bool, split string, err error) {
	var obj any
	switch reg.Kind {
	case MutatingConfiguration:
		obj, err = r.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, reg.Name, metav1.GetOptions{})
	case ValidatingConfiguration:
		obj, err = r.client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, reg.Name, metav1.GetOptions{})
	case CRDConversion:
		var crd *apiextv1.CustomResourceDefinition
		crd, err = r.apiext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, reg.Name, metav1.GetOptions{})
		if err == nil && (crd.Spec.Conversion == nil || crd.Spec.Conversion.Strategy != apiextv1.WebhookConverter) {
			return nil, false, "", nil
		}
		obj = crd
	default:
		return nil, false, "", fmt.Errorf("unknown registration kind %v", reg.Kind)
	}
	if apierrors.IsNotFound(err) {
		return nil, false, "", nil
	}
	if err != nil {
		return nil, false, "", fmt.Errorf("reading %s %s: %w", reg.Kind, reg.Name, err)
	}
	if noWebhooks(obj) {
		return nil, false, "", nil
	}
	bundle, split = sharedCABundle(obj)
	return bundle, true, split, nil
}

// TrustCheck returns a rootrotation.Options.Trusted func: nil once the
// caBundle of every registration object that exists and calls a webhook
// holds root (a CRD without a conversion webhook, e.g. with no converter
// served, or a configuration with no webhooks has nothing to trust: waiting
// for it would stall the rotation). A CRD's
// conversion stanza held by another mesh's converter (its Lease,
// conversionlease.go) is that mesh's to write, never this one's: waiting for
// it to hold this mesh's root would stall the rotation for good, so it is
// skipped while another mesh holds the Lease, as `certs status` does. opts
// gives this mesh's identity and the Lease's namespace.
func TrustCheck(cfg *rest.Config, opts Options, regs []Registration) (func(context.Context, *x509.Certificate) error, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	apiext, err := apiextclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("apiextensions client: %w", err)
	}
	reader := NewCABundleReader(client, apiext)
	self := opts.Namespace + "/" + opts.MeshName
	return func(ctx context.Context, root *x509.Certificate) error {
		for _, reg := range regs {
			if reg.Kind == CRDConversion {
				owner, err := ConversionOwner(ctx, client, opts.ConversionLeaseNamespace, reg.Name, time.Now())
				if err != nil {
					return err
				}
				if owner != "" && owner != self {
					continue
				}
			}
			bundle, found, split, err := reader.Read(ctx, reg)
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
