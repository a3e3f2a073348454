// Package vault issues mesh certificates from a HashiCorp Vault PKI secrets
// engine (pki/issue/<role>) through the official API client. The root key
// stays in Vault; FSM's options and their error wording are kept.
package vault

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	vaultapi "github.com/hashicorp/vault/api"
	"k8s.io/client-go/kubernetes"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/internal/transient"
)

// ProviderName is Provider()'s value and the --certificate-manager flag value.
const ProviderName = "vault"

// FSM's defaults.
const (
	DefaultPort     = 8200
	DefaultProtocol = "http"
	DefaultRole     = "flomesh"
	// DefaultMount is the PKI secrets engine's mount path.
	DefaultMount = "pki"
	// DefaultTimeout bounds one Vault call.
	DefaultTimeout = 30 * time.Second
)

// Options are FSM's --vault-* settings.
type Options struct {
	Host     string
	Port     int
	Protocol string // http or https
	Role     string
	// CAFile is a PEM file of the CAs that sign Vault's https certificate
	// (--vault-ca-file), for a Vault behind a private CA; empty means the
	// system's roots (or VAULT_CACERT). Read in New, then every TLSFilesPoll
	// by WatchTLSFiles.
	CAFile string
	// ClientCertFile and ClientKeyFile are the PEM certificate this server
	// presents to Vault's https listener and its private key
	// (--vault-client-cert-file, --vault-client-key-file), for a Vault that
	// requires client certificates (tls_require_and_verify_client_cert):
	// both or neither. Read in New, then every TLSFilesPoll by
	// WatchTLSFiles.
	ClientCertFile, ClientKeyFile string
	// Namespace is the Vault Enterprise or HCP Vault namespace the PKI
	// mount and the token live in (--vault-namespace; HCP Vault's is
	// "admin"), sent as X-Vault-Namespace on every call. Empty: the API
	// client's VAULT_NAMESPACE, else the root namespace. Not in FSM.
	Namespace string
	// TLSFilesPoll is how often WatchTLSFiles re-reads CAFile and the
	// client certificate; zero means DefaultTLSFilesPoll.
	TLSFilesPoll time.Duration
	// Token authenticates to Vault. When empty it is read from the Secret
	// TokenSecretName (key TokenSecretKey) in TokenSecretNamespace.
	Token                string
	TokenSecretName      string
	TokenSecretKey       string
	TokenSecretNamespace string
	// Secrets reads the token Secret.
	Secrets kubernetes.Interface
	// TokenSecretPoll is how often KeepTokenAlive re-reads the token
	// Secret for a rotated token; zero means a minute.
	TokenSecretPoll time.Duration
	// Mount of the PKI engine; empty means DefaultMount.
	Mount string
	// Timeout of one Vault call; zero means DefaultTimeout.
	Timeout time.Duration
	// MaxRetries on 5xx and connection errors; nil means the client's
	// default (2). Set it to 0 to fail fast.
	MaxRetries *int
	// Logger receives the warning when Vault grants a shorter validity
	// than requested; the zero value discards it.
	Logger logr.Logger
}

// Validate checks the options with FSM's wording.
func (o Options) Validate() error {
	if o.Host == "" {
		return errors.New("VaultHost not specified in Hashi Vault options")
	}
	if o.Role == "" {
		return errors.New("VaultRole not specified in Hashi Vault options")
	}
	if o.Protocol != "http" && o.Protocol != "https" {
		return fmt.Errorf("VaultProtocol in Hashi Vault options must be one of [http, https], got %s", o.Protocol)
	}
	if o.Port < 1 || o.Port > 65535 {
		return fmt.Errorf("VaultPort in Hashi Vault options must be between 1 and 65535, got %d", o.Port)
	}
	// Over http the CA would be silently unused, and the token sent in clear.
	if o.CAFile != "" && o.Protocol != "https" {
		return fmt.Errorf("VaultCAFile %q in Hashi Vault options verifies Vault's https certificate, but VaultProtocol is %s", o.CAFile, o.Protocol)
	}
	if err := ValidNamespace(o.Namespace); err != nil {
		return fmt.Errorf("VaultNamespace %q in Hashi Vault options: %w", o.Namespace, err)
	}
	if (o.ClientCertFile == "") != (o.ClientKeyFile == "") {
		return fmt.Errorf("VaultClientCertFile %q and VaultClientKeyFile %q in Hashi Vault options: set both or neither", o.ClientCertFile, o.ClientKeyFile)
	}
	// Over http there is no TLS handshake to present it in.
	if o.ClientCertFile != "" && o.Protocol != "https" {
		return fmt.Errorf("VaultClientCertFile %q in Hashi Vault options is presented to Vault's https listener, but VaultProtocol is %s", o.ClientCertFile, o.Protocol)
	}
	if o.Token == "" {
		if o.TokenSecretName == "" || o.TokenSecretKey == "" {
			return errors.New("VaultToken not specified in Hashi Vault options: set the token, or the name and key of the Secret holding it")
		}
		if o.Secrets == nil || o.TokenSecretNamespace == "" {
			return errors.New("VaultToken Secret set in Hashi Vault options but no Kubernetes client or namespace to read it")
		}
	}
	return nil
}

