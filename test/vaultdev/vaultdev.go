// Package vaultdev runs a real Vault dev server (`vault server -dev`) as a
// child process for tests: in-memory storage, unsealed, with a random root
// token, listening on a free loopback port, over http or (Config.TLS) https,
// and (Config.MutualTLS) on a second port whose https listener requires
// client certificates. The binary comes from internal/kubeassets (built
// once into the per-user cache, or VAULT_BINARY).
package vaultdev

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/internal/kubeassets"
	"github.com/flomesh-io/fsm-webhooks/internal/tailbuf"
	"github.com/flomesh-io/fsm-webhooks/test/freeport"
)

const (
	// readyTimeout bounds the wait for /v1/sys/health once the process runs;
	// the dev server is ready in about a second, much longer only under load.
	readyTimeout = 2 * time.Minute
	pollInterval = 100 * time.Millisecond
	stopGrace    = 10 * time.Second
	// startAttempts covers losing the free port to another process between
	// picking it and Vault binding it.
	startAttempts = 3
	logLimit      = 16 << 10
)

// Config is how StartWith runs the server.
type Config struct {
	// TLS serves https (-dev-tls): Vault generates a CA, written to
	// Server.CAFile, and a server certificate for 127.0.0.1 it signs, so
	// a client must be given that CA, as with a Vault behind a private CA.
	TLS bool
	// MutualTLS adds a second listener (Server.MutualTLS) that answers only
	// clients presenting a certificate of its client CA, as a production
	// Vault with tls_require_and_verify_client_cert does. Addr still serves
	// as TLS says, for setting Vault up.
	MutualTLS bool
}

// MutualTLS is the listener Config.MutualTLS adds, on Server.Host.
type MutualTLS struct {
	// Addr is its API address, https://127.0.0.1:<Port>.
	Addr string
	Port int
	// CAFile is the PEM file of the CA that signs its certificate.
	CAFile string
	// ClientCA signs the client certificates it accepts (its
	// tls_client_ca_file): issue them with certs.UsageClient.
	ClientCA *certstest.CA
}

// Server is a running Vault dev server.
type Server struct {
	// Addr is the API address, e.g. http://127.0.0.1:41234 (https with
	// Config.TLS).
	Addr string
	// Host and Port of Addr, as certs/vault.Options take them.
	Host string
	Port int
	// Token is the root token.
	Token string
	// CAFile is the PEM file of the CA that signs the server's certificate
	// with Config.TLS, else empty.
	CAFile string
	// MutualTLS is the listener Config.MutualTLS adds, else nil.
	MutualTLS *MutualTLS

	certDir  string // holds CAFile; removed by Stop
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has been reaped
	waitErr  error         // valid once exited is closed
	log      *tailbuf.Buffer
	stopOnce sync.Once
	stopErr  error
}

// Start builds (if needed) and starts a Vault dev server and waits until it
// serves requests. Call Stop when done. ctx bounds the build and the start-up,
// not the server's lifetime. Build progress goes to progress (may be nil).
func Start(ctx context.Context, progress io.Writer) (*Server, error) {
	return StartWith(ctx, progress, Config{})
}

// StartWith is Start with cfg.
func StartWith(ctx context.Context, progress io.Writer, cfg Config) (*Server, error) {
	bin, err := kubeassets.Vault(ctx, progress)
	if err != nil {
		return nil, fmt.Errorf("vault dev server: %w", err)
	}
	token, err := randomToken()
	if err != nil {
		return nil, fmt.Errorf("vault dev server: root token: %w", err)
	}
	var lastErr error
	for range startAttempts {
		s, err := start(ctx, bin, token, cfg)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if ctx.Err() != nil || !errors.Is(err, errAddrInUse) {
			break
		}
	}
	return nil, fmt.Errorf("vault dev server: %w", lastErr)
}

// New starts a Vault dev server for a test and stops it when the test ends.
// The test fails (never skips) if Vault cannot be built or started.
func New(t testing.TB) *Server {
	t.Helper()
	return NewWith(t, Config{})
}

// NewWith is New with cfg.
func NewWith(t testing.TB, cfg Config) *Server {
	t.Helper()
	// A cold build of vault takes about 8 minutes on 2 cores.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	s, err := StartWith(ctx, os.Stderr, cfg)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping vault dev server: %v", err)
		}
	})
	return s
}

var errAddrInUse = errors.New("listen address already in use")

