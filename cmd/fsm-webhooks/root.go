package main

import (
	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

func newRootCommand() *cobra.Command {
	o := &options{}
	root := &cobra.Command{
		Use:   "fsm-webhooks",
		Short: "Admission webhooks of a Pipy-based, FSM-compatible service mesh",
		Long: `fsm-webhooks runs the sidecar injector (mutating), the validator and the
MeshConfig conversion webhook of a Flomesh-compatible service mesh, and manages
their certificates: the mesh CA (tresor, vault or cert-manager), per-pod
bootstrap certificates, and self-provisioned serving certificates whose CA it
keeps in every webhook configuration's caBundle.

Every flag can also be set by environment variable FSM_<FLAG>, e.g.
FSM_MESH_NAME=fsm.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags()); err != nil {
				return err
			}
			// local is a demonstration: keep its output readable.
			if cmd.Name() == "local" && !cmd.Flags().Changed("log-level") {
				o.logLevel = "warn"
			}
			if err := o.validate(); err != nil {
				return err
			}
			ctrl.SetLogger(newLogger(o.logLevel))
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })
	o.addFlags(root.PersistentFlags())
	root.AddCommand(newServeCommand(o), newLocalCommand(o), newCertsCommand(o), newUninstallHookCommand(o))
	root.CompletionOptions.DisableDefaultCmd = true
	return root
}

// newLogger builds the structured logger (zap behind logr).
func newLogger(level string) logr.Logger {
	lvl := map[string]zapcore.Level{
		"debug": zapcore.DebugLevel,
		"info":  zapcore.InfoLevel,
		"warn":  zapcore.WarnLevel,
		"error": zapcore.ErrorLevel,
	}[level]
	return zap.New(zap.Level(lvl), zap.UseDevMode(false))
}