// ValidNamespace checks a Vault namespace path ("admin", "admin/team-a/"):
// it travels in a header, where a space or control character would fail
// every call with an error naming no setting, and Vault names no namespace
// by an empty segment. Empty is valid: no namespace.
func ValidNamespace(ns string) error {
	if ns == "" {
		return nil
	}
	for _, r := range ns {
		if r <= ' ' || r == 0x7f || r > 0x7e {
			return fmt.Errorf("must be a Vault namespace path: printable ASCII without spaces, got character %q", r)
		}
	}
	for _, seg := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(ns, "/"), "/"), "/") {
		if seg == "" {
			return errors.New("must be a Vault namespace path: segments separated by single '/', none empty")
		}
	}
	return nil
}

// ReadCAFile reads a PEM file of CA certificates for Vault's TLS, failing
// when it cannot be read or holds no parseable certificate (which the API
// client would report only as "Couldn't parse PEM").
func ReadCAFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err // names the path
	}
	if _, err := certs.ParseCertsPEM(data); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, nil
}

// ReadClientKeyPair reads the PEM certificate presented to Vault and its
// private key, failing when either cannot be read or the key is not the
// certificate's: a pair read between the updates of its two files, or a
// key the API client would report only at the first handshake, if at all.
func ReadClientKeyPair(certFile, keyFile string) (cert, key []byte, err error) {
	if cert, err = os.ReadFile(certFile); err != nil {
		return nil, nil, err // names the path
	}
	if key, err = os.ReadFile(keyFile); err != nil {
		return nil, nil, err
	}
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		return nil, nil, fmt.Errorf("%s with key %s: %w", certFile, keyFile, err)
	}
	return cert, key, nil
}

// Address is the Vault URL the options point at.
func (o Options) Address() string {
	return (&url.URL{Scheme: o.Protocol, Host: net.JoinHostPort(o.Host, strconv.Itoa(o.Port))}).String()
}

// Issuer is the Vault certs.Issuer. It is safe for concurrent use.
type Issuer struct {
	opts Options
	// cur is the API client in use, replaced whole when CAFile or the
	// client certificate changes (swapClient): each call takes it once, so
	// a call under way ends on the client it started with. Read it with
	// client().
	cur atomic.Pointer[vaultapi.Client]
	// files is the TLS files' content as New read it, which WatchTLSFiles
	// starts from.
	files tlsFiles
	mount string

	mu sync.Mutex
	// issuerCerts is each mount issuer's certificate PEM by issuer ID, as
	// last listed (an issuer's certificate is immutable).
	issuerCerts map[string][]byte
	// bundle is the mount's CA bundle as last read, at bundleAt, and
	// defaultCA its default issuer (nil if the mount has none); issuance
	// reuses them for bundleReuse.
	bundle    *certs.Bundle
	defaultCA *x509.Certificate
	bundleAt  time.Time
	// roleCA is the CA that signed the role's last certificate: issuance
	// caps at it rather than at the default, so that a role pinned to a
	// shorter-lived issuer costs one refused call once, not per certificate.
	roleCA *x509.Certificate

	clamps clampLog
	caCaps caCapLog

	// tokenReadAt is when the token Secret was last re-read after Vault
	// denied the token (at most every tokenReread). tokenMu also orders
	// token changes with client swaps (swapClient), so that neither is lost.
	tokenMu     sync.Mutex
	tokenReadAt time.Time
	// tokenChanged tells KeepTokenAlive that reloadToken switched tokens.
	tokenChanged chan struct{}
}

// tokenReread bounds how often a denied token sends us to its Secret.
const tokenReread = 10 * time.Second

