package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/internal/version"
)

// find returns the command at path ("certs status") in the real tree.
func find(t *testing.T, root *cobra.Command, path string) *cobra.Command {
	t.Helper()
	c, _, err := root.Find(strings.Fields(path))
	if err != nil || commandKey(c) != path {
		t.Fatalf("command %q not found: %v", path, err)
	}
	return c
}

// localFlags are the flags a command declares itself (not inherited).
func localFlags(c *cobra.Command) []string {
	var names []string
	c.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	slices.Sort(names)
	return names
}

// TestFlagScopes: each command takes exactly the flags it uses; a cluster
// command takes --kubeconfig and --context, local none of them, and only
// --log-level is global.
func TestFlagScopes(t *testing.T) {
	cluster := []string{"kubeconfig", "context"}
	mesh := []string{"fsm-namespace", "mesh-name"}
	ca := []string{"ca-bundle-secret-name", "certificate-manager", "vault-host", "vault-port", "vault-protocol", "vault-token",
		"vault-token-secret-name", "vault-token-secret-key", "vault-role", "vault-ca-file", "vault-client-cert-file", "vault-client-key-file", "vault-namespace", "cert-manager-issuer-name", "cert-manager-issuer-kind", "cert-manager-issuer-group"}
	hooks := []string{"cluster-domain", "webhook-url-host", "injector-port", "validator-port", "converter-port"}
	rotation := []string{"ca-key-algorithm", "root-rotation-grace-period"}
	serveOnly := []string{"trust-domain", "service-cert-validity-duration", "bootstrap-cert-validity-duration", "metrics-bind-address",
		"health-probe-bind-address", "sidecar-image", "init-container-image", "healthcheck-container-image", "key-pool-size",
		"root-auto-rotate-before", "kube-api-qps", "kube-api-burst", "controller-kube-api-qps", "controller-kube-api-burst",
		"injector-namespace-rate", "injector-namespace-burst", "injector-max-in-flight"}
	join := func(groups ...[]string) []string {
		out := slices.Concat(groups...)
		slices.Sort(out)
		return out
	}
	// serve and local own flags beyond these groups; every other command's
	// set is exact.
	for _, tc := range []struct {
		path   string
		want   []string
		subset bool
	}{
		{"serve", join(cluster, mesh, ca, hooks, rotation, serveOnly,
			[]string{"webhooks", "injector-probe-namespace", "validate-traffic-target", "strict-policy-validation", "webhook-bind-host"}), true},
		{"local", join(mesh, ca, hooks, rotation, serveOnly, []string{"no-demo"}), true},
		{"certs status", join(cluster, mesh, ca, hooks, []string{"output", "deployment", "timeout"}), false},
		{"certs rotate-root", join(cluster, mesh, ca, hooks, rotation, []string{"deployment"}), false},
		{"uninstall-hook", join(cluster, mesh, []string{"deployment", "mesh-config-name", "keep-webhook-configurations", "conversion-lease-namespace", "timeout"}), false},
		{"version", []string{"output"}, false},
	} {
		t.Run(tc.path, func(t *testing.T) {
			c := find(t, newRootCommand(), tc.path)
			got := localFlags(c)
			if tc.subset {
				for _, w := range tc.want {
					if !slices.Contains(got, w) {
						t.Errorf("%q lacks --%s", tc.path, w)
					}
				}
				if slices.Contains(got, "context") != slices.Contains(tc.want, "context") {
					t.Errorf("%q: --context present %v, want %v", tc.path, !slices.Contains(tc.want, "context"), slices.Contains(tc.want, "context"))
				}
				return
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("flags of %q:\n got %v\nwant %v", tc.path, got, tc.want)
			}
		})
	}
	var global []string
	newRootCommand().PersistentFlags().VisitAll(func(f *pflag.Flag) { global = append(global, f.Name) })
	if !slices.Equal(global, []string{"log-level"}) {
		t.Errorf("global flags %v, want only log-level", global)
	}
}

