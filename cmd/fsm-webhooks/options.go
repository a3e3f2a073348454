package main

import (
	"cmp"
	"errors"
	"math"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certmanager"
	"github.com/flomesh-io/fsm-webhooks/certs/keypool"
	"github.com/flomesh-io/fsm-webhooks/certs/vault"
	"github.com/flomesh-io/fsm-webhooks/injector"
)

// options are the flags every subcommand shares (env FSM_<FLAG> too).
type options struct {
	kubeconfig          string
	kubeContext         string
	fsmNamespace        string
	meshName            string
	trustDomain         string
	clusterDomain       string
	caBundleSecretName  string
	certificateManager  string
	caKeyAlgorithm      string
	serviceCertValidity time.Duration
	bootstrapValidity   time.Duration

	vaultHost            string
	vaultPort            int
	vaultProtocol        string
	vaultToken           string
	vaultTokenSecretName string
	vaultTokenSecretKey  string
	vaultRole            string
	vaultCAFile          string
	vaultClientCertFile  string
	vaultClientKeyFile   string
	vaultNamespace       string

	certManagerIssuerName  string
	certManagerIssuerKind  string
	certManagerIssuerGroup string

	webhookURLHost    string
	injectorPort      int
	validatorPort     int
	converterPort     int
	metricsAddr       string
	healthProbeAddr   string
	logLevel          string
	sidecarImage      string
	initImage         string
	healthcheckImage  string
	keyPoolSize       int
	bootstrapKeyAlg   string
	rootRotationGrace time.Duration
	// containerPullPolicy: --fsm-container-pull-policy.
	containerPullPolicy string
	// rootAutoRotateBefore: serve rotates the tresor root when it has less
	// than this left (0 disables).
	rootAutoRotateBefore time.Duration

	// Client-side rate limits of serve's two Kubernetes clients; see
	// clientConfigs.
	admissionQPS    float32
	admissionBurst  int
	controllerQPS   float32
	controllerBurst int

	// Per-namespace limit of the injector's certificate issuance and
	// bootstrap Secret writes (0 rate: none).
	injectorNamespaceRate  float64
	injectorNamespaceBurst int
	injectorMaxInFlight    int
	bootstrapSecretWriter  string
	handoffInFlight        int
	handoffBudget          time.Duration
}

// Default client-side rate limits. The admission path makes one apiserver
// request per meshed pod (its bootstrap Secret; cert-manager adds its
// CertificateRequest round trips), inside a pod create the apiserver's own
// flow control has already admitted, and a request the limiter holds past
// the admission's deadline refuses the pod: client-go's 5/10 refused 91% of
// meshed pods at 100 creates/s. So the limit is a runaway guard far above
// any pod create rate, not a throttle. The controllers (caches, bootstrap
// Secret cleanup: one delete per meshed pod, caBundle repair) only fall
// behind when limited, so they get less, leaving the apiserver to admissions
// during bursts.
const (
	defaultAdmissionQPS    = 500
	defaultAdmissionBurst  = 1000
	defaultControllerQPS   = 200
	defaultControllerBurst = 400
)

// addFlags registers every option's flag on fs (tests; the commands get
// only their groups, see flagScopes in root.go).
func (o *options) addFlags(fs *pflag.FlagSet) {
	for _, g := range allFlagGroups {
		g.add(o, fs)
	}
}

// addClusterFlags: how to reach the cluster.
func (o *options) addClusterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "path to a kubeconfig; when empty: $KUBECONFIG, else the in-cluster config, else ~/.kube/config")
	fs.StringVar(&o.kubeContext, "context", "", "kubeconfig context to use; the kubeconfig's current context when empty")
}

// addMeshFlags: which mesh.
func (o *options) addMeshFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.fsmNamespace, "fsm-namespace", "fsm-system", "namespace of the mesh control plane (Secrets, MeshConfig)")
	fs.StringVar(&o.meshName, "mesh-name", "fsm", "name of the mesh (label flomesh.io/monitored-by, webhook configuration names)")
}

