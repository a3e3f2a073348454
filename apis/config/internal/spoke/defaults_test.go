package spoke

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
)

const crdPath = "../../../../charts/fsm-webhooks/crds/config.flomesh.io_meshconfigs.yaml"

// TestHubSpecDefaults: hubSpecDefaults holds exactly the defaults of the
// v1alpha3 spec schema the chart ships (generated from the markers), so a
// marker added or changed without it fails here.
func TestHubSpecDefaults(t *testing.T) {
	raw, err := os.ReadFile(filepath.FromSlash(crdPath))
	if err != nil {
		t.Fatal(err)
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Name   string `json:"name"`
				Schema struct {
					OpenAPIV3Schema schemaNode `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		t.Fatal(err)
	}
	var want any
	for _, v := range crd.Spec.Versions {
		if v.Name == "v1alpha3" {
			want = render(fromSchema(v.Schema.OpenAPIV3Schema.Properties["spec"]))
		}
	}
	if want == nil {
		t.Fatal("no v1alpha3 spec schema with defaults in " + crdPath)
	}
	got := render(hubSpecDefaults)
	w, _ := json.Marshal(want)
	g, _ := json.Marshal(got)
	if string(w) != string(g) {
		t.Errorf("hubSpecDefaults differ from the CRD's v1alpha3 spec defaults:\n got %s\nwant %s", g, w)
	}
}

type schemaNode struct {
	Default    any                   `json:"default"`
	Properties map[string]schemaNode `json:"properties"`
	Items      *schemaNode           `json:"items"`
}

// fromSchema keeps the nodes with a default at or below them.
func fromSchema(s schemaNode) *lossless.Defaults {
	d := &lossless.Defaults{Default: s.Default}
	for k, p := range s.Properties {
		if c := fromSchema(p); c != nil {
			if d.Properties == nil {
				d.Properties = map[string]*lossless.Defaults{}
			}
			d.Properties[k] = c
		}
	}
	if s.Items != nil {
		d.Items = fromSchema(*s.Items)
	}
	if d.Default == nil && d.Properties == nil && d.Items == nil {
		return nil
	}
	return d
}

// render makes a comparable JSON value of d (numbers compare as JSON).
func render(d *lossless.Defaults) any {
	if d == nil {
		return nil
	}
	out := map[string]any{}
	if d.Default != nil {
		out["default"] = d.Default
	}
	if len(d.Properties) > 0 {
		props := map[string]any{}
		for k, p := range d.Properties {
			props[k] = render(p)
		}
		out["properties"] = props
	}
	if d.Items != nil {
		out["items"] = render(d.Items)
	}
	return out
}

// TestRestoreHubDefaultsPartialSections: a section the annotation has gets
// the schema's defaults for the fields it lacks (nested objects by their
// own defaults), one it lacks gets the section default; a field the
// annotation sets, to null included, stays as set.
func TestRestoreHubDefaultsPartialSections(t *testing.T) {
	meta := &metav1.ObjectMeta{Annotations: map[string]string{lossless.AnnotationV1Alpha3Fields: `{` +
		`"ingress":{"type":"NodePort","tls":{"bind":444}},` +
		`"warmup":{"enable":null,"duration":""},` +
		`"clusterSet":{"uid":"u1"}}`}}
	var got HubOnly
	if err := RestoreHub(meta, &got, ptr.To(DefaultHubOnly())); err != nil {
		t.Fatal(err)
	}
	in := got.Ingress
	if in == nil || !in.Enabled || in.Type != "NodePort" || in.LogLevel != "info" || in.Namespaced {
		t.Errorf("ingress = %+v, want enabled, NodePort, logLevel info", in)
	}
	if in != nil && (in.HTTP == nil || *in.HTTP != v1alpha3.IngressHTTP{Enabled: true, Bind: 80, Listen: 8000, NodePort: 30508}) {
		t.Errorf("ingress.http = %+v, want the schema's object default", in.HTTP)
	}
	// tls is present: its fields get their own defaults (enabled false),
	// not the tls object default (enabled true).
	if in != nil && !apiequality.Semantic.DeepEqual(in.TLS, &v1alpha3.IngressTLS{Bind: 444, Listen: 8443, NodePort: 30607,
		SSLPassthrough: &v1alpha3.SSLPassthrough{UpstreamPort: 443}}) {
		t.Errorf("ingress.tls = %+v", in.TLS)
	}
	w := got.Warmup
	if w == nil || w.Enable != nil || w.Duration != "" || w.MinWeight == nil || *w.MinWeight != 10 || w.Aggression == nil || *w.Aggression != 1 {
		t.Errorf("warmup = %+v, want enable nil and duration \"\" as written, minWeight 10 and aggression 1 defaulted", w)
	}
	if c := got.ClusterSet; c == nil || c.UID != "u1" || c.Region != "default" || c.Zone != "default" || c.Group != "default" {
		t.Errorf("clusterSet = %+v", c)
	}
	if got.Image == nil || got.Image.Registry != v1alpha3.DefaultImageRegistry {
		t.Errorf("image (absent section) = %+v, want the section default", got.Image)
	}
}

// TestDefaultSidecarIsTheSchemaDefault: the sidecar fields a spoke object
// without the annotation gets in v1alpha3 are those the v1alpha3 schema
// gives a sidecar written without them, so converting up stores what a
// v1alpha3 write would (holdApplicationUntilProxyStarts true, not false).
func TestDefaultSidecarIsTheSchemaDefault(t *testing.T) {
	tree := map[string]any{"sidecar": map[string]any{}}
	hubSpecDefaults.Apply(tree)
	raw, err := json.Marshal(tree)
	if err != nil {
		t.Fatal(err)
	}
	var spec v1alpha3.MeshConfigSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	if got, want := SidecarOf(&spec.Sidecar), DefaultSidecar(); !apiequality.Semantic.DeepEqual(got, want) {
		t.Errorf("schema defaults give %+v, DefaultSidecar %+v", got, want)
	}
}