// denied reports whether Vault refused the token (403).
func denied(err error) bool {
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

// reloadToken re-reads the token Secret (a token from --vault-token is
// fixed) unless that was done a moment ago, and reports whether the client
// now has another token than used, the one Vault denied: a token rotated in
// the Secret is picked up at the first call it would have failed, with no
// restart.
func (i *Issuer) reloadToken(ctx context.Context, used string) bool {
	if i.opts.Token != "" {
		return false
	}
	i.tokenMu.Lock()
	defer i.tokenMu.Unlock()
	if i.client().Token() != used {
		return true // another call has just reloaded it
	}
	if time.Since(i.tokenReadAt) < tokenReread {
		return false
	}
	i.tokenReadAt = time.Now()
	token, err := readToken(ctx, i.opts)
	if err != nil {
		i.opts.Logger.Error(err, "Re-reading the Vault token after Vault denied it")
		return false
	}
	if token == i.client().Token() {
		return false
	}
	i.client().SetToken(token)
	select {
	case i.tokenChanged <- struct{}{}:
	default: // one pending signal is enough: the keeper reads the client's token
	}
	i.opts.Logger.Info("Vault denied the token; using the new one in its Secret", "secret", i.opts.TokenSecretNamespace+"/"+i.opts.TokenSecretName)
	return true
}

// readToken reads the token from its Secret.
func readToken(ctx context.Context, opts Options) (string, error) {
	s, err := opts.Secrets.CoreV1().Secrets(opts.TokenSecretNamespace).Get(ctx, opts.TokenSecretName, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading Secret %s/%s: %w", opts.TokenSecretNamespace, opts.TokenSecretName, err)
	}
	token := strings.TrimSpace(string(s.Data[opts.TokenSecretKey]))
	if token == "" {
		return "", fmt.Errorf("token Secret %s/%s has no key %q (or it is empty)", opts.TokenSecretNamespace, opts.TokenSecretName, opts.TokenSecretKey)
	}
	return token, nil
}

var _ certs.Issuer = (*Issuer)(nil)

// New validates opts, resolves the token (reading its Secret if needed) and
// builds the client. It does not call Vault: the first Issue reports whether
// Vault is reachable and the token accepted.
func New(ctx context.Context, opts Options) (*Issuer, error) {
	if err := opts.Validate(); err != nil {
		return nil, &certs.ProviderError{Provider: ProviderName, Op: "options", Err: err}
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = logr.Discard()
	}
	token := opts.Token
	if token == "" {
		// Retried while the apiserver answers with a transient error, so a
		// replica starting during an etcd leader change comes up.
		err := transient.Retry(ctx, opts.Logger, 0, "read the Vault token Secret", func(ctx context.Context) (err error) {
			token, err = readToken(ctx, opts)
			return err
		})
		if err != nil {
			return nil, &certs.ProviderError{Provider: ProviderName, Op: "token", Err: err}
		}
	}
	var files tlsFiles
	if opts.CAFile != "" {
		var err error
		if files.ca, err = ReadCAFile(opts.CAFile); err != nil {
			return nil, &certs.ProviderError{Provider: ProviderName, Op: "options", Err: fmt.Errorf("VaultCAFile %q in Hashi Vault options: %w", opts.CAFile, err)}
		}
	}
	if opts.ClientCertFile != "" {
		var err error
		if files.cert, files.key, err = ReadClientKeyPair(opts.ClientCertFile, opts.ClientKeyFile); err != nil {
			return nil, &certs.ProviderError{Provider: ProviderName, Op: "options", Err: fmt.Errorf("VaultClientCertFile %q in Hashi Vault options: %w", opts.ClientCertFile, err)}
		}
	}
	c, err := newClient(opts, files, opts.Logger)
	if err != nil {
		return nil, &certs.ProviderError{Provider: ProviderName, Op: "client", Err: err}
	}
	c.SetToken(token)
	mount := opts.Mount
	if mount == "" {
		mount = DefaultMount
	}
	i := &Issuer{opts: opts, files: files, mount: strings.Trim(mount, "/"), tokenChanged: make(chan struct{}, 1)}
	i.cur.Store(c)
	return i, nil
}

// tlsFiles is the content of the files Vault's TLS is configured with:
// CAFile's (nil: the system's roots, or VAULT_CACERT) and the client
// certificate's and its key's (nil: none is presented).
type tlsFiles struct {
	ca, cert, key []byte
}

// newClient builds an API client of opts, without a token, that verifies
// Vault's certificate with f.ca and presents f.cert. Every client New and
// swapClient build is configured alike; log is told that VAULT_SKIP_VERIFY
// is ignored (New's: the environment does not change while serve runs, so
// once is enough).
func newClient(opts Options, f tlsFiles, log logr.Logger) (*vaultapi.Client, error) {
	cfg := vaultapi.DefaultConfig()
	cfg.Address = opts.Address()
	cfg.Timeout = opts.timeout()
	if opts.MaxRetries != nil {
		cfg.MaxRetries = *opts.MaxRetries
	}
	if cfg.Error != nil {
		return nil, cfg.Error
	}
	if f.ca != nil {
		// Replaces the roots (VAULT_CACERT's included): the flag names
		// exactly the CAs that sign Vault's certificate.
		if err := cfg.ConfigureTLS(&vaultapi.TLSConfig{CACertBytes: f.ca}); err != nil {
			return nil, fmt.Errorf("VaultCAFile %q: %w", opts.CAFile, err)
		}
		// ConfigureTLS leaves VAULT_SKIP_VERIFY's setting (read by
		// DefaultConfig) on: the CA would go unused and the token be sent
		// to whoever answers.
		if t, ok := cfg.HttpClient.Transport.(*http.Transport); ok && t.TLSClientConfig != nil && t.TLSClientConfig.InsecureSkipVerify {
			log.Info("VAULT_SKIP_VERIFY is ignored: Vault's certificate is verified with --vault-ca-file", "file", opts.CAFile)
			t.TLSClientConfig.InsecureSkipVerify = false
		}
	}
	if f.cert != nil {
		pair, err := tls.X509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, fmt.Errorf("VaultClientCertFile %q with VaultClientKeyFile %q: %w", opts.ClientCertFile, opts.ClientKeyFile, err)
		}
		t, ok := cfg.HttpClient.Transport.(*http.Transport)
		if !ok || t.TLSClientConfig == nil {
			return nil, fmt.Errorf("VaultClientCertFile %q: the Vault API client's transport %T has no TLS configuration to present it with", opts.ClientCertFile, cfg.HttpClient.Transport)
		}
		// Presented whatever CAs the listener names as acceptable, as the
		// API client presents VAULT_CLIENT_CERT (which this replaces): from
		// Certificates, Go sends none whose issuer is not named.
		t.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	// Clones (the token keeper's) keep the namespace header.
	cfg.CloneHeaders = true
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	if opts.Namespace != "" {
		c.SetNamespace(opts.Namespace)
	}
	return c, nil
}

// clientCertAdvice is what to do about a client certificate Vault refused,
// or its lack.
func (i *Issuer) clientCertAdvice() string {
	if i.opts.ClientCertFile == "" {
		return "give one Vault trusts with --vault-client-cert-file and --vault-client-key-file (chart: fsm.vault.clientCertSecret)"
	}
	return fmt.Sprintf("--vault-client-cert-file %q must be valid and signed by a CA of the tls_client_ca_file of Vault's listener", i.opts.ClientCertFile)
}

// timeout bounds one Vault call, retries included.
func (o Options) timeout() time.Duration {
	if o.Timeout == 0 {
		return DefaultTimeout
	}
	return o.Timeout
}

// client is the API client in use; a caller making several calls that
// belong together (a token and the request sent with it) takes it once.
func (i *Issuer) client() *vaultapi.Client { return i.cur.Load() }

// Provider implements certs.Issuer.
func (i *Issuer) Provider() string { return ProviderName }

// Issue implements certs.Issuer through pki/issue/<role>. The TTL is sent in
// whole seconds, as asked (FSM rounded it to hours), unless the certificate
// would outlive the CA that signs it: Vault refuses such a request (400
// "beyond the expiration of the CA certificate"), so the TTL is cut to end
// certs.RemoteCASkew before that CA, as Tresor cuts a leaf at its CA's NotAfter. A leaf
// is useless past its CA anyway, and FSM's documented root (ttl 87600h,
// generated before any leaf) always ends before a 87600h leaf would. The
// role decides the key type, so req.KeyAlgorithm and req.Organization are
// not used.
//
// When the TTL is above what the role (or mount) allows, Vault does not fail:
// it issues a shorter certificate and adds a warning. That certificate is
// returned as it is, as FSM does: FSM's documented role has max_ttl 24h while
// serving and bootstrap certificates are asked for a decade, and callers
// schedule renewal from the certificate's own NotBefore/NotAfter. Each
// shortening counts in fsm_webhooks_vault_ttl_clamped_total and is logged
// once per distinct (requested, granted) pair: nothing renews a sidecar's
// bootstrap certificate, so the operator must raise the role's max_ttl.
func (i *Issuer) Issue(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	return certs.IssueRemote(ctx, ProviderName, req, i.issue)
}

func (i *Issuer) issue(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	secs := int64(req.Validity / time.Second)
	if secs < 1 || time.Duration(secs)*time.Second != req.Validity {
		return nil, fmt.Errorf("validity %s is not a whole number of seconds (Vault's TTL resolution)", req.Validity)
	}
	// The role signs with the mount's default issuer unless it is pinned to
	// another (issuer_ref), which reading the role would tell but FSM's
	// policies need not allow: cap at the pinned CA once one has signed,
	// else at the default; on Vault's refusal retry once at the mount
	// issuer that ends first; and when the CA that signed is not the one
	// the certificate was cut at (the default moved on in a root rotation,
	// the role was pinned elsewhere) and lets it live longer, ask once more.
	_, def, err := i.cas(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the CA of mount %s, which the certificate must not outlive: %w", i.mount, err)
	}
	capCA := def
	i.mu.Lock()
	if i.roleCA != nil {
		capCA = i.roleCA
	}
	i.mu.Unlock()
	ttl := req.Validity
	if capCA != nil {
		ttl = certs.CappedValidity(req.Validity, time.Now(), capCA.NotAfter)
	}
	data := map[string]any{
		"common_name": req.CommonName,
		"format":      "pem",
	}
	if len(req.DNSNames) > 0 {
		data["alt_names"] = strings.Join(req.DNSNames, ",")
	}
	if len(req.IPAddresses) > 0 {
		ips := make([]string, len(req.IPAddresses))
		for n, ip := range req.IPAddresses {
			ips[n] = ip.String()
		}
		data["ip_sans"] = strings.Join(ips, ",")
	}
	path := i.mount + "/issue/" + i.opts.Role
	write := func(ttl time.Duration) (*vaultapi.Secret, time.Time, error) {
		data["ttl"] = strconv.FormatInt(int64(ttl/time.Second), 10) + "s"
		start := time.Now()
		c := i.client()
		used := c.Token()
		resp, err := c.Logical().WriteWithContext(ctx, path, data)
		if denied(err) && i.reloadToken(ctx, used) {
			start = time.Now()
			resp, err = i.client().Logical().WriteWithContext(ctx, path, data)
		}
		return resp, start, err
	}
	resp, start, err := write(ttl)
	if caExpiryRefusal(err) {
		b, _, rerr := i.readCAs(ctx)
		if rerr != nil {
			return nil, fmt.Errorf("%w; then, reading the CAs of mount %s to retry within the CA's lifetime: %w", i.explain(path, err), i.mount, rerr)
		}
		if shorter := certs.EarliestCap(req.Validity, time.Now(), b.Certificates()); shorter < ttl {
			ttl = shorter
			resp, start, err = write(ttl)
		}
	}
	if err != nil {
		return nil, i.explain(path, err)
	}
	c, signers, signer, err := i.parseIssued(path, resp)
	if err != nil {
		return nil, err
	}
	if ttl < req.Validity && capCA != nil && !bytes.Equal(signer.Raw, capCA.Raw) {
		if longer := certs.CappedValidity(req.Validity, time.Now(), signer.NotAfter); longer > ttl {
			ttl = longer
			if resp, start, err = write(ttl); err != nil {
				return nil, i.explain(path, err)
			}
			if c, signers, signer, err = i.parseIssued(path, resp); err != nil {
				return nil, err
			}
		}
	}
	if c.CABundle, err = i.bundleFor(ctx, signers); err != nil {
		return nil, err
	}
	i.mu.Lock()
	if def != nil && bytes.Equal(signer.Raw, def.Raw) {
		i.roleCA = nil // the default signs: follow it as it moves on
	} else {
		i.roleCA = signer
	}
	i.mu.Unlock()
	// A role clamp is measured against the TTL sent, so that a cut at the
	// CA's end is not reported as the role's doing.
	granted, w := c.NotAfter.Sub(start), ttlWarning(resp.Warnings)
	switch {
	case w != "" || shortened(ttl, granted):
		i.reportClamp(req, granted, w)
	case ttl < req.Validity:
		i.reportCACap(req, granted, signers)
		grants.issuedAsAsked(i.opts.Role, ttl)
	default:
		grants.issuedAsAsked(i.opts.Role, ttl)
	}
	return c, nil
}

// parseIssued reads pki/issue's answer: the certificate with its key, and
// issuing_ca as a bundle and its first certificate, the CA that signed.
func (i *Issuer) parseIssued(path string, resp *vaultapi.Secret) (*certs.Certificate, *certs.Bundle, *x509.Certificate, error) {
	if resp == nil || resp.Data == nil {
		return nil, nil, nil, fmt.Errorf("%s returned no data", path)
	}
	certPEM, _ := resp.Data["certificate"].(string)
	keyPEM, _ := resp.Data["private_key"].(string)
	issuingCA, _ := resp.Data["issuing_ca"].(string)
	key, err := certs.ParseKeyPEM([]byte(keyPEM))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: private_key: %w", path, err)
	}
	c, err := certs.IssuedCertificate([]byte(certPEM), key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: certificate: %w", path, err)
	}
	cas, err := certs.ParseCertsPEM([]byte(issuingCA))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: issuing_ca: %w", path, err)
	}
	return c, certs.NewBundle(time.Now(), cas...), cas[0], nil
}