// addCAFlags: the mesh CA provider and where it lives.
func (o *options) addCAFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.caBundleSecretName, "ca-bundle-secret-name", "fsm-ca-bundle", "Secret holding the mesh root CA (FSM fsm.caBundleSecretName)")
	fs.StringVar(&o.certificateManager, "certificate-manager", "tresor", "mesh CA provider: tresor, vault or cert-manager (FSM fsm.certificateProvider.kind)")

	fs.StringVar(&o.vaultHost, "vault-host", "", "Vault host (FSM fsm.vault.host)")
	fs.IntVar(&o.vaultPort, "vault-port", vault.DefaultPort, "Vault port (FSM fsm.vault.port)")
	fs.StringVar(&o.vaultProtocol, "vault-protocol", vault.DefaultProtocol, "Vault protocol: http or https (FSM fsm.vault.protocol)")
	fs.StringVar(&o.vaultToken, "vault-token", "", "Vault token (FSM fsm.vault.token); prefer --vault-token-secret-name")
	fs.StringVar(&o.vaultTokenSecretName, "vault-token-secret-name", "", "Secret in the fsm namespace holding the Vault token (FSM fsm.vault.secret.name)")
	fs.StringVar(&o.vaultTokenSecretKey, "vault-token-secret-key", "", "key of the Vault token in that Secret (FSM fsm.vault.secret.key)")
	fs.StringVar(&o.vaultRole, "vault-role", vault.DefaultRole, "Vault PKI role (FSM fsm.vault.role)")
	fs.StringVar(&o.vaultCAFile, "vault-ca-file", "", "PEM file of the CA certificates that sign Vault's https certificate (chart fsm.vault.caSecret); checked at start, then serve re-reads it every 10s and uses a changed file that holds a certificate (a bad one keeps the CAs in use, logged); empty: the system's roots, or VAULT_CACERT")
	fs.StringVar(&o.vaultClientCertFile, "vault-client-cert-file", "", "PEM TLS client certificate presented to Vault's https listener, for a Vault that requires one (tls_require_and_verify_client_cert), with --vault-client-key-file (chart fsm.vault.clientCertSecret); checked at start, then serve re-reads both every 10s and presents a changed pair whose key matches (a bad one keeps the pair in use, logged)")
	fs.StringVar(&o.vaultClientKeyFile, "vault-client-key-file", "", "PEM private key of --vault-client-cert-file")
	fs.StringVar(&o.vaultNamespace, "vault-namespace", "", "Vault Enterprise / HCP Vault namespace holding the PKI mount and the token, e.g. admin (chart fsm.vault.namespace); empty: VAULT_NAMESPACE, else the root namespace")

	fs.StringVar(&o.certManagerIssuerName, "cert-manager-issuer-name", certmanager.DefaultIssuerName, "cert-manager issuer name (FSM fsm.certmanager.issuerName)")
	fs.StringVar(&o.certManagerIssuerKind, "cert-manager-issuer-kind", certmanager.DefaultIssuerKind, "cert-manager issuer kind: Issuer or ClusterIssuer, or an external issuer's kind with its --cert-manager-issuer-group (FSM fsm.certmanager.issuerKind)")
	fs.StringVar(&o.certManagerIssuerGroup, "cert-manager-issuer-group", certmanager.DefaultIssuerGroup, "cert-manager issuer group (FSM fsm.certmanager.issuerGroup)")
}

// addWebhookFlags: how each webhook is registered and named, which the
// serving certificates and caBundles are checked against.
func (o *options) addWebhookFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.clusterDomain, "cluster-domain", "cluster.local", "cluster DNS domain for service names")
	fs.StringVar(&o.webhookURLHost, "webhook-url-host", "", "register webhooks by url (https://HOST:PORT/...) instead of service; for out-of-cluster runs and local")
	fs.IntVar(&o.injectorPort, "injector-port", 9090, "port of the sidecar injector webhook")
	fs.IntVar(&o.validatorPort, "validator-port", 9093, "port of the validating webhook")
	fs.IntVar(&o.converterPort, "converter-port", 9443, "port of the MeshConfig conversion webhook")
}

