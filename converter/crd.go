package converter

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// Names of the conversion webhook (FSM).
const (
	CRDName            = "meshconfigs.config.flomesh.io"
	DefaultServiceName = "fsm-bootstrap"
	DefaultServicePort = 9443
)

// Endpoint is where the apiserver reaches the converter: an in-cluster
// Service, or a URL for converters running outside the cluster (local mode,
// --webhook-url-host). Exactly one of ServiceName and URL is set.
type Endpoint struct {
	ServiceNamespace string
	ServiceName      string
	ServicePort      int32 // DefaultServicePort when 0

	URL string // https://host:port/convert

	// CABundle is the PEM of the CAs that sign the converter's serving cert.
	CABundle []byte
}

// DesiredConversion is the spec.conversion the MeshConfig CRD must have for
// the apiserver to call the converter at ep.
func DesiredConversion(ep Endpoint) (*apixv1.CustomResourceConversion, error) {
	if err := checkCABundle(ep.CABundle); err != nil {
		return nil, err
	}
	cc := &apixv1.WebhookClientConfig{CABundle: ep.CABundle}
	switch {
	case ep.URL != "" && ep.ServiceName != "":
		return nil, errors.New("converter endpoint: set either a Service or a URL, not both")
	case ep.URL != "":
		u, err := url.Parse(ep.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("converter endpoint: URL %q must be https://host[:port]/path without user, query or fragment", ep.URL)
		}
		cc.URL = ptr.To(ep.URL)
	case ep.ServiceName != "":
		if ep.ServiceNamespace == "" {
			return nil, fmt.Errorf("converter endpoint: Service %q needs a namespace", ep.ServiceName)
		}
		port := ep.ServicePort
		if port == 0 {
			port = DefaultServicePort
		}
		if port < 1 || port > 65535 {
			return nil, fmt.Errorf("converter endpoint: Service port %d must be 1-65535", port)
		}
		cc.Service = &apixv1.ServiceReference{Namespace: ep.ServiceNamespace, Name: ep.ServiceName, Port: ptr.To(port), Path: ptr.To(Path)}
	default:
		return nil, errors.New("converter endpoint: set a Service or a URL")
	}
	return &apixv1.CustomResourceConversion{
		Strategy: apixv1.WebhookConverter,
		Webhook:  &apixv1.WebhookConversion{ClientConfig: cc, ConversionReviewVersions: []string{"v1"}},
	}, nil
}

func checkCABundle(pemBytes []byte) error {
	if len(pemBytes) == 0 {
		return errors.New("converter endpoint: caBundle is empty")
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pemBytes) {
		return errors.New("converter endpoint: caBundle holds no PEM certificate")
	}
	return nil
}

// EnableWebhook points the MeshConfig CRD at the converter (desired from
// DesiredConversion). It writes only when the CRD differs, retries on
// conflicts with other replicas, and reports whether it changed the CRD.
// The client's scheme must include apiextensions.k8s.io/v1.
//
// Call it only after Probe succeeded: from then on every read in a non-
// storage version depends on the converter answering.
func EnableWebhook(ctx context.Context, c client.Client, desired *apixv1.CustomResourceConversion) (bool, error) {
	return setConversion(ctx, c, desired)
}

// DisableWebhook sets the CRD back to strategy None (the rollback, and what
// the chart installs). Reads in the storage version keep working; reads in
// other versions get the stored object relabelled, as in FSM.
func DisableWebhook(ctx context.Context, c client.Client) (bool, error) {
	return setConversion(ctx, c, &apixv1.CustomResourceConversion{Strategy: apixv1.NoneConverter})
}

func setConversion(ctx context.Context, c client.Client, desired *apixv1.CustomResourceConversion) (bool, error) {
	changed := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		crd := &apixv1.CustomResourceDefinition{}
		if err := c.Get(ctx, client.ObjectKey{Name: CRDName}, crd); err != nil {
			return fmt.Errorf("reading CRD %s: %w", CRDName, err)
		}
		if conversionEqual(crd.Spec.Conversion, desired) {
			changed = false
			return nil
		}
		crd.Spec.Conversion = desired.DeepCopy()
		if err := c.Update(ctx, crd); err != nil {
			return err
		}
		changed = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("setting spec.conversion of CRD %s to %s: %w", CRDName, desired.Strategy, err)
	}
	return changed, nil
}