// noDefaultIssuer reports whether Vault answered that the mount has no
// default issuer (deleted while other issuers remain).
func noDefaultIssuer(err error) bool {
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusBadRequest &&
		strings.Contains(strings.Join(re.Errors, "; "), "no default issuer currently configured")
}

// caExpiryRefusal reports whether Vault refused a certificate for outliving
// its CA (the issuer's leaf_not_after_behavior "err", Vault's default).
func caExpiryRefusal(err error) bool {
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusBadRequest &&
		strings.Contains(strings.Join(re.Errors, "; "), "beyond the expiration of the CA certificate")
}

func ttlWarning(ws []string) string {
	for _, w := range ws {
		lw := strings.ToLower(w)
		if strings.Contains(lw, "ttl") && (strings.Contains(lw, "max") || strings.Contains(lw, "longer") || strings.Contains(lw, "greater")) {
			return w
		}
	}
	return ""
}

// explain turns client errors into the cases an operator can act on.
func (i *Issuer) explain(path string, err error) error {
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		// One line: Vault's multierror text spans several.
		joined := strings.Join(strings.Fields(strings.Join(re.Errors, "; ")), " ")
		switch {
		case re.StatusCode == http.StatusForbidden:
			return fmt.Errorf("the Vault server at %s denied the token for %s (403 %s): check the token and its policy", i.opts.Address(), path, joined)
		case strings.Contains(joined, "unknown role"):
			return fmt.Errorf("role %q does not exist on Vault mount %s (%d %s)", i.opts.Role, i.mount, re.StatusCode, joined)
		case noRoute(err):
			return fmt.Errorf("the Vault server at %s has no PKI engine at %s (404 %s): enable one at mount %s (vault secrets enable -path=%s pki)", i.opts.Address(), path, joined, i.mount, i.mount)
		case re.StatusCode == http.StatusNotFound:
			return fmt.Errorf("the Vault server at %s has no PKI engine at %s (404 %s)", i.opts.Address(), path, joined)
		case caExpiryRefusal(err):
			return fmt.Errorf("the Vault server at %s refused %s: the CA that signs for role %q expires too soon even for a certificate cut at its end (%d %s): "+
				"rotate the mount's root (certs/rootrotation), or check that Vault's clock is not ahead of this host's", i.opts.Address(), path, i.opts.Role, re.StatusCode, joined)
		default:
			return fmt.Errorf("the Vault server at %s refused %s (%d %s)", i.opts.Address(), path, re.StatusCode, joined)
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		// A sealed or slow Vault too: not necessarily unreachable.
		return fmt.Errorf("the Vault server at %s gave no usable answer to %s before the deadline (sealed, overloaded or slow answers are retried): %w", i.opts.Address(), path, err)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("calling the Vault server at %s (%s): %w", i.opts.Address(), path, err)
	}
	// Vault's certificate is signed by a CA not among the roots: the
	// operator needs to name it, which the TLS error alone does not say.
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return untrustedVaultCert(i.opts.Address(), i.opts.CAFile, ua, err)
	}
	// Reached, but its certificate does not name the host asked for:
	// "unreachable" would send the operator after the network.
	var he x509.HostnameError
	if errors.As(err, &he) {
		// The vault client verifies VAULT_TLS_SERVER_NAME instead of the
		// host when that is set: --vault-host is not what to change then.
		if sn := os.Getenv("VAULT_TLS_SERVER_NAME"); sn != "" && sn == he.Host {
			return fmt.Errorf("the Vault server at %s presented a certificate that is not valid for %s, the name VAULT_TLS_SERVER_NAME in this server's environment asks for: unset it, or set it to a name the certificate holds: %w", i.opts.Address(), he.Host, err)
		}
		return fmt.Errorf("the Vault server at %s presented a certificate that is not valid for %s: set --vault-host (chart: fsm.vault.host) to a name or IP address the certificate holds: %w", i.opts.Address(), he.Host, err)
	}
	var ie x509.CertificateInvalidError
	if errors.As(err, &ie) {
		return fmt.Errorf("the Vault server at %s presented a certificate this server cannot accept: %w", i.opts.Address(), err)
	}
	// Vault's listener refused this server's certificate (it requires one:
	// tls_require_and_verify_client_cert), which "unreachable" would not
	// say.
	if alert, ok := clientCertRefusal(err); ok {
		if i.opts.ClientCertFile == "" {
			return fmt.Errorf("the Vault server at %s requires a TLS client certificate, and this server presents none (%s): %s: %w", i.opts.Address(), alert, i.clientCertAdvice(), err)
		}
		return fmt.Errorf("the Vault server at %s refused the TLS client certificate (%s): %s: %w", i.opts.Address(), alert, i.clientCertAdvice(), err)
	}
	// The same refusal as the API client's HTTP/2 transport often reports
	// it (connLost), or a Vault going away: say both.
	if i.opts.Protocol == "https" && connLost(err) {
		return fmt.Errorf("the Vault server at %s closed the connection (%s): if its listener requires TLS client certificates (tls_require_and_verify_client_cert), %s: %w", i.opts.Address(), path, i.clientCertAdvice(), err)
	}
	var ue *url.Error
	var ne net.Error
	if errors.As(err, &ue) || errors.As(err, &ne) {
		return fmt.Errorf("the Vault server at %s is unreachable: %w", i.opts.Address(), err)
	}
	return fmt.Errorf("calling the Vault server at %s (%s): %w", i.opts.Address(), path, err)
}

