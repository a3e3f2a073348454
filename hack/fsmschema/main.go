// Command fsmschema adds to charts/fsm-webhooks/values.schema.json every key
// of FSM's chart values (default /work/shared/fsm-reference/fsm-values-v1.5.1.yaml)
// the schema lacks, so an FSM values file installs unchanged while typos stay
// errors. It never changes existing nodes. test/chart's TestSchemaAcceptsFSMValues
// fails when the two disagree.
//
//	go run ./hack/fsmschema [-fsm-values FILE] [-schema FILE]
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

func main() {
	fsmValues := flag.String("fsm-values", "../shared/fsm-reference/fsm-values-v1.5.1.yaml", "FSM's chart values.yaml")
	schemaPath := flag.String("schema", "charts/fsm-webhooks/values.schema.json", "the chart's values.schema.json, rewritten in place")
	flag.Parse()
	if err := run(*fsmValues, *schemaPath); err != nil {
		fmt.Fprintln(os.Stderr, "fsmschema:", err)
		os.Exit(1)
	}
}

func run(fsmValuesPath, schemaPath string) error {
	raw, err := os.ReadFile(fsmValuesPath)
	if err != nil {
		return err
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		return fmt.Errorf("%s: %w", fsmValuesPath, err)
	}
	raw, err = os.ReadFile(schemaPath)
	if err != nil {
		return err
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		return fmt.Errorf("%s: %w", schemaPath, err)
	}
	added, err := charttest.MergeFSMKeys(schema, values)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(schema); err != nil {
		return err
	}
	if err := os.WriteFile(schemaPath, out.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Printf("%s: %d FSM key paths added\n", schemaPath, len(added))
	return nil
}