// addRotationFlags: the built-in CA's keys and root rotation.
func (o *options) addRotationFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.caKeyAlgorithm, "ca-key-algorithm", "rsa2048", "key algorithm of the built-in (tresor) CA and of the webhooks' serving keys it issues (bootstrap keys: --bootstrap-key-algorithm): rsa2048, rsa3072, rsa4096, ecdsa-p256, ecdsa-p384")
	fs.DurationVar(&o.rootRotationGrace, "root-rotation-grace-period", 24*time.Hour, "how long an old root stays trusted after certificates are re-issued from the new one")
}

// addServeFlags: what only the running servers use.
func (o *options) addServeFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.trustDomain, "trust-domain", "cluster.local", "trust domain in sidecar certificate common names")
	fs.DurationVar(&o.serviceCertValidity, "service-cert-validity-duration", 24*time.Hour, "validated but unused, for FSM compatibility (fsm.certificateProvider.serviceCertValidityDuration): it sets the service certificates FSM's controller issues; the webhooks issue none (bootstrap certificates last --bootstrap-cert-validity-duration)")
	fs.DurationVar(&o.bootstrapValidity, "bootstrap-cert-validity-duration", 87600*time.Hour, "validity of the per-pod sidecar bootstrap certificate")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "address of /metrics; 0 disables")
	fs.StringVar(&o.healthProbeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz; 0 disables")
	for _, img := range imageFlags(o) {
		fs.StringVar(img.value, img.flag, envOr(img.env, img.builtIn), img.usage)
	}
	fs.StringVar(&o.containerPullPolicy, "fsm-container-pull-policy", "", "imagePullPolicy of the injected fsm-init and fsm-healthcheck containers: Always, IfNotPresent or Never; empty leaves it to the apiserver (FSM's flag; the sidecar's is always IfNotPresent, as FSM's)")
	fs.IntVar(&o.keyPoolSize, "key-pool-size", 32, "pre-generated private keys kept ready for per-pod certificates: 0 (disables) to 4096")
	fs.StringVar(&o.bootstrapKeyAlg, "bootstrap-key-algorithm", "auto", "key algorithm of per-pod bootstrap certificates (tresor, cert-manager; Vault's role decides): ecdsa-p256, ecdsa-p384, rsa2048, rsa3072, rsa4096, meshconfig for FSM's choice (RSA of MeshConfig certKeyBitSize, else --ca-key-algorithm), or auto: ecdsa-p256 with tresor, meshconfig with cert-manager (an issuer's policy may require the RSA FSM sends)")
	fs.DurationVar(&o.rootAutoRotateBefore, "root-auto-rotate-before", 8760*time.Hour, "serve rotates the built-in (tresor) root automatically when it has less than this left, and resumes an interrupted rotation; 0 disables")
	fs.Float32Var(&o.admissionQPS, "kube-api-qps", defaultAdmissionQPS, "serve: sustained requests/s of the admission path's Kubernetes client (bootstrap Secrets, certificate issuance); a request held past the admission's deadline refuses the pod")
	fs.IntVar(&o.admissionBurst, "kube-api-burst", defaultAdmissionBurst, "serve: burst of the admission path's Kubernetes client")
	fs.Float32Var(&o.controllerQPS, "controller-kube-api-qps", defaultControllerQPS, "serve: sustained requests/s of the controllers' Kubernetes client (caches, bootstrap Secret cleanup, serving certificates and caBundle repair)")
	fs.IntVar(&o.controllerBurst, "controller-kube-api-burst", defaultControllerBurst, "serve: burst of the controllers' Kubernetes client")
	fs.Float64Var(&o.injectorNamespaceRate, "injector-namespace-rate", injector.DefaultNamespaceRate, "serve: bootstrap certificates and Secrets the injector issues per second per namespace (per replica); a pod over it is refused with 429 and retried by its client; 0 disables")
	fs.IntVar(&o.injectorNamespaceBurst, "injector-namespace-burst", injector.DefaultNamespaceBurst, "serve: burst of --injector-namespace-rate")
	fs.StringVar(&o.bootstrapSecretWriter, "bootstrap-secret-writer", string(injector.SecretWriterAdmission), "serve: who writes a meshed pod's bootstrap Secret: admission (inside the pod's admission, before the pod is stored, as FSM does) or controller (right after the pod is stored; the pod create does not wait for it, the kubelet does)")
	fs.IntVar(&o.handoffInFlight, "injector-secret-handoff-in-flight", injector.DefaultHandoffInFlight, "serve, admission writer: bootstrap Secret creates the injector's admissions wait for at once (per replica); the Secret of one more admission is written by the controller once its pod is stored")
	fs.DurationVar(&o.handoffBudget, "injector-secret-handoff-budget", injector.DefaultHandoffBudget, "serve, admission writer: how long an admission waits for its bootstrap Secret create (at most half of the time it has left) before the controller writes the Secret once the pod is stored")
	fs.IntVar(&o.injectorMaxInFlight, "injector-max-in-flight", injector.DefaultMaxInFlight, "serve: pod admissions the injector handles at once (per replica); one more waits up to 1 s for a slot, then is refused with 429 and retried by its client; 0 disables")
}

