package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chart "github.com/flomesh-io/fsm-webhooks/charts/fsm-webhooks"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/local"
	"github.com/flomesh-io/fsm-webhooks/validator"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

func newLocalCommand(o *options) *cobra.Command {
	var noDemo bool
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Run a real kube-apiserver + etcd on loopback with every webhook, show what they do, serve until Ctrl-C",
		Long: `local starts a real kube-apiserver and etcd on loopback (building them once
into ~/.cache/fsm-webhooks/assets from the Go module proxy, with progress), installs
the CRDs, runs the injector, validator and converter registered by URL on
127.0.0.1, demonstrates each, prints a kubeconfig to use with kubectl, and serves
until interrupted. Ctrl-C stops everything and removes every temporary file.
Logs default to --log-level=warn here so the demonstration stays readable.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// local names the injector's probe namespace after the mesh.
			if probe := o.meshName + localProbeSuffix; len(probe) > 63 {
				return usageErrorf("invalid value %q for --mesh-name: local creates namespace %s, longer than a namespace name's 63 characters; use at most %d",
					o.meshName, probe, 63-len(localProbeSuffix))
			}
			// SIGPIPE too: `local | head` otherwise dies at its next write
			// once head has gone, leaving etcd and kube-apiserver running
			// and its temporary directory behind; notified, the write fails
			// instead and local stops everything as on Ctrl-C.
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGPIPE)
			defer stop()
			return runLocal(ctx, o, cmd.Flags(), !noDemo)
		},
	}
	cmd.Flags().BoolVar(&noDemo, "no-demo", false, "skip the demonstration; just serve")
	return cmd
}

// localProbeSuffix makes the injector's probe namespace from the mesh name.
const localProbeSuffix = "-injector-probe"

func runLocal(ctx context.Context, o *options, fs *pflag.FlagSet, demo bool) (err error) {
	changed := fs.Changed
	out := os.Stdout
	if o.webhookURLHost == "" {
		o.webhookURLHost = "127.0.0.1"
	}
	// Loopback only, unless asked otherwise.
	if !changed("metrics-bind-address") {
		o.metricsAddr = "127.0.0.1:8080"
	}
	if !changed("health-probe-bind-address") {
		o.healthProbeAddr = "127.0.0.1:8081"
	}

	crds, err := chart.CRDs()
	if err != nil {
		return err
	}
	env, err := local.Start(ctx, out, crds)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(out, "stopping kube-apiserver and etcd")
		if stopErr := env.Stop(); stopErr != nil && err == nil {
			err = fmt.Errorf("stopping the local control plane: %w", stopErr)
		}
	}()

	// The demo's client prints the apiserver's warnings (deprecated versions
	// and fields) where the user reads the demo.
	demoCfg := rest.CopyConfig(env.Config)
	demoCfg.WarningHandler = rest.NewWarningWriter(out, rest.WarningWriterOptions{})
	c, err := client.New(demoCfg, client.Options{Scheme: newScheme()})
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.fsmNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", o.fsmNamespace, err)
	}
	mc, err := validator.BaseMeshConfig(o.fsmNamespace, fsmnames.MeshConfigName)
	if err != nil {
		return err
	}
	if err := c.Create(ctx, mc.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating MeshConfig %s/%s: %w", o.fsmNamespace, fsmnames.MeshConfigName, err)
	}
	sf := &serveFlags{webhooks: allHooks, injectorProbeNS: o.meshName + localProbeSuffix, validateTrafficTgt: true, bindHost: "127.0.0.1"}
	if err := local.PrepareNamespace(ctx, c, sf.injectorProbeNS, o.meshName); err != nil {
		return err
	}

	serveCtx, cancelServe := context.WithCancel(ctx)
	defer cancelServe()
	srvCh := make(chan *webhooks.Server, 1)
	// serve's result, read by whoever sees serveDone closed (more than one
	// wait may need it).
	var serveResult error
	serveDone := make(chan struct{})
	go func() {
		serveResult = serve(serveCtx, o, sf, env.Config, func(s *webhooks.Server) { srvCh <- s })
		close(serveDone)
	}()
	// Ctrl-C at any point stops the webhooks and ends cleanly, not with
	// the context's error.
	interrupted := func() error {
		fmt.Fprintln(out, "\ninterrupted: stopping the webhooks")
		cancelServe()
		<-serveDone
		if serveResult != nil && !errors.Is(serveResult, context.Canceled) {
			return fmt.Errorf("serving: %w", serveResult)
		}
		return nil
	}
	fmt.Fprintln(out, "starting the injector, validator and converter (registered by URL on 127.0.0.1)")
	var srv *webhooks.Server
	select {
	case srv = <-srvCh:
	case <-serveDone:
		if ctx.Err() != nil {
			return interrupted()
		}
		return fmt.Errorf("serving: %w", serveResult)
	}
	if err := waitReady(ctx, srv, serveDone); err != nil {
		if ctx.Err() != nil {
			return interrupted()
		}
		if errors.Is(err, errServeEnded) {
			return fmt.Errorf("serving: %w", serveResult)
		}
		return err
	}
	fmt.Fprintln(out, "webhooks ready: serving certs issued by the mesh CA, caBundles verified, every path proven by a dry run")

	if demo {
		d := &local.Demo{Client: c, Out: out, MeshName: o.meshName, FSMNamespace: o.fsmNamespace, CASecret: o.caBundleSecretName, MeshConfig: mc}
		if d.InvalidMeshConfig, err = validator.DemoInvalidMeshConfig(o.fsmNamespace, "demo-invalid"); err != nil {
			return err
		}
		if err := d.Run(ctx); err != nil {
			if ctx.Err() != nil {
				return interrupted()
			}
			return fmt.Errorf("demo: %w", err)
		}
	}
	fmt.Fprintf(out, "\nready. In another shell:\n    export KUBECONFIG=%s\n    kubectl get ns\n    go run ./cmd/fsm-webhooks certs status %s\nPress Ctrl-C to stop.\n", env.KubeconfigPath, strings.Join(localStatusArgs(o, fs), " "))
	select {
	case <-ctx.Done():
		return interrupted()
	case <-serveDone:
		return fmt.Errorf("serving stopped: %w", serveResult)
	}
}

// localStatusArgs are the flags of the `certs status` command local
// suggests: every setting of local's that certs status also reads and that
// is not its default (--webhook-url-host, which local sets, among them),
// and --fsm-namespace. It suggested only the last two, so after
// `local --mesh-name=demo` (or another CA Secret) the suggested command
// checked mesh fsm and reported every webhook of the running mesh missing.
// --vault-token is left out: a secret printed to the terminal (certs
// status reads FSM_VAULT_TOKEN too).
func localStatusArgs(o *options, fs *pflag.FlagSet) []string {
	status := pflag.NewFlagSet("certs status", pflag.ContinueOnError)
	for _, g := range flagScopes["certs status"] {
		g.add(&options{}, status)
	}
	args := []string{"--fsm-namespace=" + shellQuote(o.fsmNamespace)}
	status.VisitAll(func(sf *pflag.Flag) {
		f := fs.Lookup(sf.Name)
		if f == nil || sf.Name == "fsm-namespace" || sf.Name == "vault-token" || f.Value.String() == sf.DefValue {
			return
		}
		args = append(args, "--"+sf.Name+"="+shellQuote(f.Value.String()))
	})
	return args
}

// shellQuote quotes s for a POSIX shell when it holds more than letters,
// digits and -_./:=,@.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// errServeEnded is waitReady's answer when serve returned first.
var errServeEnded = errors.New("serve ended")

// waitReady polls the server's readiness (cert loaded, caBundle verified,
// probes passed), printing what it is still waiting for.
func waitReady(ctx context.Context, srv *webhooks.Server, serveDone <-chan struct{}) error {
	start := time.Now()
	deadline := start.Add(2 * time.Minute)
	var last string
	for {
		err := srv.Ready(ctx)
		if err == nil {
			return nil
		}
		// Say what is awaited only when it takes a while.
		if msg := err.Error(); msg != last && time.Since(start) > 5*time.Second {
			fmt.Fprintf(os.Stdout, "  waiting: %s\n", msg)
			last = msg
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("webhooks not ready after 2 minutes: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-serveDone:
			return errServeEnded
		case <-time.After(250 * time.Millisecond):
		}
	}
}