// TestHelpShowsOnlyUsedFlags reads `certs status --help` as the operator
// sees it.
func TestHelpShowsOnlyUsedFlags(t *testing.T) {
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"certs", "status", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	help := out.String()
	for _, want := range []string{"--context", "--kubeconfig", "--vault-host", "--output", "--deployment", "--log-level"} {
		if !strings.Contains(help, want) {
			t.Errorf("certs status --help lacks %s", want)
		}
	}
	for _, not := range []string{"--key-pool-size", "--sidecar-image", "--metrics-bind-address", "--kube-api-qps", "--root-auto-rotate-before", "--webhooks"} {
		if strings.Contains(help, not) {
			t.Errorf("certs status --help lists %s, which it does not use", not)
		}
	}
}

// TestParseScopedFlags: flags parse on the commands that take them, env
// FSM_<FLAG> too, and values land in the shared options.
func TestParseScopedFlags(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		check func(*options) bool
	}{
		{"status context and provider", []string{"certs", "status", "--context=second", "--certificate-manager=cert-manager"}, nil,
			func(o *options) bool { return o.kubeContext == "second" && o.certificateManager == "cert-manager" }},
		{"uninstall-hook mesh", []string{"uninstall-hook", "--mesh-name=blue", "--context", "c"}, nil,
			func(o *options) bool { return o.meshName == "blue" && o.kubeContext == "c" }},
		{"env context", []string{"certs", "rotate-root"}, map[string]string{"FSM_CONTEXT": "from-env"},
			func(o *options) bool { return o.kubeContext == "from-env" }},
		{"defaults of flags a command lacks", []string{"uninstall-hook"}, nil,
			func(o *options) bool { return o.vaultPort == 8200 && o.keyPoolSize == 32 && o.injectorPort == 9090 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			o := &options{}
			root := buildRoot(o)
			c, args, err := root.Find(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.ParseFlags(args); err != nil {
				t.Fatal(err)
			}
			if err := root.PersistentPreRunE(c, nil); err != nil {
				t.Fatal(err)
			}
			if !tc.check(o) {
				t.Fatalf("options after %v: %+v", tc.args, o)
			}
		})
	}
}

// TestLoadRESTConfig: --kubeconfig and --context choose the cluster as
// kubectl does, and a wrong one is a usage error naming the flag. The
// client is unlimited on this side, as in a pod (controller-runtime's
// config), not held to client-go's 5 requests/s.
func TestLoadRESTConfig(t *testing.T) {
	for _, tc := range []struct {
		name, kubeconfig, context, host, err string
	}{
		{"current context", "testdata/kubeconfig", "", "https://127.0.0.1:6443", ""},
		{"named context", "testdata/kubeconfig", "second", "https://10.0.0.2:6443", ""},
		{"KUBECONFIG and a context", "", "second", "https://10.0.0.2:6443", ""},
		{"unknown context", "testdata/kubeconfig", "third", "", `invalid value "third" for --context`},
		{"missing file", "testdata/none", "", "", `invalid value "testdata/none" for --kubeconfig`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KUBECONFIG", "testdata/kubeconfig")
			cfg, err := loadRESTConfig(tc.kubeconfig, tc.context)
			if tc.err != "" {
				var ue *usageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v; want a usage error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Host != tc.host {
				t.Fatalf("host %q, want %q", cfg.Host, tc.host)
			}
			if cfg.QPS >= 0 || cfg.RateLimiter != nil {
				t.Fatalf("client rate limited at %g requests/s (burst %d); want no client-side limit", cfg.QPS, cfg.Burst)
			}
		})
	}
}

