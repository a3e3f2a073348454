package chart_test

import (
	"strings"
	"testing"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// Helm's null ("drop this default") at any key of values.yaml either renders
// or is refused by the schema naming the key: never a template error, which
// names a template line instead of the value to fix.
func TestNullValueRendersOrSchemaRefuses(t *testing.T) {
	for _, p := range valuesPaths(t) {
		t.Run(strings.Join(p, "."), func(t *testing.T) {
			t.Parallel()
			_, err := charttest.Render(ns, nullAt(p))
			if err == nil {
				return
			}
			parent := ""
			if len(p) > 1 {
				parent = "/" + strings.Join(p[:len(p)-1], "/")
			}
			want := "missing property '" + p[len(p)-1] + "'"
			if !strings.Contains(err.Error(), "values don't meet the specifications of the schema") || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "'"+parent) {
				t.Errorf("null %s: not the schema's refusal naming it:\n%v", strings.Join(p, "."), err)
			}
		})
	}
}
