package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/injector"
)

// TestFlagErrors runs the real command tree: every bad value is a usage
// error (exit 2) whose one line names the flag and the value.
func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"not an int", []string{"serve", "--injector-port=abc"}, nil, `invalid argument "abc" for "--injector-port"`},
		{"port range", []string{"serve", "--validator-port=70000"}, nil, "invalid value 70000 for --validator-port: must be a port between 1 and 65535"},
		{"provider", []string{"serve", "--certificate-manager=foo"}, nil, `invalid value "foo" for --certificate-manager: must be one of tresor, vault, cert-manager`},
		{"key algorithm", []string{"serve", "--ca-key-algorithm=dsa"}, nil, `invalid value "dsa" for --ca-key-algorithm`},
		{"vault without host", []string{"serve", "--certificate-manager=vault", "--vault-token=t"}, nil, "--vault-host: VaultHost not specified in Hashi Vault options"},
		{"vault protocol", []string{"serve", "--vault-protocol=ftp"}, nil, `invalid value "ftp" for --vault-protocol: must be one of http, https`},
		{"same ports", []string{"serve", "--injector-port=9093"}, nil, "must differ"},
		{"negative duration", []string{"serve", "--service-cert-validity-duration=-1h"}, nil, "--service-cert-validity-duration: must be a positive duration"},
		{"webhooks list", []string{"serve", "--webhooks=injector,mutator"}, nil, `invalid value "mutator" for --webhooks`},
		{"url host with scheme", []string{"serve", "--webhook-url-host=https://x"}, nil, "--webhook-url-host: must be a host name or IP address"},
		// Each of these failed only after serve reached the cluster, naming
		// no flag (a serving-cert, listen or port-clash error).
		{"url host upper case", []string{"serve", "--webhook-url-host=Webhooks.Example.COM"}, nil, `invalid value "Webhooks.Example.COM" for --webhook-url-host`},
		{"cluster domain with a trailing dot", []string{"serve", "--cluster-domain=cluster.local."}, nil, `invalid value "cluster.local." for --cluster-domain`},
		// The trust domain ends every bootstrap CN and, with MeshConfig
		// localDNSProxy, the pods' DNS search list, which the apiserver
		// refuses unless each is a DNS name: every such pod create failed
		// after its certificate and Secret were issued (the chart's schema
		// already refused these; FSM_TRUST_DOMAIN and the CLI did not).
		// The allowed empty value is shown, not a blank between commas.
		{"pull policy", []string{"serve", "--fsm-container-pull-policy=always"}, nil, `invalid value "always" for --fsm-container-pull-policy: must be one of "" (unset), Always, IfNotPresent, Never`},
		{"trust domain upper case", []string{"serve", "--trust-domain=Mesh.Local"}, nil, `invalid value "Mesh.Local" for --trust-domain`},
		{"trust domain with an underscore from env", []string{"serve"}, map[string]string{"FSM_TRUST_DOMAIN": "mesh_local"}, `invalid value "mesh_local" for --trust-domain`},
		{"trust domain with a trailing dot", []string{"serve", "--trust-domain=cluster.local."}, nil, `invalid value "cluster.local." for --trust-domain`},
		{"metrics address without a colon", []string{"serve", "--metrics-bind-address=8080"}, nil, `invalid value "8080" for --metrics-bind-address: must be host:port`},
		{"metrics port not a number", []string{"serve", "--metrics-bind-address=:http"}, nil, `invalid value ":http" for --metrics-bind-address: port "http"`},
		{"health probe on the injector's port", []string{"serve", "--health-probe-bind-address=:9090"}, nil, `invalid value ":9090" for --health-probe-bind-address: port 9090 is --injector-port's`},
		{"health probe on the metrics port", []string{"serve", "--health-probe-bind-address=127.0.0.1:8080"}, nil, `port 8080 is --metrics-bind-address's`},
		{"bind host in brackets", []string{"serve", "--webhook-bind-host=[::1]"}, nil, `invalid value "[::1]" for --webhook-bind-host`},
		{"pprof without a port", []string{"serve", "--pprof-bind-address=localhost"}, nil, `invalid value "localhost" for --pprof-bind-address`},
		{"issuer kind typo", []string{"serve", "--cert-manager-issuer-kind=clusterissuer"}, nil,
			`invalid value "clusterissuer" for --cert-manager-issuer-kind: must be one of Issuer, ClusterIssuer (for --cert-manager-issuer-group=cert-manager.io`},
		{"webhook listed twice", []string{"serve", "--webhooks=injector,validator,injector"}, nil, `invalid value "injector,validator,injector" for --webhooks: injector is listed twice`},
		{"extra argument", []string{"serve", "now"}, nil, "takes no arguments"},
		{"bad env", []string{"serve"}, map[string]string{"FSM_INJECTOR_PORT": "x"}, `invalid value "x" for --injector-port (from env FSM_INJECTOR_PORT): must be an integer`},
		{"env validated too", []string{"serve"}, map[string]string{"FSM_MESH_NAME": "Bad"}, `invalid value "Bad" for --mesh-name`},
		{"empty sidecar image", []string{"serve", "--sidecar-image="}, nil,
			`invalid value "" for --sidecar-image: an image must be set; leave flag --sidecar-image or env FSM_DEFAULT_SIDECAR_IMAGE (MeshConfig spec.sidecar.sidecarImage overrides it per mesh) unset for flomesh/pipy:1.5.12`},
		{"empty init image from env", []string{"serve"}, map[string]string{"FSM_INIT_CONTAINER_IMAGE": " "},
			`invalid value " " for --init-container-image: an image must be set; leave flag --init-container-image or env FSM_DEFAULT_INIT_CONTAINER_IMAGE unset for flomesh/fsm-sidecar-init:1.5.1`},
		{"status output", []string{"certs", "status", "-o", "xml"}, nil, `invalid value "xml" for --output: must be table, json or yaml`},
		{"version output", []string{"version", "-o", "table"}, nil, `invalid value "table" for --output: must be text, json or yaml`},
		{"unknown context", []string{"certs", "status", "--kubeconfig=testdata/kubeconfig", "--context=nope"}, nil, `invalid value "nope" for --context (kubeconfig "testdata/kubeconfig")`},
		{"serve flag on status", []string{"certs", "status", "--key-pool-size=3"}, nil, `unknown flag: --key-pool-size`},
		{"cluster flag on local", []string{"local", "--context=x"}, nil, `unknown flag: --context`},
		{"local mesh name too long for its probe namespace", []string{"local", "--mesh-name=" + strings.Repeat("m", 49)}, nil,
			`invalid value "` + strings.Repeat("m", 49) + `" for --mesh-name: local creates namespace ` + strings.Repeat("m", 49) + `-injector-probe, longer than a namespace name's 63 characters; use at most 48`},
		{"qps not a number", []string{"serve", "--kube-api-qps=fast"}, nil, `invalid argument "fast" for "--kube-api-qps"`},
		{"qps zero", []string{"serve", "--kube-api-qps=0"}, nil, "invalid value 0 for --kube-api-qps: must be a positive number of requests per second"},
		{"burst zero", []string{"serve", "--kube-api-burst=0"}, nil, "invalid value 0 for --kube-api-burst: must be 1 or more"},
		{"controller qps negative from env", []string{"serve"}, map[string]string{"FSM_CONTROLLER_KUBE_API_QPS": "-1"},
			"invalid value -1 for --controller-kube-api-qps: must be a positive number of requests per second"},
		{"controller burst", []string{"serve", "--controller-kube-api-burst=-5"}, nil, "invalid value -5 for --controller-kube-api-burst: must be 1 or more"},
		{"injector namespace rate negative", []string{"serve", "--injector-namespace-rate=-1"}, nil,
			"invalid value -1 for --injector-namespace-rate: must be 0 (no limit) or a positive number per second"},
		{"injector namespace burst from env", []string{"serve"}, map[string]string{"FSM_INJECTOR_NAMESPACE_BURST": "0"},
			"invalid value 0 for --injector-namespace-burst: must be 1 or more"},
		{"injector max in flight negative", []string{"serve", "--injector-max-in-flight=-1"}, nil,
			"invalid value -1 for --injector-max-in-flight: must be 0 (no limit) or more"},
		{"handoff in flight zero", []string{"serve", "--injector-secret-handoff-in-flight=0"}, nil,
			"invalid value 0 for --injector-secret-handoff-in-flight: must be 1 or more"},
		{"handoff budget zero from env", []string{"serve"}, map[string]string{"FSM_INJECTOR_SECRET_HANDOFF_BUDGET": "0s"},
			"invalid value 0s for --injector-secret-handoff-budget: must be positive"},
		{"root rotation due at once", []string{"serve", "--root-auto-rotate-before=87600h"}, nil,
			"invalid value 87600h0m0s for --root-auto-rotate-before: must be less than the lifetime of the roots serve creates (87600h0m0s)"},
		{"negative shutdown drain", []string{"serve", "--shutdown-drain=-1s"}, nil, "invalid value -1s for --shutdown-drain: must not be negative"},
		{"TLS version spelled as a number", []string{"serve", "--tls-min-version=1.3"}, nil, `invalid value "1.3" for --tls-min-version: must be VersionTLS12 or VersionTLS13`},
		{"TLS 1.1", []string{"serve", "--tls-min-version=VersionTLS11"}, nil, `invalid value "VersionTLS11" for --tls-min-version`},
		{"insecure suite", []string{"serve", "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_RSA_WITH_AES_128_GCM_SHA256"}, nil,
			`invalid value "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_RSA_WITH_AES_128_GCM_SHA256" for --tls-cipher-suites: TLS_RSA_WITH_AES_128_GCM_SHA256 is insecure`},
		{"TLS 1.3 suite", []string{"serve", "--tls-cipher-suites=TLS_AES_128_GCM_SHA256"}, nil, "TLS_AES_128_GCM_SHA256 is a TLS 1.3 suite"},
		{"unknown suite", []string{"serve", "--tls-cipher-suites=ECDHE-RSA-AES128-GCM-SHA256"}, nil, "ECDHE-RSA-AES128-GCM-SHA256 is not a TLS cipher suite; use any of TLS_ECDHE_"},
		{"suite twice", []string{"serve", "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}, nil, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 is listed twice"},
		{"suites with TLS 1.3 only", []string{"serve", "--tls-min-version=VersionTLS13", "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}, nil,
			"--tls-cipher-suites: it chooses TLS 1.2 suites, and --tls-min-version is VersionTLS13"},
		{"suites with TLS 1.3 only from the environment", []string{"serve", "--tls-min-version=VersionTLS13"},
			map[string]string{"FSM_TLS_CIPHER_SUITES": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}, "--tls-min-version is VersionTLS13"},
		{"pod IP not an IP", []string{"serve", "--pod-ips=10.244.0.7,fsm-webhooks-0"}, nil, `invalid value "fsm-webhooks-0" for --pod-ips: not an IP address`},
		{"pod IPs from env, as the chart passes status.podIPs", []string{"serve"}, map[string]string{"FSM_POD_IPS": "10.244.0.7,fd00:10:244::7,nope"}, `invalid value "nope" for --pod-ips: not an IP address`},
		// Each of these was accepted: the key pool's floor panicked in
		// makechan (or allocated gigabytes) at start, pprof's listener took a
		// port another listener then failed to bind (naming no flag), an
		// object name Kubernetes can never store failed at the first write
		// naming no flag (tresor's CA Secret) or was looked up for ever
		// (cert-manager's CA Secret and issuer, the injector's probe
		// namespace: /readyz/injector never passes).
		{"key pool floor beyond any memory", []string{"serve", "--key-pool-size=1000000000000000000"}, nil,
			"invalid value 1000000000000000000 for --key-pool-size: must be between 0 and 4096"},
		{"key pool floor from env", []string{"serve"}, map[string]string{"FSM_KEY_POOL_SIZE": "100000000"},
			"invalid value 100000000 for --key-pool-size: must be between 0 and 4096"},
		{"pprof on the health probe port", []string{"serve", "--pprof-bind-address=127.0.0.1:8081"}, nil,
			`invalid value "127.0.0.1:8081" for --pprof-bind-address: port 8081 is --health-probe-bind-address's`},
		{"pprof on the injector's port", []string{"serve", "--pprof-bind-address=127.0.0.1:9090"}, nil,
			`invalid value "127.0.0.1:9090" for --pprof-bind-address: port 9090 is --injector-port's`},
		{"pprof on a moved metrics port", []string{"serve", "--metrics-bind-address=:9100", "--pprof-bind-address=localhost:9100"}, nil,
			`invalid value "localhost:9100" for --pprof-bind-address: port 9100 is --metrics-bind-address's`},
		{"CA Secret name", []string{"serve", "--ca-bundle-secret-name=fsm_ca_bundle"}, nil,
			`invalid value "fsm_ca_bundle" for --ca-bundle-secret-name`},
		{"Vault role with a slash", []string{"serve", "--certificate-manager=vault", "--vault-host=vault", "--vault-token=t", "--vault-role=fsm/issuer"}, nil,
			`invalid value "fsm/issuer" for --vault-role: must be a Vault role name`},
		// Sent as a header: a space failed every call, naming no flag.
		{"Vault namespace with a space", []string{"serve", "--certificate-manager=vault", "--vault-host=vault", "--vault-token=t", "--vault-namespace=admin team"}, nil,
			`invalid value "admin team" for --vault-namespace: must be a Vault namespace path: printable ASCII without spaces, got character ' '`},
		{"Vault namespace with an empty segment", []string{"serve", "--certificate-manager=vault", "--vault-host=vault", "--vault-token=t", "--vault-namespace=admin//a"}, nil,
			`invalid value "admin//a" for --vault-namespace: must be a Vault namespace path: segments separated by single '/', none empty`},
		// Looked up as NotFound: the hook skipped its step as done, status
		// and rotate-root said no Deployment was found.
		{"uninstall-hook Deployment name", []string{"uninstall-hook", "--deployment=FSM_Webhooks"}, nil, `invalid value "FSM_Webhooks" for --deployment`},
		{"uninstall-hook MeshConfig name from env", []string{"uninstall-hook"}, map[string]string{"FSM_MESH_CONFIG_NAME": "Mesh Config"}, `invalid value "Mesh Config" for --mesh-config-name`},
		{"uninstall-hook Lease namespace", []string{"uninstall-hook", "--conversion-lease-namespace=kube.system"}, nil, `invalid value "kube.system" for --conversion-lease-namespace`},
		{"status Deployment name", []string{"certs", "status", "--deployment=BAD_"}, nil, `invalid value "BAD_" for --deployment`},
		{"rotate-root Deployment name", []string{"certs", "rotate-root", "--deployment=fsm webhooks"}, nil, `invalid value "fsm webhooks" for --deployment`},
		{"Vault token Secret name", []string{"serve", "--certificate-manager=vault", "--vault-host=vault", "--vault-token-secret-name=Vault-Token", "--vault-token-secret-key=token"}, nil,
			`invalid value "Vault-Token" for --vault-token-secret-name`},
		// A Vault CA file that cannot serve failed only at the first
		// issuance, as a TLS error naming no flag.
		{"Vault CA file missing", []string{"serve", "--certificate-manager=vault", "--vault-host=vault", "--vault-token=t", "--vault-protocol=https", "--vault-ca-file=testdata/none.pem"}, nil,
			`invalid value "testdata/none.pem" for --vault-ca-file: must be a PEM file of CA certificates: open testdata/none.pem: no such file or directory`},
		{"Vault CA file without a certificate", []string{"serve", "--certificate-manager=vault", "--vault-host=vault", "--vault-token=t", "--vault-protocol=https", "--vault-ca-file=testdata/kubeconfig"}, nil,
			`invalid value "testdata/kubeconfig" for --vault-ca-file: must be a PEM file of CA certificates: testdata/kubeconfig: no PEM certificate found`},
		{"Vault CA file over http", []string{"serve", "--certificate-manager=vault", "--vault-host=vault", "--vault-token=t", "--vault-ca-file=testdata/kubeconfig"}, nil,
			`invalid value "testdata/kubeconfig" for --vault-ca-file: it verifies Vault's https certificate, but --vault-protocol is http`},
		{"cert-manager issuer name", []string{"serve", "--certificate-manager=cert-manager", "--cert-manager-issuer-name=FSM-CA"}, nil,
			`invalid value "FSM-CA" for --cert-manager-issuer-name`},
		{"injector probe namespace", []string{"serve", "--injector-probe-namespace=Mesh_Probe"}, nil,
			`invalid value "Mesh_Probe" for --injector-probe-namespace`},
		{"injector probe namespace the mesh never injects", []string{"serve", "--fsm-namespace=mesh-system", "--injector-probe-namespace=mesh-system"}, nil,
			`invalid value "mesh-system" for --injector-probe-namespace: the mesh never injects kube-system, kube-public or its own namespace (--fsm-namespace mesh-system): name a namespace labelled flomesh.io/monitored-by=fsm`},
		{"injector probe namespace kube-system", []string{"serve", "--injector-probe-namespace=kube-system"}, nil,
			`invalid value "kube-system" for --injector-probe-namespace: the mesh never injects`},
	} {
		t.Run(tc.name, func(t *testing.T) { assertUsageError(t, tc.args, tc.env, tc.want) })
	}
}

