package injector

import (
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// Labels on every bootstrap Secret.
const (
	appNameLabel     = "app.kubernetes.io/name"
	appNameValue     = "flomesh.io"
	appInstanceLabel = "app.kubernetes.io/instance"
)

// BootstrapSecret builds the pod's bootstrap Secret from the issued
// certificate and the bootstrap document.
func BootstrapSecret(namespace, meshName, proxyUUID string, cert *certs.Certificate, boot BootstrapConfig) (*corev1.Secret, error) {
	doc, err := json.Marshal(boot)
	if err != nil {
		return nil, fmt.Errorf("encoding bootstrap config: %w", err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      BootstrapSecretName(proxyUUID),
			Namespace: namespace,
			Labels: map[string]string{
				appNameLabel:     appNameValue,
				appInstanceLabel: meshName,
				ProxyUUIDLabel:   proxyUUID,
			},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			BootstrapConfigKey: doc,
			CACertKey:          cert.CABundle,
			RepoCertKey:        cert.CertPEM,
			RepoKeyKey:         cert.KeyPEM,
		},
	}, nil
}

// certRequest is the bootstrap certificate request for cn.
func certRequest(cn string, alg certs.KeyAlgorithm, validity time.Duration) certs.Request {
	return certs.Request{
		CommonName:   cn,
		DNSNames:     []string{cn},
		Organization: sidecarCertOrganization,
		Validity:     validity,
		Usage:        certs.UsageBoth,
		KeyAlgorithm: alg,
	}
}
