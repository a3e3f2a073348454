package main

import (
	"context"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/flomesh-io/fsm-webhooks/uninstall"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

func newUninstallHookCommand(o *options) *cobra.Command {
	u := uninstall.Options{}
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "uninstall-hook",
		Short: "Remove the webhook configurations, stop the servers and unhook the converter (the chart's pre-delete hook)",
		Long: `uninstall-hook is what the Helm chart's pre-delete Job runs, in this order:
delete the MutatingWebhookConfiguration and ValidatingWebhookConfiguration of the
mesh (so no failurePolicy=Fail webhook outlives its server; kept with
--keep-webhook-configurations, a hand-back to FSM, and each one whose Service
selects FSM's pods, which FSM's servers answer after takeover step 1), scale the servers'
Deployment to zero and wait for its pods (the MeshConfig CRD's conversion
strategy set back to None before they stop, holding the converters'
conversion-owner Lease so none re-points it), hand the mesh's bootstrap Secrets to
the garbage collector (each running meshed pod becomes its Secret's owner; a
Secret whose pod is gone is deleted), and delete --mesh-config-name if the chart
created it. Every step is idempotent; NotFound counts as done, and is logged
naming what was not found (by hand, check --fsm-namespace, --mesh-name and
--deployment against such lines: the run still succeeds). Run it by hand
before a "helm uninstall --no-hooks": without it, nothing deletes a bootstrap
Secret with its pod any more. On SIGTERM or --timeout it stops between
requests and frees the Lease it holds; run it again to finish.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout <= 0 {
				return usageErrorf("invalid value %s for --timeout: must be positive", timeout)
			}
			// A name no object can have was looked up as NotFound, which
			// the hook counts as done: a typo skipped its step silently.
			for _, n := range []struct{ flag, v string }{{"deployment", u.Deployment}, {"mesh-config-name", u.MeshConfigName}} {
				if err := objectNameFlag(n.flag, n.v); err != nil {
					return err
				}
			}
			if errs := validation.IsDNS1123Label(u.ConversionLeaseNamespace); u.ConversionLeaseNamespace != "" && len(errs) > 0 {
				return usageErrorf("invalid value %q for --conversion-lease-namespace: must be a namespace name (a DNS label): %s", u.ConversionLeaseNamespace, strings.Join(errs, "; "))
			}
			cfg, err := o.restConfig()
			if err != nil {
				return err
			}
			// SIGTERM (helm uninstall interrupted, the Job's pod deleted)
			// ends the run like the timeout does: the conversion-owner
			// Lease is released rather than left to expire.
			sctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			ctx, cancel := context.WithTimeout(sctx, timeout)
			defer cancel()
			u.Namespace, u.MeshName, u.Log = o.fsmNamespace, o.meshName, ctrl.Log.WithName("uninstall")
			return timedOut(ctx, uninstall.Run(ctx, cfg, u), timeout)
		},
	}
	cmd.Flags().StringVar(&u.Deployment, "deployment", "fsm-webhooks", "Deployment of the servers to scale to zero; empty skips")
	cmd.Flags().StringVar(&u.MeshConfigName, "mesh-config-name", "", "MeshConfig to delete last; empty skips")
	cmd.Flags().BoolVar(&u.KeepConfigurations, "keep-webhook-configurations", false, "leave the webhook configurations (a hand-back to FSM, whose servers the Services select)")
	cmd.Flags().StringVar(&u.ConversionLeaseNamespace, "conversion-lease-namespace", webhooks.DefaultConversionLeaseNamespace, "namespace of the converters' conversion-owner Lease, held by the hook while the servers stop; empty: not held")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "give up after this long")
	return cmd
}