// addLogFlags: every command logs.
func (o *options) addLogFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// imageFlag is a default image injected into meshed pods: flag, FSM's env
// variable (FSM_DEFAULT_*_IMAGE), FSM v1.5.1's image, and the MeshConfig
// field that overrides it (if any).
type imageFlag struct {
	value                       *string
	flag, env, builtIn, mcField string
	usage                       string
}

func imageFlags(o *options) []imageFlag {
	return []imageFlag{
		{&o.sidecarImage, "sidecar-image", "FSM_DEFAULT_SIDECAR_IMAGE", injector.DefaultSidecarImage, "spec.sidecar.sidecarImage",
			"default Pipy sidecar image (env FSM_DEFAULT_SIDECAR_IMAGE); MeshConfig spec.sidecar.sidecarImage and annotation flomesh.io/sidecar-image override it"},
		{&o.initImage, "init-container-image", "FSM_DEFAULT_INIT_CONTAINER_IMAGE", injector.DefaultInitImage, "",
			"fsm-init (iptables) init container image (env FSM_DEFAULT_INIT_CONTAINER_IMAGE)"},
		{&o.healthcheckImage, "healthcheck-container-image", "FSM_DEFAULT_HEALTHCHECK_CONTAINER_IMAGE", injector.DefaultHealthcheckImage, "",
			"fsm-healthcheck container image, added for TCP and HTTPS probes (env FSM_DEFAULT_HEALTHCHECK_CONTAINER_IMAGE)"},
	}
}

// envOr is env name's value, or def when it is unset or empty (a chart
// rendering an empty value means "the default").
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// applyEnv sets every flag the command line did not set from FSM_<FLAG>
// (dashes become underscores, upper case), so Helm can pass values as env.
func applyEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := "FSM_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if setErr := fs.Set(f.Name, v); setErr != nil {
				err = usageErrorf("invalid value %q for --%s (from env %s): %v", v, f.Name, name, setCause(setErr))
			}
		}
	})
	return err
}

// setCause is why fs.Set refused a value, without pflag's prefix (`invalid
// argument "x" for "--flag" flag: `): its callers name the value, the flag
// and where the value came from already, which said both ways twice.
func setCause(err error) error {
	var invalid *pflag.InvalidValueError
	if errors.As(err, &invalid) && invalid.Unwrap() != nil {
		return invalid.Unwrap()
	}
	return err
}