// assertUsageError runs the command tree with args and env: it must fail
// with a usage error (exit 2) of one line containing want.
func assertUsageError(t *testing.T, args []string, env map[string]string, want string) {
	t.Helper()
	// A value let through fails fast on the missing config, never reaching
	// (or waiting for) a cluster.
	t.Setenv("KUBECONFIG", t.TempDir()+"/none")
	for k, v := range env {
		t.Setenv(k, v)
	}
	cmd := newRootCommand()
	cmd.SetArgs(args)
	err := cmd.Execute()
	var ue *usageError
	if !errors.As(err, &ue) {
		t.Fatalf("error %v (%T) is not a usage error (exit 2)", err, err)
	}
	if !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error %q: want one line containing %q", err, want)
	}
}

// parseOptions is the options from args and env (FSM_<FLAG>, set for the
// test), as a command reads its flags before validating them.
func parseOptions(t *testing.T, args []string, env map[string]string) *options {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	o := &options{}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.addFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(fs); err != nil {
		t.Fatal(err)
	}
	return o
}

// TestEnvFillsUnsetFlags: FSM_<FLAG> sets what the command line did not,
// and the command line wins.
func TestEnvFillsUnsetFlags(t *testing.T) {
	o := parseOptions(t, []string{"--fsm-namespace=from-flag"}, map[string]string{"FSM_MESH_NAME": "blue", "FSM_FSM_NAMESPACE": "from-env"})
	if o.meshName != "blue" || o.fsmNamespace != "from-flag" {
		t.Fatalf("mesh %q namespace %q; want blue, from-flag", o.meshName, o.fsmNamespace)
	}
}