// untrustedVaultCert is explain's error for a Vault certificate that no CA
// in use verifies (ua, within err). Without --vault-ca-file the CA is to be
// given; with it, the file is named, and so is the issuer of Vault's
// certificate: the usual cause is then not a wrong root but a Vault whose
// certificate comes from an intermediate CA its listener does not send
// (tls_cert_file holding only the certificate), which "give that CA with
// --vault-ca-file" would not lead an operator who did to.
func untrustedVaultCert(addr, caFile string, ua x509.UnknownAuthorityError, err error) error {
	issuer := "an unknown CA"
	if ua.Cert != nil {
		issuer = strconv.Quote(ua.Cert.Issuer.String())
	}
	if caFile == "" {
		return fmt.Errorf("the Vault server at %s presented a certificate issued by %s, signed by a CA this server does not trust: give that CA with --vault-ca-file (chart: fsm.vault.caSecret): %w", addr, issuer, err)
	}
	return fmt.Errorf("the Vault server at %s presented a certificate issued by %s, which no CA in --vault-ca-file %q (chart: fsm.vault.caSecret) verifies: "+
		"that file must hold the CA that issued it; if that is an intermediate under a root the file holds, Vault's listener must send the intermediate after its certificate (its tls_cert_file), or the file must hold it too: %w", addr, issuer, caFile, err)
}