func start(ctx context.Context, bin, token string, cfg Config) (*Server, error) {
	port, err := freeport.Loopback()
	if err != nil {
		return nil, err
	}
	hostPort := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := &Server{
		Addr:   "http://" + hostPort,
		Host:   "127.0.0.1",
		Port:   port,
		Token:  token,
		exited: make(chan struct{}),
		log:    tailbuf.New(logLimit),
	}
	args := []string{"server", "-dev",
		"-dev-root-token-id=" + token,
		"-dev-listen-address=" + hostPort,
		// Keep the token out of the user's ~/.vault-token.
		"-dev-no-store-token",
	}
	if cfg.TLS || cfg.MutualTLS {
		// Our own directory, so the CA's path is known before Vault runs
		// and Stop removes it.
		if s.certDir, err = os.MkdirTemp("", "vaultdev-tls-"); err != nil {
			return nil, fmt.Errorf("directory for the dev TLS CA: %w", err)
		}
	}
	if cfg.MutualTLS {
		config, err := s.addMutualTLS(ctx)
		if err != nil {
			return nil, errors.Join(err, s.removeCertDir())
		}
		args = append(args, "-config="+config)
	}
	if cfg.TLS {
		s.Addr = "https://" + hostPort
		s.CAFile = filepath.Join(s.certDir, "vault-ca.pem")
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+s.certDir)
	}
	// Not CommandContext: the server outlives ctx, which bounds only Start.
	s.cmd = exec.Command(bin, args...)
	s.cmd.Env = serverEnv(os.Environ())
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	// Own process group, so Stop can take down anything Vault spawned.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return nil, errors.Join(fmt.Errorf("starting %s: %w", bin, err), s.removeCertDir())
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(ctx); err != nil {
		stopErr := s.Stop()
		return nil, errors.Join(err, stopErr)
	}
	return s, nil
}

// addMutualTLS sets s.MutualTLS up: a free port, a server certificate for
// 127.0.0.1 and a client CA, written to s.certDir with the configuration of
// its listener, whose path it returns (vault server -dev takes -config
// listeners beside its own).
func (s *Server) addMutualTLS(ctx context.Context) (string, error) {
	port, err := freeport.Loopback()
	if err != nil {
		return "", err
	}
	serverCA, err := certstest.New(ctx, certstest.Options{})
	if err != nil {
		return "", fmt.Errorf("mutual TLS listener: server CA: %w", err)
	}
	clientCA, err := certstest.New(ctx, certstest.Options{})
	if err != nil {
		return "", fmt.Errorf("mutual TLS listener: client CA: %w", err)
	}
	// Outlives any test: the listener's certificate is not reloaded.
	serving, err := serverCA.Issue(ctx, certs.Request{CommonName: "127.0.0.1", IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, Validity: 24 * time.Hour, Usage: certs.UsageServer})
	if err != nil {
		return "", fmt.Errorf("mutual TLS listener: server certificate: %w", err)
	}
	caPEM, err := serverCA.CABundle(ctx)
	if err != nil {
		return "", err
	}
	clientCAPEM, err := clientCA.CABundle(ctx)
	if err != nil {
		return "", err
	}
	path := func(name string) string { return filepath.Join(s.certDir, name) }
	hostPort := net.JoinHostPort(s.Host, strconv.Itoa(port))
	config := fmt.Sprintf(`listener "tcp" {
  address = %q
  tls_cert_file = %q
  tls_key_file = %q
  tls_client_ca_file = %q
  tls_require_and_verify_client_cert = true
}
`, hostPort, path("mtls-cert.pem"), path("mtls-key.pem"), path("mtls-client-ca.pem"))
	for name, data := range map[string][]byte{
		"mtls-ca.pem": caPEM, "mtls-cert.pem": serving.CertPEM, "mtls-key.pem": serving.KeyPEM,
		"mtls-client-ca.pem": clientCAPEM, "mtls.hcl": []byte(config),
	} {
		if err := os.WriteFile(path(name), data, 0o600); err != nil {
			return "", fmt.Errorf("mutual TLS listener: %w", err)
		}
	}
	s.MutualTLS = &MutualTLS{Addr: "https://" + hostPort, Port: port, CAFile: path("mtls-ca.pem"), ClientCA: clientCA}
	return path("mtls.hcl"), nil
}

// waitReady polls the health endpoint, which answers 200 once the dev server
// is initialised, unsealed and active.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var client *http.Client
	defer func() {
		if client != nil {
			client.CloseIdleConnections()
		}
	}()
	url := s.Addr + "/v1/sys/health"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("health request: %w", err)
		}
		if client == nil {
			client = s.healthClient()
		}
		if client != nil {
			if resp, err := client.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		}
		select {
		case <-s.exited:
			out := s.log.String()
			err := fmt.Errorf("vault exited before becoming ready (%v):\n%s", s.waitErr, out)
			if strings.Contains(out, "address already in use") {
				err = fmt.Errorf("%w: %w", errAddrInUse, err)
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to answer 200: %w; vault output:\n%s", url, ctx.Err(), s.log.String())
		case <-time.After(pollInterval):
		}
	}
}

// healthClient is a plain HTTP client trusting the server's CA, or nil
// while Vault, which writes that CA once it runs, has not written it.
func (s *Server) healthClient() *http.Client {
	if s.CAFile == "" {
		return &http.Client{Timeout: 2 * time.Second}
	}
	pem, err := os.ReadFile(s.CAFile)
	pool := x509.NewCertPool()
	if err != nil || !pool.AppendCertsFromPEM(pem) {
		return nil
	}
	return &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
}

