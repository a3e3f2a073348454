package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/rootrotation"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
	"github.com/flomesh-io/fsm-webhooks/certs/status"
	"github.com/flomesh-io/fsm-webhooks/certs/tresor"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

func newCertsCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Inspect and rotate the mesh CA and the webhook serving certificates",
		Args:  noArgs,
	}
	cmd.AddCommand(newCertsStatusCommand(o), newRotateRootCommand(o))
	return cmd
}

func newCertsStatusCommand(o *options) *cobra.Command {
	var output, deployment string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the CA(s), the root rotation and serving certificates and whether every caBundle verifies its webhook's certificate",
		Long: `status lists the configuration it checks, the mesh CA roots (with the built-in
CA: the root rotation phase and the signing root's expiry) and each webhook's
serving certificate (subject, issuer, not-after, days left, Secret) and whether
the caBundle of its webhook configuration or CRD verifies it. It only reads
(with cert-manager and no CA Secret, it learns the CA from one throwaway
CertificateRequest, deleted after, as serve does). Exit status 1 when anything is wrong (missing, expired, due for renewal, not
verified).

Settings not given on the command line (or as FSM_<FLAG>) are read from the
running servers' Deployment (--deployment, else the one the chart labels, in
--fsm-namespace when given, of --mesh-name when given): certificate provider,
Vault address and role, cert-manager issuer, mesh name, fsm namespace. Only the
webhooks the servers run are checked (all three unless serve is told otherwise).
It gives up after --timeout.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !slices.Contains([]string{"table", "json", "yaml"}, output) {
				return usageErrorf("invalid value %q for --output: must be table, json or yaml", output)
			}
			// Else "no Deployment found", as if the name were right.
			if err := objectNameFlag("deployment", deployment); err != nil {
				return err
			}
			if timeout <= 0 {
				return usageErrorf("invalid value %s for --timeout: must be positive", timeout)
			}
			cfg, cs, err := o.clients()
			if err != nil {
				return err
			}
			// Every read has a deadline: an apiserver that accepts the
			// connection and never answers (a wedged control plane, a
			// half-open load balancer) held the command for ever, when
			// the operator runs it precisely to find out what is wrong.
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			report, err := certsStatus(ctx, cmd, o, cfg, cs, deployment)
			if err != nil {
				return timedOut(ctx, err, timeout)
			}
			if err := report.Write(cmd.OutOrStdout(), output); err != nil {
				return err
			}
			if !report.Healthy {
				return errors.New("certificates need attention (see above)")
			}
			return nil
		},
	}
	addOutputFlag(cmd, &output, "table")
	cmd.Flags().StringVar(&deployment, "deployment", "", "the servers' Deployment to read the configuration from (in --fsm-namespace); empty: the one labelled app=fsm-webhooks")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "give up after this long")
	return cmd
}

// certsStatus reads what `certs status` reports, within ctx.
func certsStatus(ctx context.Context, cmd *cobra.Command, o *options, cfg *rest.Config, cs kubernetes.Interface, deployment string) (*status.Report, error) {
	running, err := runningConfig(ctx, cmd.Flags(), o, cs, deployment)
	if err != nil {
		return nil, err
	}
	// Reading the CA needs no key pool: nothing is issued.
	o.keyPoolSize = 0
	ca, tresorState, err := readOnlyCA(ctx, o, cfg, cs)
	if err != nil {
		return nil, err
	}
	report, err := status.Check(ctx, webhooks.Options{
		Config: cfg, Namespace: o.fsmNamespace, MeshName: o.meshName,
		WebhookURLHost: o.webhookURLHost, Issuer: ca,
	}, servedIdentities(o, running.webhooks))
	if err != nil {
		return nil, err
	}
	report.Configuration = o.statusConfiguration(running.source)
	if tresorState != nil {
		report.RootRotation = status.TresorRotation(tresorState.Rotation, time.Now())
	}
	return report, nil
}

func newRotateRootCommand(o *options) *cobra.Command {
	var deployment string
	cmd := &cobra.Command{
		Use:   "rotate-root",
		Short: "Rotate the tresor root CA without downtime (resumes an interrupted rotation)",
		Long: `rotate-root moves the mesh onto a new root CA in three recorded phases:
1. a new root is trusted beside the old one in fsm-ca-bundle and in every caBundle;
2. once every caBundle holds it, the serving certificates are re-issued from it;
3. after --root-rotation-grace-period the old root is dropped.
Each phase is recorded in the CA Secret, so running it again after a crash resumes
where it stopped. It runs until the old root is dropped: through the grace period
(24h by default) and until every bootstrap certificate of the old root is
re-issued. Stopping it earlier is safe: the running servers resume the recorded
rotation within the hour (unless they run with --root-auto-rotate-before=0), and
so does running it again. Only for the built-in tresor CA that fsm-webhooks created: with
Vault or cert-manager the operator rotates the root there and the servers follow
the bundle they publish.

The running servers publish each phase (caBundles, the pods' certificates), so
their Deployment must exist: settings not given on the command line (or as
FSM_<FLAG>) are read from it (--deployment, else the one the chart labels, in
--fsm-namespace when given, of --mesh-name when given), as certs status does.

The new root and the serving certificates are signed with this machine's clock:
rotate-root refuses to start when it runs more than 30 s ahead of the apiserver's.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := objectNameFlag("deployment", deployment); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			cfg, cs, err := o.clients()
			if err != nil {
				return err
			}
			// The mesh name, namespace and provider are the servers': a
			// mistyped --mesh-name would find none of the mesh's webhook
			// configurations to wait for and re-issue the serving certs
			// before their caBundles trust the new root.
			running, err := runningConfig(ctx, cmd.Flags(), o, cs, deployment)
			if err != nil {
				return err
			}
			source := running.source
			if !running.found {
				return fmt.Errorf("no fsm-webhooks Deployment found (%s): rotate-root needs the running servers, which publish the new root in every caBundle and re-issue the pods' certificates; name theirs with --deployment and --fsm-namespace",
					deploymentSearch(cmd.Flags(), o, deployment))
			}
			if o.certificateManager != tresor.ProviderName {
				return usageErrorf("--certificate-manager=%s (%s): rotate-root only rotates the built-in tresor CA; rotate the root in %s and the servers follow its bundle", o.certificateManager, source, o.certificateManager)
			}
			// The new root and the serving certificates are signed with
			// this machine's clock: one ahead of the cluster's would make
			// them not yet valid there, and the webhooks unreachable.
			if err := checkClockAgainstAPIServer(ctx, cfg, cmd.ErrOrStderr(), rotateRootClock); err != nil {
				return err
			}
			// The mesh's CA must exist: a wrong --fsm-namespace or
			// --ca-bundle-secret-name would otherwise mint a new root and
			// rotate that.
			issuer, err := newIssuerWith(ctx, ctx, o, cfg, cs, newLogger(o.logLevel).WithName("certs"), true)
			if err != nil {
				return err
			}
			ca, ok := issuer.(*tresor.Issuer)
			if !ok {
				return fmt.Errorf("rotate-root: provider %s cannot rotate its root", issuer.Provider())
			}
			ropts, err := rotationOptions(o, cfg, cs, ca)
			if err != nil {
				return err
			}
			ropts.Log = newLogger(o.logLevel).WithName("rotate-root")
			ropts.OnPhase = func(st rootrotation.Status) {
				fmt.Fprintf(os.Stdout, "phase %s since %s\n", phaseName(st.Phase), st.Since.UTC().Format("2006-01-02T15:04:05Z"))
			}
			return rootrotation.Rotate(ctx, ropts)
		},
	}
	cmd.Flags().StringVar(&deployment, "deployment", "", "the servers' Deployment to read the configuration from (in --fsm-namespace); empty: the one labelled app=fsm-webhooks")
	return cmd
}

