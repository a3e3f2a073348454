package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/flomesh-io/fsm-webhooks/internal/version"
)

// flagGroup is a set of options' flags a command takes as a whole.
type flagGroup struct {
	name string
	add  func(*options, *pflag.FlagSet)
}

var (
	clusterFlags  = flagGroup{"cluster", (*options).addClusterFlags}
	meshFlags     = flagGroup{"mesh", (*options).addMeshFlags}
	caFlags       = flagGroup{"ca", (*options).addCAFlags}
	webhookFlags  = flagGroup{"webhook", (*options).addWebhookFlags}
	rotationFlags = flagGroup{"rotation", (*options).addRotationFlags}
	serveOnly     = flagGroup{"serve", (*options).addServeFlags}
	logFlags      = flagGroup{"log", (*options).addLogFlags}

	allFlagGroups = []flagGroup{clusterFlags, meshFlags, caFlags, webhookFlags, rotationFlags, serveOnly, logFlags}
)

// flagScopes are the option groups each command takes (its own flags aside),
// so `<command> --help` lists only what that command uses. --log-level is
// on every command (persistent on the root). A command talking to a
// cluster takes clusterFlags (--kubeconfig, --context); local starts its own.
var flagScopes = map[string][]flagGroup{
	"serve":             {clusterFlags, meshFlags, caFlags, webhookFlags, rotationFlags, serveOnly},
	"local":             {meshFlags, caFlags, webhookFlags, rotationFlags, serveOnly},
	"certs status":      {clusterFlags, meshFlags, caFlags, webhookFlags},
	"certs rotate-root": {clusterFlags, meshFlags, caFlags, webhookFlags, rotationFlags},
	"uninstall-hook":    {clusterFlags, meshFlags},
	"install-crds":      {clusterFlags},
}

// noOptions are commands that read no options: no env, no validation (the
// groups, which only show their help, among them).
var noOptions = []string{"fsm-webhooks", "certs", "version", "completion", cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd}

// fromDeployment are commands that complete their flags from the servers'
// Deployment (runningConfig): they validate once that is done, since a flag
// such as --vault-host may come from there.
var fromDeployment = []string{"certs status", "certs rotate-root"}

func newRootCommand() *cobra.Command { return buildRoot(&options{}) }

// buildRoot is the command tree on o.
func buildRoot(o *options) *cobra.Command {
	// Every option holds its default whether or not the running command
	// takes its flag, so validate and the shared wiring see sane values.
	o.addFlags(pflag.NewFlagSet("defaults", pflag.ContinueOnError))
	root := &cobra.Command{
		Use:   "fsm-webhooks",
		Short: "Admission webhooks of a Pipy-based, FSM-compatible service mesh",
		Long: `fsm-webhooks runs the sidecar injector (mutating), the validator and the
MeshConfig conversion webhook of a Flomesh-compatible service mesh, and manages
their certificates: the mesh CA (tresor, vault or cert-manager), per-pod
bootstrap certificates, and self-provisioned serving certificates whose CA it
keeps in every webhook configuration's caBundle.

Every flag can also be set by environment variable FSM_<FLAG>, e.g.
FSM_MESH_NAME=fsm.

Version: ` + version.Get().String(),
		Version:       version.Get().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if slices.Contains(noOptions, cmd.Name()) || (cmd.HasParent() && cmd.Parent().Name() == "completion") {
				return nil
			}
			if err := applyEnv(cmd.Flags()); err != nil {
				return err
			}
			// local is a demonstration: keep its output readable.
			if cmd.Name() == "local" && !cmd.Flags().Changed("log-level") {
				o.logLevel = "warn"
			}
			if !slices.Contains(fromDeployment, commandKey(cmd)) {
				if err := o.validate(); err != nil {
					return err
				}
			}
			ctrl.SetLogger(newLogger(o.logLevel))
			return nil
		},
	}
	root.SetVersionTemplate("fsm-webhooks {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })
	logFlags.add(o, root.PersistentFlags())
	root.AddCommand(newServeCommand(o), newLocalCommand(o), newCertsCommand(o), newUninstallHookCommand(o), newInstallCRDsCommand(o), newVersionCommand())
	scopeFlags(root, o)
	// cobra's completion command, added now rather than by Execute, so it
	// is a group like certs: cobra's own showed its help and exited 0 for
	// `completion bsh`, and a script redirecting that output installed help
	// text as the completion script. cobra's shell commands keep the writer
	// the root has when they are made: one that writes to the root's
	// writer of the moment, so a later SetOut (tests) still applies.
	root.SetOut(outOf{root})
	root.InitDefaultCompletionCmd()
	root.SetOut(nil)
	for _, c := range root.Commands() {
		if !c.Runnable() {
			asGroup(c)
		}
		if c.Name() == "completion" {
			c.Args = shellArgs
			for _, shell := range c.Commands() {
				shell.Args = noArgs
			}
		}
	}
	asGroup(root)
	return root
}