// Client returns a Vault API client for the server, authenticated with the
// root token (trusting CAFile with TLS).
func (s *Server) Client() (*vaultapi.Client, error) {
	cfg := vaultapi.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("vault client config: %w", cfg.Error)
	}
	cfg.Address = s.Addr
	if s.CAFile != "" {
		if err := cfg.ConfigureTLS(&vaultapi.TLSConfig{CACert: s.CAFile}); err != nil {
			return nil, fmt.Errorf("vault client TLS (CA %s): %w", s.CAFile, err)
		}
	}
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	c.SetToken(s.Token)
	return c, nil
}

// Role is a PKI role SetupPKI creates.
type Role struct {
	Name string
	// MaxTTL is the role's max_ttl; FSM's documented set-up uses 24h.
	MaxTTL time.Duration
	// NotBefore is how far Vault backdates a certificate's NotBefore (the
	// role's not_before_duration); zero keeps Vault's default of 30s.
	NotBefore time.Duration
	// KeyType and KeyBits are the role's key_type and key_bits, the keys
	// Vault generates for pki/issue; empty and zero keep Vault's default,
	// RSA-2048, as FSM's documented set-up does.
	KeyType string
	KeyBits int
}

// RootCommonName is the common name of the root SetupPKI generates.
const RootCommonName = "fsm.root"

// SetupPKI configures Vault the way FSM's documentation tells its users to:
// a PKI secrets engine at mount with a decade max lease TTL, an internal root
// RootCommonName valid for a decade, and roles that allow any name.
func (s *Server) SetupPKI(ctx context.Context, mount string, roles ...Role) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	if err := c.Sys().MountWithContext(ctx, mount, &vaultapi.MountInput{Type: "pki", Config: vaultapi.MountConfigInput{MaxLeaseTTL: "87600h"}}); err != nil {
		return fmt.Errorf("enabling the PKI engine at %s: %w", mount, err)
	}
	if _, err := c.Logical().WriteWithContext(ctx, mount+"/root/generate/internal", map[string]any{"common_name": RootCommonName, "ttl": "87600h"}); err != nil {
		return fmt.Errorf("generating the root on %s: %w", mount, err)
	}
	for _, r := range roles {
		data := map[string]any{
			"allow_any_name": true, "allow_subdomains": true, "allow_bare_domains": true, "allow_localhost": true,
			"max_ttl": seconds(r.MaxTTL),
		}
		if r.NotBefore > 0 {
			data["not_before_duration"] = seconds(r.NotBefore)
		}
		if r.KeyType != "" {
			data["key_type"] = r.KeyType
		}
		if r.KeyBits != 0 {
			data["key_bits"] = r.KeyBits
		}
		if _, err := c.Logical().WriteWithContext(ctx, mount+"/roles/"+r.Name, data); err != nil {
			return fmt.Errorf("writing role %s/roles/%s: %w", mount, r.Name, err)
		}
	}
	return nil
}

func seconds(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) + "s" }

// Pid is the process id of the vault server (also its process group id).
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Output is the tail of the server's log, for diagnosing test failures.
func (s *Server) Output() string { return s.log.String() }

// Stop terminates the server and every process in its group, waiting until
// the server has been reaped. It is safe to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *Server) stop() error {
	pgid := s.cmd.Process.Pid
	if err := signalGroup(pgid, syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-s.exited:
	case <-time.After(stopGrace):
		if err := signalGroup(pgid, syscall.SIGKILL); err != nil {
			return err
		}
		<-s.exited
	}
	// Children that ignored SIGTERM must not outlive the test.
	if err := signalGroup(pgid, syscall.SIGKILL); err != nil {
		return err
	}
	var exitErr *exec.ExitError
	if s.waitErr != nil && !errors.As(s.waitErr, &exitErr) {
		return errors.Join(fmt.Errorf("waiting for vault: %w", s.waitErr), s.removeCertDir())
	}
	return s.removeCertDir()
}

// removeCertDir removes the TLS CA's directory, if any.
func (s *Server) removeCertDir() error {
	if s.certDir == "" {
		return nil
	}
	if err := os.RemoveAll(s.certDir); err != nil {
		return fmt.Errorf("removing the dev TLS directory %s: %w", s.certDir, err)
	}
	return nil
}

// signalGroup signals a process group; a group that is already gone is fine.
func signalGroup(pgid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signalling vault process group %d with %v: %w", pgid, sig, err)
	}
	return nil
}

// serverEnv drops VAULT_* variables of the caller's shell (VAULT_ADDR,
// VAULT_TOKEN, VAULT_DEV_*, ...) that would reconfigure the dev server.
func serverEnv(environ []string) []string {
	env := make([]string, 0, len(environ))
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "VAULT_") {
			env = append(env, kv)
		}
	}
	return env
}

func randomToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "root-" + hex.EncodeToString(b), nil
}