// validate checks values pflag cannot: one line naming the flag on error.
func (o *options) validate() error {
	oneOf := func(flag, v string, allowed ...string) error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		shown := make([]string, len(allowed))
		for i, a := range allowed {
			shown[i] = cmp.Or(a, `"" (unset)`) // not a blank between commas
		}
		return usageErrorf("invalid value %q for --%s: must be one of %s", v, flag, strings.Join(shown, ", "))
	}
	port := func(flag string, v int) error {
		if v < 1 || v > 65535 {
			return usageErrorf("invalid value %d for --%s: must be a port between 1 and 65535", v, flag)
		}
		return nil
	}
	positive := func(flag string, d time.Duration) error {
		if d <= 0 {
			return usageErrorf("invalid value %s for --%s: must be a positive duration such as 24h", d, flag)
		}
		return nil
	}
	dns1123 := func(flag, v string) error {
		if v == "" || len(v) > 63 || strings.Trim(v, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" || strings.HasPrefix(v, "-") || strings.HasSuffix(v, "-") {
			return usageErrorf("invalid value %q for --%s: must be a DNS label (lower-case letters, digits, '-')", v, flag)
		}
		return nil
	}
	checks := []error{
		dns1123("fsm-namespace", o.fsmNamespace),
		dns1123("mesh-name", o.meshName),
		oneOf("certificate-manager", o.certificateManager, "tresor", "vault", "cert-manager"),
		oneOf("ca-key-algorithm", o.caKeyAlgorithm, "rsa2048", "rsa3072", "rsa4096", "ecdsa-p256", "ecdsa-p384"),
		oneOf("bootstrap-key-algorithm", o.bootstrapKeyAlg, "auto", "ecdsa-p256", "ecdsa-p384", "rsa2048", "rsa3072", "rsa4096", "meshconfig"),
		oneOf("fsm-container-pull-policy", o.containerPullPolicy, "", string(corev1.PullAlways), string(corev1.PullIfNotPresent), string(corev1.PullNever)),
		oneOf("bootstrap-secret-writer", o.bootstrapSecretWriter, string(injector.SecretWriterAdmission), string(injector.SecretWriterController)),
		oneOf("vault-protocol", o.vaultProtocol, "http", "https"),
		oneOf("log-level", o.logLevel, "debug", "info", "warn", "error"),
		port("vault-port", o.vaultPort),
		port("injector-port", o.injectorPort),
		port("validator-port", o.validatorPort),
		port("converter-port", o.converterPort),
		positive("service-cert-validity-duration", o.serviceCertValidity),
		positive("bootstrap-cert-validity-duration", o.bootstrapValidity),
		positive("root-rotation-grace-period", o.rootRotationGrace),
	}
	for _, err := range checks {
		if err != nil {
			return err
		}
	}
	for _, img := range imageFlags(o) {
		if strings.TrimSpace(*img.value) == "" {
			where := "flag --" + img.flag + " or env " + img.env
			if img.mcField != "" {
				where += " (MeshConfig " + img.mcField + " overrides it per mesh)"
			}
			return usageErrorf("invalid value %q for --%s: an image must be set; leave %s unset for %s", *img.value, img.flag, where, img.builtIn)
		}
	}
	if o.rootAutoRotateBefore < 0 {
		return usageErrorf("invalid value %s for --root-auto-rotate-before: must be 0 (off) or a positive duration", o.rootAutoRotateBefore)
	}
	// A root serve creates lives certs.RootCAValidity: at or above it, each
	// new root would already be due, and serve would rotate once an hour for
	// ever (every sidecar's bundle churning with it).
	if o.rootAutoRotateBefore >= certs.RootCAValidity {
		return usageErrorf("invalid value %s for --root-auto-rotate-before: must be less than the lifetime of the roots serve creates (%s), or every new root would be rotated at once", o.rootAutoRotateBefore, certs.RootCAValidity)
	}
	for _, l := range []struct {
		qpsFlag, burstFlag string
		qps                float32
		burst              int
	}{
		{"kube-api-qps", "kube-api-burst", o.admissionQPS, o.admissionBurst},
		{"controller-kube-api-qps", "controller-kube-api-burst", o.controllerQPS, o.controllerBurst},
	} {
		// 0 would mean client-go's or controller-runtime's own default, and
		// a negative QPS no limit at all: neither is what the flag says.
		if !(l.qps > 0) {
			return usageErrorf("invalid value %g for --%s: must be a positive number of requests per second", l.qps, l.qpsFlag)
		}
		if l.burst < 1 {
			return usageErrorf("invalid value %d for --%s: must be 1 or more", l.burst, l.burstFlag)
		}
	}
	// The floor is allocated (and generated) up front, above the pool's
	// memory cap when larger: an extra zero or two meant gigabytes at start,
	// and a huge value a makechan panic.
	if o.keyPoolSize < 0 || o.keyPoolSize > maxKeyPoolSize {
		return usageErrorf("invalid value %d for --key-pool-size: must be between 0 and %d (the keys the pool's %d MiB cap holds of its smallest, ECDSA P-256, keys)",
			o.keyPoolSize, maxKeyPoolSize, keypool.DefaultMaxBytes>>20)
	}
	if !(o.injectorNamespaceRate >= 0) || math.IsInf(o.injectorNamespaceRate, 1) {
		return usageErrorf("invalid value %g for --injector-namespace-rate: must be 0 (no limit) or a positive number per second", o.injectorNamespaceRate)
	}
	if o.injectorNamespaceRate > 0 && o.injectorNamespaceBurst < 1 {
		return usageErrorf("invalid value %d for --injector-namespace-burst: must be 1 or more", o.injectorNamespaceBurst)
	}
	if o.handoffInFlight < 1 {
		return usageErrorf("invalid value %d for --injector-secret-handoff-in-flight: must be 1 or more", o.handoffInFlight)
	}
	if o.handoffBudget <= 0 {
		return usageErrorf("invalid value %s for --injector-secret-handoff-budget: must be positive", o.handoffBudget)
	}
	if o.injectorMaxInFlight < 0 {
		return usageErrorf("invalid value %d for --injector-max-in-flight: must be 0 (no limit) or more", o.injectorMaxInFlight)
	}
	// These would otherwise fail only once serve has reached the cluster,
	// in a serving-cert or listen error naming no flag.
	if errs := validation.IsDNS1123Subdomain(o.clusterDomain); o.clusterDomain != "" && len(errs) > 0 {
		return usageErrorf("invalid value %q for --cluster-domain: must be a DNS name such as cluster.local: %s", o.clusterDomain, strings.Join(errs, "; "))
	}
	// The trust domain ends every bootstrap certificate's CN and, with
	// MeshConfig localDNSProxy, each injected pod's DNS search list, which
	// the apiserver refuses unless it is a DNS name: the pod create failed
	// after its certificate and Secret were issued. The chart's schema
	// refuses the same; empty is the injector's default, cluster.local.
	if errs := validation.IsDNS1123Subdomain(o.trustDomain); o.trustDomain != "" && len(errs) > 0 {
		return usageErrorf("invalid value %q for --trust-domain: must be a DNS name such as cluster.local: %s", o.trustDomain, strings.Join(errs, "; "))
	}
	if err := hostFlag("webhook-url-host", o.webhookURLHost); err != nil {
		return err
	}
	// Names of objects serve reads or writes: a name Kubernetes can never
	// store failed only at the first write, naming no flag, or was looked
	// up for ever (an optional CA Secret, an issuer). Empty keeps each
	// flag's own meaning (--ca-bundle-secret-name: the default, or none
	// with cert-manager).
	for _, n := range []struct{ flag, v string }{
		{"ca-bundle-secret-name", o.caBundleSecretName},
		{"vault-token-secret-name", o.vaultTokenSecretName},
		{"cert-manager-issuer-name", o.certManagerIssuerName},
	} {
		if err := objectNameFlag(n.flag, n.v); err != nil {
			return err
		}
	}
	if o.injectorPort == o.validatorPort || o.injectorPort == o.converterPort || o.validatorPort == o.converterPort {
		return usageErrorf("--injector-port, --validator-port and --converter-port must differ, got %d, %d, %d", o.injectorPort, o.validatorPort, o.converterPort)
	}
	if _, err := o.portOwners(); err != nil {
		return err
	}
	if o.certificateManager == "vault" {
		if o.vaultHost == "" {
			return usageErrorf("--vault-host: VaultHost not specified in Hashi Vault options")
		}
		// A host name: scheme and port have flags of their own, and a URL
		// here fails only at the first issuance, naming no flag. DNS is
		// case-insensitive, so upper case is fine.
		if hostFlag("vault-host", strings.ToLower(o.vaultHost)) != nil {
			return usageErrorf("invalid value %q for --vault-host: must be a host name or IP address without scheme, port or brackets (they are --vault-protocol and --vault-port)", o.vaultHost)
		}
		if o.vaultRole == "" {
			return usageErrorf("--vault-role: VaultRole not specified in Hashi Vault options")
		}
		// Vault routes pki/issue/<role> only for a name its PKI engine can
		// create; another ("a/b", "pki role") failed the first issuance as
		// an unsupported path, naming no flag.
		if !vaultRoleName.MatchString(o.vaultRole) {
			return usageErrorf("invalid value %q for --vault-role: must be a Vault role name (letters, digits, '_', '-', '.', starting and ending with a letter, digit or '_')", o.vaultRole)
		}
		if o.vaultToken == "" && (o.vaultTokenSecretName == "" || o.vaultTokenSecretKey == "") {
			return usageErrorf("--vault-token or --vault-token-secret-name with --vault-token-secret-key must be set for --certificate-manager=vault")
		}
		if o.vaultCAFile != "" {
			// Over http the CA would go unused, and the token in clear.
			if o.vaultProtocol != "https" {
				return usageErrorf("invalid value %q for --vault-ca-file: it verifies Vault's https certificate, but --vault-protocol is %s", o.vaultCAFile, o.vaultProtocol)
			}
			// Else a missing mount or a wrong Secret key would surface
			// only at the first issuance, as a TLS error.
			if _, err := vault.ReadCAFile(o.vaultCAFile); err != nil {
				return usageErrorf("invalid value %q for --vault-ca-file: must be a PEM file of CA certificates: %v", o.vaultCAFile, err)
			}
		}
		if err := o.validateVaultClientCert(); err != nil {
			return err
		}
		if err := vault.ValidNamespace(o.vaultNamespace); err != nil {
			return usageErrorf("invalid value %q for --vault-namespace: %v", o.vaultNamespace, err)
		}
	}
	// External issuers (another group) have kinds of their own;
	// cert-manager's own group has two.
	if o.certManagerIssuerGroup == certmanager.DefaultIssuerGroup {
		if err := oneOf("cert-manager-issuer-kind", o.certManagerIssuerKind, "Issuer", "ClusterIssuer"); err != nil {
			return usageErrorf("%v (for --cert-manager-issuer-group=%s; an external issuer's kind goes with its own group)", err, o.certManagerIssuerGroup)
		}
	} else if o.certManagerIssuerKind == "" {
		return usageErrorf("invalid value \"\" for --cert-manager-issuer-kind: must name the issuer's kind")
	}
	if o.certificateManager == "cert-manager" {
		for flag, v := range map[string]string{"cert-manager-issuer-name": o.certManagerIssuerName, "cert-manager-issuer-group": o.certManagerIssuerGroup} {
			if v == "" {
				return usageErrorf("--%s: must be set for --certificate-manager=cert-manager", flag)
			}
		}
	}
	return nil
}

