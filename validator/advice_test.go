package validator

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// unsafeAdvice matches advice to delete what the mesh cannot lose while its
// servers run: the fsm namespace (it holds the mesh CA Secret, and the
// cluster-scoped webhook configurations outlive it, failing every call),
// the CA Secret, or a webhook configuration (issue 18 item 8). Saying that
// something is being deleted is fine; telling the user to delete it is not.
var unsafeAdvice = []*regexp.Regexp{
	regexp.MustCompile(`(?i)\b(delete|remove)\s+(the\s+)?(\S+\s+)?(namespace|ns)\b`),
	regexp.MustCompile(`(?i)\bkubectl\s+delete\s+(ns|namespaces?|secrets?|(validating|mutating)webhookconfigurations?)\b`),
	regexp.MustCompile(`(?i)\b(delete|remove)\s+(the\s+)?(\S+\s+)?(ca\s+)?(secret|ca\s+bundle)\b`),
	regexp.MustCompile(`(?i)fsm-ca-bundle`),
	regexp.MustCompile(`(?i)\b(delete|remove)\s+(the\s+)?(\S+\s+)?((validating|mutating)?\s*webhook\s*configurations?|(validating|mutating)webhookconfigurations?)\b`),
}

func adviceProblem(text string) string {
	for _, re := range unsafeAdvice {
		if m := re.FindString(text); m != "" {
			return m
		}
	}
	return ""
}

// TestNoUnsafeAdvice: no text the validator can produce (every string
// constant in its non-test sources, which holds every denial and warning
// format, and the MeshConfig DELETE denial as served) advises an unsafe
// deletion. The first table proves the detector catches the advice it must.
func TestNoUnsafeAdvice(t *testing.T) {
	for _, c := range []struct {
		text string
		bad  bool
	}{
		{`to remove the mesh, uninstall it (helm uninstall <release> --namespace fsm-system) or delete namespace fsm-system`, true},
		{`or delete the fsm-system namespace`, true},
		{`run kubectl delete ns fsm-system`, true},
		{`kubectl -n fsm-system delete secret fsm-ca-bundle`, true},
		{`delete the CA secret and restart`, true},
		{`kubectl delete validatingwebhookconfiguration fsm-validator-mesh-fsm`, true},
		{`remove the webhook configuration fsm-webhook-fsm first`, true},
		{`delete the ValidatingWebhookConfiguration fsm-validator-mesh-fsm`, true},
		{`namespace fsm-system is being deleted`, false},
		{`namespace fsm-system is gone`, false},
		{`'source.namespace' not specified for source kind Service`, false},
		{`MeshConfig fsm-system/fsm-mesh-config cannot be deleted while the mesh is installed; to remove the mesh, uninstall it (helm uninstall <release> --namespace fsm-system)`, false},
	} {
		if got := adviceProblem(c.text) != ""; got != c.bad {
			t.Errorf("flagged(%q) = %v, want %v", c.text, got, c.bad)
		}
	}

	texts := sourceStrings(t)
	if len(texts) < 100 {
		t.Fatalf("read %d strings from the validator's sources; the walk is broken", len(texts))
	}
	h := NewHandler(Options{Reader: fake.NewClientBuilder().WithObjects(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: DefaultFSMNamespace}}).Build()})
	resp := h.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		Kind: metav1.GroupVersionKind{Group: fsmnames.ConfigGroup, Version: "v1alpha3", Kind: "MeshConfig"}, Operation: admissionv1.Delete,
		Namespace: DefaultFSMNamespace, Name: DefaultMeshConfigName,
	}})
	if resp.Allowed || resp.Result == nil {
		t.Fatalf("deleting the mesh's MeshConfig allowed: %+v", resp)
	}
	texts["served MeshConfig DELETE denial"] = resp.Result.Message
	for where, text := range texts {
		if m := adviceProblem(text); m != "" {
			t.Errorf("%s: %q advises an unsafe deletion (%q)", where, text, m)
		}
	}
}

// sourceStrings returns every string constant of the validator's non-test
// Go files, adjacent literals joined by + folded into one, keyed by position.
func sourceStrings(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			e, ok := n.(ast.Expr)
			if !ok {
				return true
			}
			if s, ok := foldString(e); ok {
				out[fset.Position(e.Pos()).String()] = s
				return false
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// foldString evaluates a string literal or a + of them.
func foldString(e ast.Expr) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.ParenExpr:
		return foldString(e.X)
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		x, ok := foldString(e.X)
		if !ok {
			return "", false
		}
		y, ok := foldString(e.Y)
		return x + y, ok
	}
	return "", false
}