// conversionEqual compares what matters; the apiserver defaults the
// Service port (443) and keeps nil and empty caBundles apart.
func conversionEqual(have, want *apixv1.CustomResourceConversion) bool {
	if have == nil {
		return want == nil || want.Strategy == apixv1.NoneConverter
	}
	if have.Strategy != want.Strategy {
		return false
	}
	if want.Strategy == apixv1.NoneConverter {
		return true
	}
	if have.Webhook == nil || have.Webhook.ClientConfig == nil || want.Webhook == nil || want.Webhook.ClientConfig == nil {
		return have.Webhook == nil && want.Webhook == nil
	}
	h, w := have.Webhook.ClientConfig, want.Webhook.ClientConfig
	return bytes.Equal(h.CABundle, w.CABundle) &&
		apiequality.Semantic.DeepEqual(h.URL, w.URL) &&
		apiequality.Semantic.DeepEqual(h.Service, w.Service) &&
		apiequality.Semantic.DeepEqual(have.Webhook.ConversionReviewVersions, want.Webhook.ConversionReviewVersions)
}

// ConversionEnabled reports whether the CRD currently sends conversions to a
// webhook.
func ConversionEnabled(crd *apixv1.CustomResourceDefinition) bool {
	return crd.Spec.Conversion != nil && crd.Spec.Conversion.Strategy == apixv1.WebhookConverter
}

// probeObject is a minimal MeshConfig in the storage version; converting it
// down exercises the whole path (decode, hub, annotation, encode).
var probeObject = []byte(`{"apiVersion":"config.flomesh.io/v1alpha3","kind":"MeshConfig",` +
	`"metadata":{"name":"converter-probe","namespace":"default"},` +
	`"spec":{"image":{"registry":"flomesh","tag":"latest","pullPolicy":"IfNotPresent"},` +
	`"misc":{"repoServerImage":"probe"},"connector":{"lb":{},"DO_NOT_EDIT_viaGateway":"","viaGateway":{` +
	`"clusterIP":"","externalIP":"","ingressAddr":"","ingressHTTPPort":0,"ingressGRPCPort":0,` +
	`"egressAddr":"","egressHTTPPort":0,"egressGRPCPort":0}}}}`)

// Probe checks the converter the way the apiserver will reach it: a TLS
// connection to addr (host:port) that verifies the serving certificate for
// serverName against caBundle, then a ConversionReview that must succeed.
// serverName is the Service DNS name (<service>.<namespace>.svc) or the URL
// host. Use it before EnableWebhook so the CRD never points at a converter
// the apiserver cannot use.
func Probe(ctx context.Context, addr, serverName string, caBundle []byte) error {
	if err := checkCABundle(caBundle); err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caBundle)
	httpClient := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12},
		},
	}
	defer httpClient.CloseIdleConnections()
	review := apixv1.ConversionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: apixv1.SchemeGroupVersion.String(), Kind: "ConversionReview"},
		Request: &apixv1.ConversionRequest{
			UID:               "converter-probe",
			DesiredAPIVersion: "config.flomesh.io/v1alpha2",
			Objects:           []runtime.RawExtension{{Raw: probeObject}},
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		return fmt.Errorf("probe: encoding request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+Path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe: converter at %s (as %s) not reachable with the caBundle: %w", addr, serverName, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, reviewhttp.MaxBodyBytes))
	if err != nil {
		return fmt.Errorf("probe: reading response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe: converter answered HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(raw))
	}
	var got apixv1.ConversionReview
	if err := json.Unmarshal(raw, &got); err != nil {
		return fmt.Errorf("probe: decoding response: %w", err)
	}
	switch {
	case got.Response == nil:
		return errors.New("probe: response has no ConversionResponse")
	case got.Response.UID != review.Request.UID:
		return fmt.Errorf("probe: response uid %q, want %q", got.Response.UID, review.Request.UID)
	case got.Response.Result.Status != metav1.StatusSuccess:
		return fmt.Errorf("probe: conversion failed: %s", got.Response.Result.Message)
	case len(got.Response.ConvertedObjects) != 1:
		return fmt.Errorf("probe: got %d converted objects, want 1", len(got.Response.ConvertedObjects))
	}
	return nil
}