func phaseName(p rootrotation.Phase) string {
	if p == "" {
		return "Done (one root)"
	}
	return string(p)
}

// readOnlyCA reports the mesh CA bundle without creating anything, so
// `certs status` never writes; with tresor also the CA Secret's state (its
// root rotation).
func readOnlyCA(ctx context.Context, o *options, cfg *rest.Config, cs kubernetes.Interface) (certs.Issuer, *tresor.State, error) {
	if o.certificateManager == tresor.ProviderName {
		st, err := (&tresor.Store{Client: cs, Namespace: o.fsmNamespace, Name: o.caBundleSecretName}).Check(ctx)
		if err != nil {
			return nil, nil, err
		}
		return bundleOnly{provider: tresor.ProviderName, bundle: st.BundlePEM}, st, nil
	}
	issuer, err := newIssuer(ctx, o, cfg, cs, newLogger(o.logLevel).WithName("certs"))
	return issuer, nil, err
}

// bundleOnly is a certs.Issuer that can only report a bundle.
type bundleOnly struct {
	provider string
	bundle   []byte
}

func (b bundleOnly) Issue(context.Context, certs.Request) (*certs.Certificate, error) {
	return nil, &certs.ProviderError{Provider: b.provider, Op: "issue", Err: errors.New("read-only view of the CA")}
}
func (b bundleOnly) CABundle(context.Context) ([]byte, error) { return b.bundle, nil }
func (b bundleOnly) Provider() string                         { return b.provider }

// rotationOptions drive a root rotation of the tresor CA: every webhook's
// serving cert moves to the new root, and trust is checked in every
// webhook configuration's caBundle.
func rotationOptions(o *options, cfg *rest.Config, cs kubernetes.Interface, ca *tresor.Issuer) (rootrotation.Options, error) {
	hooks := hookIdentities(o)
	wopts := webhooks.Options{Namespace: o.fsmNamespace, MeshName: o.meshName, WebhookURLHost: o.webhookURLHost}
	regs := make([]webhooks.Registration, 0, len(hooks))
	specs := make([]servingcert.Spec, 0, len(hooks))
	for _, h := range hooks {
		regs = append(regs, h.Registration)
		specs = append(specs, h.ServingSpec(wopts))
	}
	trusted, err := webhooks.TrustCheck(cfg, wopts, regs)
	if err != nil {
		return rootrotation.Options{}, err
	}
	return rootrotation.Options{
		CA: tresor.RotationCA(ca), Issuer: ca, Client: cs, Specs: specs, Trusted: trusted, Grace: o.rootRotationGrace,
		// The injector's trust controller re-issues bootstrap certificates
		// of the old root; the drop waits for it.
		Dependents: injector.RetiringRootCheck(cs),
	}, nil
}