// TestImageDefaults: flag > FSM_DEFAULT_*_IMAGE (FSM's names) > FSM v1.5.1's
// images; an empty FSM_DEFAULT_* (a chart rendering an empty value) means the
// default.
func TestImageDefaults(t *testing.T) {
	for _, tc := range []struct {
		name                       string
		args                       []string
		env                        map[string]string
		sidecar, init, healthcheck string
	}{
		{"built-in", nil, nil, "flomesh/pipy:1.5.12", "flomesh/fsm-sidecar-init:1.5.1", "flomesh/fsm-healthcheck:1.5.1"},
		{"FSM env", nil, map[string]string{"FSM_DEFAULT_SIDECAR_IMAGE": "r/pipy:1", "FSM_DEFAULT_INIT_CONTAINER_IMAGE": "r/init:1",
			"FSM_DEFAULT_HEALTHCHECK_CONTAINER_IMAGE": "r/hc:1"}, "r/pipy:1", "r/init:1", "r/hc:1"},
		{"empty FSM env", nil, map[string]string{"FSM_DEFAULT_SIDECAR_IMAGE": ""}, "flomesh/pipy:1.5.12", "flomesh/fsm-sidecar-init:1.5.1", "flomesh/fsm-healthcheck:1.5.1"},
		{"flag beats env", []string{"--sidecar-image=f/pipy:2"}, map[string]string{"FSM_DEFAULT_SIDECAR_IMAGE": "r/pipy:1"},
			"f/pipy:2", "flomesh/fsm-sidecar-init:1.5.1", "flomesh/fsm-healthcheck:1.5.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := parseOptions(t, tc.args, tc.env)
			if o.sidecarImage != tc.sidecar || o.initImage != tc.init || o.healthcheckImage != tc.healthcheck {
				t.Fatalf("images %q %q %q; want %q %q %q", o.sidecarImage, o.initImage, o.healthcheckImage, tc.sidecar, tc.init, tc.healthcheck)
			}
		})
	}
}