// validateVaultClientCert checks --vault-client-cert-file and
// --vault-client-key-file: else a missing mount, a wrong Secret key or a
// key of another certificate would surface only at the first issuance, as
// Vault refusing the handshake.
func (o *options) validateVaultClientCert() error {
	cert, key := o.vaultClientCertFile, o.vaultClientKeyFile
	switch {
	case cert == "" && key == "":
		return nil
	case cert == "":
		return usageErrorf("invalid value \"\" for --vault-client-cert-file: must be set with --vault-client-key-file (%q)", key)
	case key == "":
		return usageErrorf("invalid value \"\" for --vault-client-key-file: must be set with --vault-client-cert-file (%q)", cert)
	case o.vaultProtocol != "https":
		// No TLS handshake to present it in.
		return usageErrorf("invalid value %q for --vault-client-cert-file: it is presented to Vault's https listener, but --vault-protocol is %s", cert, o.vaultProtocol)
	}
	if _, _, err := vault.ReadClientKeyPair(cert, key); err != nil {
		return usageErrorf("invalid value %q for --vault-client-cert-file (with --vault-client-key-file %q): must be a PEM certificate and its private key: %v", cert, key, err)
	}
	return nil
}

// portOwners are the ports serve listens on (every webhook's, metrics',
// health probes') by the flag that sets each; an error when two share one.
func (o *options) portOwners() (map[int]string, error) {
	taken := map[int]string{o.injectorPort: "--injector-port", o.validatorPort: "--validator-port", o.converterPort: "--converter-port"}
	for _, a := range []struct{ flag, addr string }{{"metrics-bind-address", o.metricsAddr}, {"health-probe-bind-address", o.healthProbeAddr}} {
		port, err := bindAddressFlag(a.flag, a.addr, true)
		if err != nil {
			return nil, err
		}
		if other, ok := taken[port]; ok && port != 0 {
			return nil, usageErrorf("invalid value %q for --%s: port %d is %s's", a.addr, a.flag, port, other)
		}
		if port > 0 {
			taken[port] = "--" + a.flag
		}
	}
	return taken, nil
}