// TestVersionCommand: `version` in each format, and `--version`, say the
// build's identity.
func TestVersionCommand(t *testing.T) {
	want := version.Get()
	for _, tc := range []struct {
		args   []string
		env    map[string]string
		decode func([]byte) (version.Info, error)
	}{
		{[]string{"version"}, nil, func(b []byte) (version.Info, error) {
			if got := strings.TrimSpace(string(b)); got != "fsm-webhooks "+want.String() {
				return version.Info{}, errors.New("text: " + got)
			}
			return want, nil
		}},
		{[]string{"--version"}, nil, func(b []byte) (version.Info, error) {
			if got := strings.TrimSpace(string(b)); got != "fsm-webhooks "+want.String() {
				return version.Info{}, errors.New("text: " + got)
			}
			return want, nil
		}},
		{[]string{"version", "-o", "json"}, nil, func(b []byte) (i version.Info, err error) { return i, json.Unmarshal(b, &i) }},
		{[]string{"version", "-o", "yaml"}, nil, func(b []byte) (i version.Info, err error) { return i, yaml.UnmarshalStrict(b, &i) }},
		{[]string{"version"}, map[string]string{"FSM_OUTPUT": "json"}, func(b []byte) (i version.Info, err error) { return i, json.Unmarshal(b, &i) }},
	} {
		t.Run(strings.Join(slices.Concat(tc.args, slices.Sorted(maps.Keys(tc.env))), " "), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			root := newRootCommand()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetArgs(tc.args)
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			got, err := tc.decode(out.Bytes())
			if err != nil || got != want {
				t.Fatalf("output %q: %+v, %v; want %+v", out.String(), got, err, want)
			}
		})
	}
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Version: "+want.String()) {
		t.Errorf("--help does not show the version:\n%s", out.String())
	}
}

// TestCompletion: cobra's completion scripts, and completion of -o values.
func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		root := newRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs([]string{"completion", shell})
		if err := root.Execute(); err != nil || !strings.Contains(out.String(), "fsm-webhooks") {
			t.Errorf("completion %s: %v, %d bytes", shell, err, out.Len())
		}
	}
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{cobra.ShellCompNoDescRequestCmd, "certs", "status", "-o", ""})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(out.String()); !slices.Equal(got[:3], []string{"table", "json", "yaml"}) {
		t.Fatalf("completions of certs status -o: %q", out.String())
	}
}

// TestCompletionUnknownShell: an unknown shell is a usage error (exit 2)
// naming it and the shells there are. cobra's completion command showed its
// help and returned no error, so `fsm-webhooks completion bsh > script`
// exited 0 having written help text, not a script.
func TestCompletionUnknownShell(t *testing.T) {
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"completion", "bsh"})
	err := root.Execute()
	var ue *usageError
	const want = `unknown shell "bsh" for "fsm-webhooks completion": want bash, fish, powershell or zsh`
	if !errors.As(err, &ue) || err.Error() != want || out.Len() != 0 {
		t.Fatalf("error %v (usage error: %v), output %q; want only the usage error %q", err, errors.As(err, &ue), out.String(), want)
	}
	// As every command taking no arguments (noArgs).
	root = newRootCommand()
	root.SetOut(&out)
	root.SetArgs([]string{"completion", "bash", "extra"})
	if err := root.Execute(); !errors.As(err, &ue) || err.Error() != `fsm-webhooks completion bash takes no arguments, got ["extra"]` {
		t.Fatalf("completion bash extra: error %v (usage error: %v)", err, errors.As(err, &ue))
	}
	// Alone, it still shows its help.
	root = newRootCommand()
	out.Reset()
	root.SetOut(&out)
	root.SetArgs([]string{"completion"})
	if err := root.Execute(); err != nil || !strings.Contains(out.String(), "Available Commands:") {
		t.Fatalf("completion alone: error %v, output %q; want the help", err, out.String())
	}
}