// TestClientConfigs: serve's admission and controller clients get their own
// limits from the flags (env too), on copies that keep everything else of
// the loaded config and leave it untouched.
func TestClientConfigs(t *testing.T) {
	for _, tc := range []struct {
		name               string
		args               []string
		env                map[string]string
		admQPS, ctlQPS     float32
		admBurst, ctlBurst int
	}{
		{"defaults", nil, nil, 500, 200, 1000, 400},
		{"flags", []string{"--kube-api-qps=50.5", "--kube-api-burst=60", "--controller-kube-api-qps=7", "--controller-kube-api-burst=9"}, nil, 50.5, 7, 60, 9},
		{"env", nil, map[string]string{"FSM_KUBE_API_QPS": "300", "FSM_CONTROLLER_KUBE_API_BURST": "40"}, 300, 200, 1000, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := parseOptions(t, tc.args, tc.env)
			if err := o.validate(); err != nil {
				t.Fatal(err)
			}
			base := &rest.Config{Host: "https://10.0.0.1:6443", BearerToken: "t", QPS: 5, Burst: 10}
			adm, ctl := o.clientConfigs(base)
			if adm.QPS != tc.admQPS || adm.Burst != tc.admBurst || ctl.QPS != tc.ctlQPS || ctl.Burst != tc.ctlBurst {
				t.Errorf("admission %g/%d, controllers %g/%d; want %g/%d, %g/%d",
					adm.QPS, adm.Burst, ctl.QPS, ctl.Burst, tc.admQPS, tc.admBurst, tc.ctlQPS, tc.ctlBurst)
			}
			for _, c := range []*rest.Config{adm, ctl} {
				if c == base || c.Host != base.Host || c.BearerToken != base.BearerToken {
					t.Errorf("config %+v is not a copy of the loaded one", c)
				}
			}
			if base.QPS != 5 || base.Burst != 10 {
				t.Errorf("loaded config changed to %g/%d", base.QPS, base.Burst)
			}
		})
	}
}