// maxKeyPoolSize bounds --key-pool-size: the ECDSA P-256 keys (the smallest
// pooled) the pool's memory cap holds.
var maxKeyPoolSize = keypool.DefaultMaxBytes / keypool.KeyBytes(certs.ECDSAP256)

// vaultRoleName is the name Vault's PKI engine routes in roles/<name> and
// issue/<role> (its framework.GenericNameRegex).
var vaultRoleName = regexp.MustCompile(`^\w([\w.-]*\w)?$`)

// objectNameFlag checks a flag naming a Kubernetes object (a DNS subdomain);
// empty passes.
func objectNameFlag(flag, v string) error {
	if errs := validation.IsDNS1123Subdomain(v); v != "" && len(errs) > 0 {
		return usageErrorf("invalid value %q for --%s: must be a Kubernetes object name (lower-case letters, digits, '-', '.'): %s", v, flag, strings.Join(errs, "; "))
	}
	return nil
}

// clientConfigs derives from cfg the rest.Config of serve's admission path
// and that of its controllers, each with its own rate limit (copies: cfg is
// left as it was), so a backlog of adoption patches never delays an
// admission's write in the limiter.
func (o *options) clientConfigs(cfg *rest.Config) (admission, controllers *rest.Config) {
	admission, controllers = rest.CopyConfig(cfg), rest.CopyConfig(cfg)
	admission.QPS, admission.Burst = o.admissionQPS, o.admissionBurst
	controllers.QPS, controllers.Burst = o.controllerQPS, o.controllerBurst
	return admission, controllers
}

// hostFlag checks a flag holding a host: empty, an IP address or a DNS
// name, without scheme, port or brackets.
func hostFlag(flag, v string) error {
	if v == "" || net.ParseIP(v) != nil {
		return nil
	}
	if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
		return usageErrorf("invalid value %q for --%s: must be a host name or IP address without scheme, port or brackets: %s", v, flag, strings.Join(errs, "; "))
	}
	return nil
}

// bindAddressFlag checks a host:port flag and returns its port; with
// disable, "" and "0" turn the listener off (port -1).
func bindAddressFlag(flag, v string, disable bool) (int, error) {
	if disable && (v == "" || v == "0") {
		return -1, nil
	}
	host, portStr, err := net.SplitHostPort(v)
	if err != nil {
		return 0, usageErrorf("invalid value %q for --%s: must be host:port or :port: %v", v, flag, err)
	}
	if err := hostFlag(flag, host); err != nil {
		return 0, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return 0, usageErrorf("invalid value %q for --%s: port %q must be a number between 0 and 65535", v, flag, portStr)
	}
	return port, nil
}
