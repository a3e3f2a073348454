package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
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
			c, err := client.New(cfg, client.Options{Scheme: s})
			if err != nil {
				return fmt.Errorf("kubernetes client: %w", err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return chart.ApplyCRDs(ctx, c)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "give up after this long")
	return cmd
}
