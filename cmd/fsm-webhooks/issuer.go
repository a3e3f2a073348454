package main

import (
	"context"
	"fmt"

	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certmanager"
	"github.com/flomesh-io/fsm-webhooks/certs/keypool"
	"github.com/flomesh-io/fsm-webhooks/certs/tresor"
	"github.com/flomesh-io/fsm-webhooks/certs/vault"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/internal/transient"
)

// keyAlgorithm maps --ca-key-algorithm to the certs package's names.
func (o *options) keyAlgorithm() (certs.KeyAlgorithm, error) {
	alg, err := certs.ParseKeyAlgorithm(o.caKeyAlgorithm)
	if err != nil {
		return "", usageErrorf("invalid value %q for --ca-key-algorithm: %v", o.caKeyAlgorithm, err)
	}
	return alg, nil
}

// bootstrapKeyAlgorithm maps --bootstrap-key-algorithm (checked by validate)
// to the injector's choice. auto is ECDSA P-256 where our own CA signs
// (nothing reads the key, docs/design.md) and FSM's choice with
// cert-manager: there the issuer is the user's, and its policy may refuse
// anything but the RSA CSR FSM always sent (cert-manager's Vault issuer on
// a role of Vault's default key_type rsa, an approver-policy on
// privateKey.algorithm), which would fail every meshed pod create.
func (o *options) bootstrapKeyAlgorithm() certs.KeyAlgorithm {
	switch o.bootstrapKeyAlg {
	case "meshconfig":
		return injector.BootstrapKeyFromMeshConfig
	case "auto":
		if o.certificateManager == certmanager.ProviderName {
			return injector.BootstrapKeyFromMeshConfig
		}
		return certs.ECDSAP256
	}
	alg, _ := certs.ParseKeyAlgorithm(o.bootstrapKeyAlg)
	return alg
}

// fsmCertKeyBitSize is the RSA size FSM v1.5.1 takes from MeshConfig
// certificate.certKeyBitSize (configurator GetCertKeyBitSize): the value
// when it is within 2048-4096, else 2048; replaced says the value was not
// taken (0: unset or no MeshConfig).
func fsmCertKeyBitSize(bits int) (size int, replaced bool) {
	if bits < certs.MinRSAKeyBits || bits > certs.MaxRSAKeyBits {
		return certs.MinRSAKeyBits, true
	}
	return bits, false
}

// servingKeyAlgorithm is the key algorithm of the webhooks' serving keys:
// the issuer's default, except with cert-manager, where it is what FSM
// v1.5.1 asked for: an RSA key of the MeshConfig's certKeyBitSize, read
// once at start as FSM's injector read it. The issuer is the user's, and a
// policy written for FSM's requests (an approver-policy on the key's size,
// cert-manager's Vault issuer on a role's key_bits) may refuse any other
// key: the webhooks would never get a serving cert. With no MeshConfig (a
// fresh install creates it after the servers start) it is FSM's default,
// 2048 bits. Tresor's serving keys stay the CA's algorithm (our CA: nobody
// else judges them); Vault's role decides its own.
func servingKeyAlgorithm(ctx context.Context, o *options, c client.Reader, log logr.Logger) (certs.KeyAlgorithm, error) {
	if o.certificateManager != certmanager.ProviderName {
		return "", nil
	}
	key := client.ObjectKey{Namespace: o.fsmNamespace, Name: fsmnames.MeshConfigName}
	var mc configv1alpha3.MeshConfig
	err := transient.Retry(ctx, log, 0, "reading MeshConfig "+key.String(), func(ctx context.Context) error {
		return c.Get(ctx, key, &mc)
	})
	bits := 0
	switch {
	case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
		log.Info("No MeshConfig yet: webhook serving keys are RSA of FSM's default size", "meshConfig", key.String(), "bits", certs.MinRSAKeyBits)
	case err != nil:
		return "", fmt.Errorf("reading MeshConfig %s for the size of the webhooks' serving keys (spec.certificate.certKeyBitSize): %w", key, err)
	default:
		bits = mc.Spec.Certificate.CertKeyBitSize
	}
	size, replaced := fsmCertKeyBitSize(bits)
	if replaced && bits != 0 {
		log.Info("MeshConfig spec.certificate.certKeyBitSize is outside 2048-4096: webhook serving keys are RSA 2048, as FSM does",
			"meshConfig", key.String(), "certKeyBitSize", bits)
	}
	return certs.RSAKeyAlgorithm(size)
}