// TestBootstrapKeyAlgorithm: auto (the default) is ECDSA P-256 where our own
// CA signs and FSM's RSA of certKeyBitSize with cert-manager, whose issuer
// policy (a Vault issuer on a role of key_type rsa, an approver-policy) may
// refuse any other CSR than the one FSM sends.
func TestBootstrapKeyAlgorithm(t *testing.T) {
	for _, tc := range []struct {
		flag, provider string
		want           certs.KeyAlgorithm
	}{
		{"auto", "tresor", certs.ECDSAP256},
		{"auto", "cert-manager", injector.BootstrapKeyFromMeshConfig},
		{"auto", "vault", certs.ECDSAP256}, // unused: Vault's role makes the key
		{"ecdsa-p256", "cert-manager", certs.ECDSAP256},
		{"meshconfig", "tresor", injector.BootstrapKeyFromMeshConfig},
		{"rsa3072", "tresor", certs.RSA3072},
	} {
		o := &options{}
		o.addFlags(pflag.NewFlagSet("t", pflag.ContinueOnError))
		if o.bootstrapKeyAlg != "auto" {
			t.Fatalf("--bootstrap-key-algorithm defaults to %q, want auto", o.bootstrapKeyAlg)
		}
		o.bootstrapKeyAlg, o.certificateManager = tc.flag, tc.provider
		if got := o.bootstrapKeyAlgorithm(); got != tc.want {
			t.Errorf("--bootstrap-key-algorithm=%s --certificate-manager=%s: %v, want %v", tc.flag, tc.provider, got, tc.want)
		}
	}
}

