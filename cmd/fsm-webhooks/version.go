package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/internal/version"
)

func newVersionCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and build date of this binary",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// version reads no shared options (it must answer whatever
			// they hold), but its own -o comes from FSM_OUTPUT like every
			// flag's value.
			if err := applyEnv(cmd.LocalNonPersistentFlags()); err != nil {
				return err
			}
			return writeVersion(cmd.OutOrStdout(), output, version.Get())
		},
	}
	addOutputFlag(cmd, &output, "text")
	return cmd
}

// writeVersion renders info as one line (text), JSON or YAML.
func writeVersion(w io.Writer, output string, info version.Info) error {
	switch output {
	case "text":
		_, err := fmt.Fprintf(w, "fsm-webhooks %s\n", info)
		return err
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	case "yaml":
		b, err := yaml.Marshal(info)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return usageErrorf("invalid value %q for --output: must be text, json or yaml", output)
}

// addOutputFlag is -o/--output with its completions; def is the
// human-readable format (table or text), the others are json and yaml.
func addOutputFlag(cmd *cobra.Command, output *string, def string) {
	cmd.Flags().StringVarP(output, "output", "o", def, "output format: "+def+", json or yaml")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{def, "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
}