// TestApplyDeploymentFlags: the Deployment fills only what the operator did
// not give, never how to reach the cluster, and names itself on a bad value.
func TestApplyDeploymentFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		deploy  map[string]string
		want    map[string]string
		wantErr string
	}{
		{"fills unset", nil, map[string]string{"certificate-manager": "vault", "vault-host": "vault.x", "mesh-name": "blue"},
			map[string]string{"certificate-manager": "vault", "vault-host": "vault.x", "mesh-name": "blue"}, ""},
		{"command line wins", []string{"--mesh-name=red"}, map[string]string{"mesh-name": "blue"}, map[string]string{"mesh-name": "red"}, ""},
		{"never cluster or output", nil, map[string]string{"kubeconfig": "/etc/k", "context": "c", "output": "json"},
			map[string]string{"kubeconfig": "", "context": "", "output": "table"}, ""},
		// A path in the servers' pods, not on the operator's machine.
		{"never a file of the pods", nil, map[string]string{"vault-protocol": "https", "vault-ca-file": "/etc/fsm-webhooks/vault-ca/ca.crt",
			"vault-client-cert-file": "/etc/fsm-webhooks/vault-client-cert/tls.crt", "vault-client-key-file": "/etc/fsm-webhooks/vault-client-cert/tls.key"},
			map[string]string{"vault-protocol": "https", "vault-ca-file": "", "vault-client-cert-file": "", "vault-client-key-file": ""}, ""},
		{"serve-only ignored", nil, map[string]string{"key-pool-size": "7"}, map[string]string{}, ""},
		{"bad value", nil, map[string]string{"vault-port": "x"}, nil, `invalid value "x" for --vault-port in Deployment fsm-system/fsm-webhooks: must be an integer`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := find(t, newRootCommand(), "certs status")
			if err := c.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			err := applyDeploymentFlags(c.Flags(), tc.deploy, "Deployment fsm-system/fsm-webhooks")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.want {
				if got := c.Flags().Lookup(name).Value.String(); got != want {
					t.Errorf("--%s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

// TestLoggerLines: one JSON object per line at the chosen level and above,
// an error line with its error and logger name but no stack trace (only panics
// carry one).
func TestLoggerLines(t *testing.T) {
	for _, tc := range []struct {
		level     string
		wantLines int // of the info, error lines below
	}{
		{"debug", 2}, {"info", 2}, {"warn", 1}, {"error", 1},
	} {
		var buf bytes.Buffer
		log := newLoggerTo(&buf, tc.level).WithName("test")
		log.Info("started", "webhook", "injector")
		log.Error(errors.New("reading Secret fsm-system/x: connection refused"), "Reconciler error", "controller", "bootstrap-secrets")
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != tc.wantLines {
			t.Fatalf("level %s: %d lines, want %d:\n%s", tc.level, len(lines), tc.wantLines, buf.String())
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &e); err != nil {
			t.Fatalf("level %s: error line is not one JSON object: %v\n%s", tc.level, err, buf.String())
		}
		if e["level"] != "error" || e["error"] != "reading Secret fsm-system/x: connection refused" || e["logger"] != "test" {
			t.Errorf("level %s: error line %v, want its level, error and logger", tc.level, e)
		}
		if st, ok := e["stacktrace"]; ok {
			t.Errorf("level %s: error line carries a stack trace:\n%v", tc.level, st)
		}
	}
}

// TestUnknownSubcommandIsUsageError: a mistyped subcommand is a usage error
// naming it (exit 2), not the group's help with exit 0, which a runbook's
// `fsm-webhooks certs rotate-roots && echo rotated` took for done. A group
// given alone still shows its help.
func TestUnknownSubcommandIsUsageError(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"certs", "rotate-roots"}, `unknown command "rotate-roots" for "fsm-webhooks certs"; did you mean rotate-root?`},
		{[]string{"certs", "stauts"}, `unknown command "stauts" for "fsm-webhooks certs"; did you mean status?`},
		{[]string{"bogus"}, `unknown command "bogus" for "fsm-webhooks"`},
		{[]string{"serv"}, `unknown command "serv" for "fsm-webhooks"; did you mean serve?`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			root := newRootCommand()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(tc.args)
			err := root.Execute()
			var ue *usageError
			if !errors.As(err, &ue) || err.Error() != tc.want {
				t.Fatalf("error %v (usage error: %v), output %q; want the usage error %q", err, errors.As(err, &ue), out.String(), tc.want)
			}
		})
	}
	for _, args := range [][]string{{}, {"certs"}} {
		t.Run("help of "+strings.Join(args, " "), func(t *testing.T) {
			// A bad env value is no reason to refuse a group's help.
			t.Setenv("FSM_MESH_NAME", "Not_A_Label")
			root := newRootCommand()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetArgs(args)
			if err := root.Execute(); err != nil || !strings.Contains(out.String(), "Available Commands:") {
				t.Fatalf("error %v, output %q; want the help", err, out.String())
			}
		})
	}
}