// newKeyPool starts the background key pool leaf keys come from, so issuing
// a per-pod certificate on the admission path costs one signature.
func newKeyPool(ctx context.Context, o *options, log logr.Logger) (*keypool.Set, error) {
	alg, err := o.keyAlgorithm()
	if err != nil {
		return nil, err
	}
	keys, err := keypool.NewSet(keypool.Options{Algorithm: alg, Size: o.keyPoolSize, Logger: log.WithName("keypool")})
	if err != nil {
		return nil, fmt.Errorf("key pool: %w", err)
	}
	go func() {
		if err := keys.Start(ctx); err != nil && ctx.Err() == nil {
			log.Error(err, "Key pool stopped")
		}
	}()
	return keys, nil
}

// newIssuer builds the mesh CA provider selected by --certificate-manager;
// its key pool runs until ctx ends.
func newIssuer(ctx context.Context, o *options, cfg *rest.Config, cs kubernetes.Interface, log logr.Logger) (certs.Issuer, error) {
	return newIssuerWith(ctx, ctx, o, cfg, cs, log, false)
}

// newIssuerWith is newIssuer with the key pool running until pool ends
// (serve keeps it through the listeners' shutdown drain); with existingCA,
// a missing tresor CA Secret is an error rather than created.
func newIssuerWith(ctx, pool context.Context, o *options, cfg *rest.Config, cs kubernetes.Interface, log logr.Logger, existingCA bool) (certs.Issuer, error) {
	// Vault generates keys itself; the other providers sign keys we make,
	// which come from the pool.
	var keys *keypool.Set
	if o.certificateManager != vault.ProviderName {
		var err error
		if keys, err = newKeyPool(pool, o, log); err != nil {
			return nil, err
		}
	}
	alg, _ := o.keyAlgorithm()
	switch o.certificateManager {
	case tresor.ProviderName:
		if alg == certs.ECDSAP256 || alg == certs.ECDSAP384 {
			// FSM's controller (v1.5.1) reads private.key of the CA Secret
			// as RSA only and fails on any other root; said once, at start.
			log.Info("A CA root this server creates (a new CA Secret, a rotation) is ECDSA, which FSM's controller cannot sign with: do not run FSM's control plane beside it",
				"flag", "--ca-key-algorithm="+o.caKeyAlgorithm, "secret", o.fsmNamespace+"/"+o.caBundleSecretName)
		}
		return tresor.New(ctx, tresor.Options{
			Store: tresor.Store{Client: cs, Namespace: o.fsmNamespace, Name: o.caBundleSecretName, RootKeyAlgorithm: alg, Now: localClock},
			Keys:  keys, Logger: log.WithName("tresor"), MustExist: existingCA,
		})
	case vault.ProviderName:
		return vault.New(ctx, vault.Options{
			Host: o.vaultHost, Port: o.vaultPort, Protocol: o.vaultProtocol, Role: o.vaultRole, CAFile: o.vaultCAFile,
			ClientCertFile: o.vaultClientCertFile, ClientKeyFile: o.vaultClientKeyFile, Namespace: o.vaultNamespace,
			Token: o.vaultToken, TokenSecretName: o.vaultTokenSecretName, TokenSecretKey: o.vaultTokenSecretKey,
			TokenSecretNamespace: o.fsmNamespace, Secrets: cs, Logger: log.WithName("vault"),
		})
	case certmanager.ProviderName:
		cm, err := cmclient.NewForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("cert-manager client: %w", err)
		}
		return certmanager.New(certmanager.Options{
			IssuerName: o.certManagerIssuerName, IssuerKind: o.certManagerIssuerKind, IssuerGroup: o.certManagerIssuerGroup,
			Namespace: o.fsmNamespace, Client: cm, Keys: keys,
			CABundleSecret: o.caBundleSecretName, Secrets: cs, Logger: log.WithName("cert-manager"),
		})
	}
	return nil, usageErrorf("invalid value %q for --certificate-manager", o.certificateManager)
}