// TestFSMCertKeyBitSize: the serving keys' size under cert-manager is the
// MeshConfig's certKeyBitSize as FSM v1.5.1's GetCertKeyBitSize reads it.
func TestFSMCertKeyBitSize(t *testing.T) {
	for _, tc := range []struct {
		bits         int
		want         int
		wantReplaced bool
	}{
		{0, 2048, true}, // unset, or no MeshConfig
		{2048, 2048, false},
		{2560, 2560, false},
		{3072, 3072, false},
		{4096, 4096, false},
		{1024, 2048, true},
		{2047, 2048, true},
		{4097, 2048, true},
		{-1, 2048, true},
	} {
		got, replaced := fsmCertKeyBitSize(tc.bits)
		if got != tc.want || replaced != tc.wantReplaced {
			t.Errorf("fsmCertKeyBitSize(%d) = %d, %v; want %d, %v", tc.bits, got, replaced, tc.want, tc.wantReplaced)
		}
	}
}

// TestVaultClientCertFlags: --vault-client-cert-file and
// --vault-client-key-file are checked at start through the real command
// tree, as the other flags (TestFlagErrors): a pair that could not be
// presented to Vault is a usage error (exit 2) whose one line names the
// flag, the value and why; a certificate with its own key passes.
func TestVaultClientCertFlags(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{})
	issue := func() *certs.Certificate {
		c, err := ca.Issue(t.Context(), certs.Request{CommonName: "fsm-webhooks", Validity: time.Hour, Usage: certs.UsageClient})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := issue(), issue()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cert, key, otherKey := write("tls.crt", a.CertPEM), write("tls.key", a.KeyPEM), write("other.key", b.KeyPEM)
	missing := filepath.Join(dir, "none.pem")
	vaultArgs := []string{"serve", "--certificate-manager=vault", "--vault-host=vault", "--vault-token=t", "--vault-protocol=https"}
	pair := func(cert, key string) []string {
		return append(slices.Clone(vaultArgs), "--vault-client-cert-file="+cert, "--vault-client-key-file="+key)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"certificate without key", append(slices.Clone(vaultArgs), "--vault-client-cert-file="+cert), nil,
			`invalid value "" for --vault-client-key-file: must be set with --vault-client-cert-file ("` + cert + `")`},
		{"key without certificate", append(slices.Clone(vaultArgs), "--vault-client-key-file="+key), nil,
			`invalid value "" for --vault-client-cert-file: must be set with --vault-client-key-file ("` + key + `")`},
		{"over http", append(pair(cert, key), "--vault-protocol=http"), nil,
			`invalid value "` + cert + `" for --vault-client-cert-file: it is presented to Vault's https listener, but --vault-protocol is http`},
		{"certificate missing", pair(missing, key), nil,
			`invalid value "` + missing + `" for --vault-client-cert-file (with --vault-client-key-file "` + key + `"): must be a PEM certificate and its private key: open ` + missing + `: no such file or directory`},
		{"key missing", pair(cert, missing), nil, `: must be a PEM certificate and its private key: open ` + missing + `: no such file or directory`},
		{"certificate not PEM", pair("testdata/kubeconfig", key), nil,
			`invalid value "testdata/kubeconfig" for --vault-client-cert-file (with --vault-client-key-file "` + key + `"): must be a PEM certificate and its private key: testdata/kubeconfig with key ` + key + `: tls: failed to find any PEM data in certificate input`},
		{"key of another certificate", pair(cert, otherKey), nil, `: tls: private key does not match public key`},
		{"certificate and key switched", pair(key, cert), nil, `PEM inputs may have been switched`},
		{"from env", vaultArgs, map[string]string{"FSM_VAULT_CLIENT_CERT_FILE": cert, "FSM_VAULT_CLIENT_KEY_FILE": otherKey},
			`invalid value "` + cert + `" for --vault-client-cert-file (with --vault-client-key-file "` + otherKey + `")`},
	} {
		t.Run(tc.name, func(t *testing.T) { assertUsageError(t, tc.args, tc.env, tc.want) })
	}
	for _, args := range [][]string{pair(cert, key), vaultArgs} {
		if err := parseOptions(t, args[1:], nil).validate(); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
}