// outOf writes to c's output writer at the time of the write.
type outOf struct{ c *cobra.Command }

func (o outOf) Write(p []byte) (int, error) { return o.c.OutOrStdout().Write(p) }

// shellArgs refuses an unknown shell given to completion (exit 2), naming it
// and the shells there are.
func shellArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	var shells []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			shells = append(shells, c.Name())
		}
	}
	return usageErrorf("unknown shell %q for %q: want %s", args[0], cmd.CommandPath(), orList(shells))
}

// orList joins names as "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// asGroup makes c, a command that only groups others, refuse an unknown
// subcommand with a usage error naming it (exit 2) and show its help when
// given alone. cobra shows a group's help and returns no error for
// `certs rotate-roots`, so a mistyped command in a runbook exited 0 as if it
// had run, and an unknown top-level command exited 1.
func asGroup(c *cobra.Command) {
	c.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		if cmd.SuggestionsMinimumDistance <= 0 {
			cmd.SuggestionsMinimumDistance = 2 // cobra's own default, set only for the root
		}
		return usageErrorf("%s", unknownCommand(cmd.CommandPath(), args[0], cmd.SuggestionsFor(args[0])))
	}
	c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
}

// unknownCommand is the one-line refusal of name under the group path.
func unknownCommand(path, name string, suggestions []string) string {
	msg := fmt.Sprintf("unknown command %q for %q", name, path)
	if len(suggestions) > 0 {
		msg += "; did you mean " + strings.Join(suggestions, " or ") + "?"
	}
	return msg
}

// scopeFlags gives every runnable command its flagScopes groups. A runnable
// command without an entry is a programming error caught by the tests.
func scopeFlags(root *cobra.Command, o *options) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if c == root || !c.Runnable() || slices.Contains(noOptions, c.Name()) {
			return
		}
		groups, ok := flagScopes[commandKey(c)]
		if !ok {
			panic(fmt.Sprintf("fsm-webhooks: command %q has no flag scope", commandKey(c)))
		}
		for _, g := range groups {
			g.add(o, c.Flags())
		}
	}
	walk(root)
}

// commandKey is the command path without the binary's name ("certs status").
func commandKey(c *cobra.Command) string {
	return strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ")
}

// newLogger builds the structured logger (zap behind logr) on stderr.
func newLogger(level string) logr.Logger { return newLoggerTo(os.Stderr, level) }

// newLoggerTo is newLogger writing to w. Stack traces only for panics:
// controller-runtime's production default adds one to every error line,
// and an error logged for a failed reconcile (each retry while the
// apiserver is out) then carried the stack of the controller's own retry
// loop, tens of lines that say nothing the wrapped error does not.
func newLoggerTo(w io.Writer, level string) logr.Logger {
	lvl := map[string]zapcore.Level{
		"debug": zapcore.DebugLevel,
		"info":  zapcore.InfoLevel,
		"warn":  zapcore.WarnLevel,
		"error": zapcore.ErrorLevel,
	}[level]
	return zap.New(zap.Level(lvl), zap.UseDevMode(false), zap.WriteTo(w), zap.StacktraceLevel(zapcore.DPanicLevel))
}
