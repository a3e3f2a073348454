package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chart "github.com/flomesh-io/fsm-webhooks/charts/fsm-webhooks"
)

func newInstallCRDsCommand(o *options) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "install-crds",
		Short: "Create or update the MeshConfig CRD to the one this binary ships (Helm never upgrades crds/)",
		Long: `install-crds server-side applies the chart's CustomResourceDefinitions, taking
over the fields Helm or FSM's bootstrap set, and waits until they are Established.
spec.conversion is left to the converter. Run it before upgrading the chart (the
chart's pre-upgrade hook does) or when taking over from FSM. An apiserver that is
briefly unavailable (restarting, throttling) is retried until --timeout.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout <= 0 {
				return usageErrorf("invalid value %s for --timeout: must be positive", timeout)
			}
			cfg, err := o.restConfig()
			if err != nil {
				return err
			}
			s := runtime.NewScheme()
			if err := apiextensionsv1.AddToScheme(s); err != nil {
				return err
			}
			// The one kind written, mapped here: controller-runtime's
			// discovery-backed mapper looks kinds up without the request's
			// context, so an apiserver that accepted the connection and never
			// answered held the command past --timeout for ever (the hook
			// Job was killed at its deadline with nothing logged).
			mapper := meta.NewDefaultRESTMapper([]schema.GroupVersion{apiextensionsv1.SchemeGroupVersion})
			mapper.Add(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"), meta.RESTScopeRoot)
			c, err := client.New(cfg, client.Options{Scheme: s, Mapper: mapper})
			if err != nil {
				return fmt.Errorf("kubernetes client: %w", err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return timedOut(ctx, chart.ApplyCRDs(ctx, c), timeout)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "give up after this long")
	return cmd
}

// timedOut names --timeout in err when ctx ended at it: the client's
// "context deadline exceeded" alone names neither the flag nor its value,
// nor tells it from a network timeout.
func timedOut(ctx context.Context, err error, timeout time.Duration) error {
	if err == nil || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w (stopped at --timeout=%s: every step is idempotent, so run it again, with a longer --timeout if the cluster is slow)", err, timeout)
}