// CABundle implements certs.Issuer.
//
// The bundle is every issuer of the mount, so that a root added to the
// mount is trusted before it signs and one still on the mount stays trusted
// after the default moved on (certs/rootrotation's "Vault and cert-manager"
// steps 1-3): a server reading only the default issuer would trust the next
// root only from the moment it signs, and a server restarted after the
// switch would drop the old root at once.
//
// The default issuer comes from <mount>/cert/ca: it exists on every Vault
// version and costs no signature. The others come from <mount>/issuers and
// <mount>/issuer/<id>/json (Vault 1.11 and later, where a role can also be
// pinned to a non-default issuer; both unauthenticated, so no policy
// change; an older Vault answers 404 and its mount's one issuer is the
// default). An issuer's certificate never changes, so each is read once.
// FSM instead issued a throwaway certificate for "init-cert" (1 s, sent as
// ttl "0h") and kept its issuing_ca, which needs the role to allow that bare
// name and stores a certificate per start.
func (i *Issuer) CABundle(ctx context.Context) ([]byte, error) {
	b, err := i.caBundle(ctx)
	if err != nil {
		return nil, &certs.ProviderError{Provider: ProviderName, Op: "CA bundle", Err: err}
	}
	return b.PEM(), nil
}

// bundleReuse is how long an issuance reuses the bundle last read: the
// servers re-read it every 10 s anyway, and a pod create then costs Vault
// one call (pki/issue) instead of three.
const bundleReuse = 10 * time.Second

// bundleFor is the bundle handed out with a certificate that signer
// signed: the mount's, reread if older than bundleReuse or missing that CA,
// and always holding signer (the certificate's own anchor).
func (i *Issuer) bundleFor(ctx context.Context, signer *certs.Bundle) ([]byte, error) {
	b, _, err := i.cas(ctx)
	if err != nil {
		return nil, err
	}
	for _, c := range signer.Certificates() {
		if !b.Contains(c) {
			if b, _, err = i.readCAs(ctx); err != nil {
				return nil, err
			}
			break
		}
	}
	return b.Merge(time.Now(), signer).PEM(), nil
}

func (i *Issuer) caBundle(ctx context.Context) (*certs.Bundle, error) {
	b, _, err := i.readCAs(ctx)
	return b, err
}

// cas is the mount's bundle and default issuer, reread if older than
// bundleReuse.
func (i *Issuer) cas(ctx context.Context) (*certs.Bundle, *x509.Certificate, error) {
	i.mu.Lock()
	b, def, at := i.bundle, i.defaultCA, i.bundleAt
	i.mu.Unlock()
	if b != nil && time.Since(at) < bundleReuse {
		return b, def, nil
	}
	return i.readCAs(ctx)
}

// readCAs reads the mount's bundle and its default issuer (nil when the
// mount has none but other issuers).
func (i *Issuer) readCAs(ctx context.Context) (*certs.Bundle, *x509.Certificate, error) {
	path := i.mount + "/cert/ca"
	resp, err := i.readRouted(ctx, path)
	switch {
	case noDefaultIssuer(err):
		// Its default was deleted; roles pinned to the others still sign.
		resp = nil
	case err != nil:
		return nil, nil, i.explain(path, err)
	}
	var def []byte
	if resp != nil && resp.Data != nil {
		s, _ := resp.Data["certificate"].(string)
		def = []byte(s)
	}
	others, err := i.mountIssuers(ctx)
	if err != nil {
		return nil, nil, err
	}
	b, err := certs.ParseBundle(time.Now(), append([][]byte{def}, others...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if b.Len() == 0 {
		return nil, nil, fmt.Errorf("the Vault server at %s has no CA at %s: generate or import a root on the PKI mount", i.opts.Address(), path)
	}
	var defCA *x509.Certificate
	if len(strings.TrimSpace(string(def))) > 0 {
		cs, err := certs.ParseCertsPEM(def)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		defCA = cs[0]
	}
	i.mu.Lock()
	i.bundle, i.defaultCA, i.bundleAt = b, defCA, time.Now()
	i.mu.Unlock()
	return b, defCA, nil
}

// readRouted reads path as Logical().Read does, except that Vault's 404
// for a path no engine serves ("no handler for route": no PKI engine at
// the mount) stays an error. Read answers it with nothing, as it answers a
// PKI mount without a root, and the operator must then be told to enable
// the engine at the mount, not to generate a root on it.
func (i *Issuer) readRouted(ctx context.Context, path string) (*vaultapi.Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, i.opts.timeout()) // Read's own bound; ReadRaw has none
	defer cancel()
	l := i.client().Logical()
	raw, err := l.ReadRawWithContext(ctx, path)
	if noRoute(err) {
		if raw != nil {
			_ = raw.Body.Close()
		}
		return nil, err
	}
	return l.ParseRawResponseAndCloseBody(raw, err)
}

// noRoute reports whether Vault answered that no engine serves the path.
func noRoute(err error) bool {
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound &&
		strings.Contains(strings.Join(re.Errors, "; "), "no handler for route")
}

// mountIssuers returns the certificate of every issuer of the mount, in
// the order Vault lists them, reading only those not read before. nil when
// this Vault has no multi-issuer API.
func (i *Issuer) mountIssuers(ctx context.Context) ([][]byte, error) {
	path := i.mount + "/issuers"
	resp, err := i.client().Logical().ListWithContext(ctx, path)
	if err != nil {
		return nil, i.explain(path, err)
	}
	if resp == nil || resp.Data == nil {
		return nil, nil
	}
	ids, _ := resp.Data["keys"].([]any)
	out := make([][]byte, 0, len(ids))
	seen := make(map[string][]byte, len(ids))
	for _, v := range ids {
		id, _ := v.(string)
		if id == "" {
			continue
		}
		i.mu.Lock()
		pem, ok := i.issuerCerts[id]
		i.mu.Unlock()
		if !ok {
			ipath := i.mount + "/issuer/" + url.PathEscape(id) + "/json"
			r, err := i.client().Logical().ReadWithContext(ctx, ipath)
			if err != nil {
				return nil, i.explain(ipath, err)
			}
			if r == nil || r.Data == nil {
				continue // deleted since the list
			}
			s, _ := r.Data["certificate"].(string)
			if _, err := certs.ParseCertsPEM([]byte(s)); err != nil {
				return nil, fmt.Errorf("%s: %w", ipath, err)
			}
			pem = []byte(s)
		}
		seen[id] = pem
		out = append(out, pem)
	}
	// Forget issuers deleted from the mount (the cache never outgrows it).
	i.mu.Lock()
	i.issuerCerts = seen
	i.mu.Unlock()
	return out, nil
}

// displayValidity rounds what Vault granted for a message: x509 times have
// second precision and Vault's clock is read a moment after ours, so the raw
// difference is a second or so short of the role's limit (1h59m59s for 2h).
func displayValidity(d time.Duration) time.Duration {
	if d >= time.Minute {
		return d.Round(time.Minute)
	}
	return d.Round(time.Second)
}
