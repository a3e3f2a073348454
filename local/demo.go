package local

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
)

// Demo says what the demonstration needs to know about the running mesh.
type Demo struct {
	Client       client.Client
	Out          io.Writer
	MeshName     string
	FSMNamespace string
	CASecret     string
	// InvalidMeshConfig is an object the validator must refuse.
	InvalidMeshConfig *unstructured.Unstructured
	// MeshConfig is a valid v1alpha3 object to write as v1alpha1.
	MeshConfig *unstructured.Unstructured
}

// demoNamespace holds what the demonstration creates.
const demoNamespace = "demo"

// PrepareNamespace creates (or keeps) a namespace monitored by the mesh with
// injection enabled.
func PrepareNamespace(ctx context.Context, c client.Client, name, mesh string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        name,
		Labels:      map[string]string{fsmnames.MonitoredByLabel: mesh},
		Annotations: map[string]string{injector.SidecarInjectionAnnotation: "enabled"},
	}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

// Run walks through what each webhook does, printing as it goes.
func (d *Demo) Run(ctx context.Context) error {
	for _, step := range []struct {
		title string
		run   func(context.Context) error
	}{
		{"injector: a pod in a monitored namespace gets the Pipy sidecar and its bootstrap Secret", d.inject},
		{"validator: a bad MeshConfig is refused with every problem named", d.reject},
		{"converter: a MeshConfig written as v1alpha1 is read back in every version", d.convert},
	} {
		fmt.Fprintf(d.Out, "\n==> %s\n", step.title)
		if err := step.run(ctx); err != nil {
			return fmt.Errorf("%s: %w", step.title, err)
		}
	}
	return nil
}

func (d *Demo) inject(ctx context.Context) error {
	if err := PrepareNamespace(ctx, d.Client, demoNamespace, d.MeshName); err != nil {
		return err
	}
	fmt.Fprintf(d.Out, "    kubectl create namespace %s; label %s=%s; annotate %s=enabled\n", demoNamespace, fsmnames.MonitoredByLabel, d.MeshName, injector.SidecarInjectionAnnotation)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Namespace: demoNamespace},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "web", Image: "nginx:1.27",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
				HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("http")},
			}},
		}}},
	}
	if err := d.Client.Create(ctx, pod); err != nil {
		return fmt.Errorf("creating a pod: %w", err)
	}
	fmt.Fprintf(d.Out, "    created pod %s/%s with one container \"web\"; the apiserver stored:\n", pod.Namespace, pod.Name)
	for _, line := range describeInjection(pod) {
		fmt.Fprintf(d.Out, "      %s\n", line)
	}
	uuid := pod.Labels[injector.ProxyUUIDLabel]
	if uuid == "" {
		return fmt.Errorf("pod %s was not injected", pod.Name)
	}
	sec := &corev1.Secret{}
	key := types.NamespacedName{Namespace: demoNamespace, Name: injector.BootstrapSecretName(uuid)}
	if err := d.Client.Get(ctx, key, sec); err != nil {
		return fmt.Errorf("reading the bootstrap Secret: %w", err)
	}
	leaf, err := firstCert(sec.Data["repo_cert.pem"])
	if err != nil {
		return fmt.Errorf("bootstrap Secret %s: %w", key, err)
	}
	ca := &corev1.Secret{}
	if err := d.Client.Get(ctx, types.NamespacedName{Namespace: d.FSMNamespace, Name: d.CASecret}, ca); err != nil {
		return fmt.Errorf("reading the mesh CA Secret: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca.Data["ca.crt"]) {
		return fmt.Errorf("mesh CA Secret %s/%s has no certificate in ca.crt", d.FSMNamespace, d.CASecret)
	}
	_, verr := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	verdict := "verifies against " + d.FSMNamespace + "/" + d.CASecret
	if verr != nil {
		verdict = "does NOT verify: " + verr.Error()
	}
	fmt.Fprintf(d.Out, "    Secret %s holds keys %s\n", key, strings.Join(slices.Sorted(maps.Keys(sec.Data)), ", "))
	fmt.Fprintf(d.Out, "      client cert CN=%s, valid until %s, %s\n", leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.DateOnly), verdict)
	fmt.Fprintf(d.Out, "    see it all: kubectl -n %s get pod %s -o yaml\n", demoNamespace, pod.Name)
	return verr
}

func (d *Demo) reject(ctx context.Context) error {
	bad := d.InvalidMeshConfig.DeepCopy()
	fmt.Fprintf(d.Out, "    kubectl apply a MeshConfig %s/%s with a bad log level, image, duration, fraction and overlapping CIDRs\n", bad.GetNamespace(), bad.GetName())
	err := d.Client.Create(ctx, bad)
	if err == nil {
		_ = d.Client.Delete(ctx, bad)
		return fmt.Errorf("the validator accepted an invalid MeshConfig")
	}
	fmt.Fprintf(d.Out, "    refused, every problem at once:\n")
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Details != nil && len(status.Status().Details.Causes) > 0 {
		for _, c := range status.Status().Details.Causes {
			fmt.Fprintf(d.Out, "      %s: %s\n", c.Field, c.Message)
		}
		return nil
	}
	fmt.Fprintf(d.Out, "      %v\n", err)
	return nil
}

func (d *Demo) convert(ctx context.Context) error {
	v1 := d.MeshConfig.DeepCopy()
	v1.SetName("converted-demo")
	v1.SetNamespace(demoNamespace)
	v1.SetAPIVersion(fsmnames.ConfigGroup + "/v1alpha1")
	// v1alpha1 holds sampledFraction as a number and knows none of the
	// v1alpha3-only objects; the converter fills them on the way up.
	spec, _, _ := unstructured.NestedMap(v1.Object, "spec")
	keep := map[string]bool{"sidecar": true, "traffic": true, "observability": true, "certificate": true,
		"featureFlags": true, "pluginChains": true, "repoServer": true, "clusterSet": true}
	for k := range spec {
		if !keep[k] {
			delete(spec, k)
		}
	}
	for _, k := range []string{"tlsMinProtocolVersion", "tlsMaxProtocolVersion", "cipherSuites", "ecdhCurves", "localProxyMode",
		"localDNSProxy", "compressConfig", "holdApplicationUntilProxyStarts", "gracefulExitUntilDownstreamEnds",
		"initResources", "healthcheckResources", "xnetDNSProxy"} {
		unstructured.RemoveNestedField(spec, "sidecar", k)
	}
	for _, k := range []string{"outboundIPRangeInclusionList", "networkInterfaceExclusionList", "serviceAccessNames"} {
		unstructured.RemoveNestedField(spec, "traffic", k)
	}
	for _, k := range []string{"enableTrafficWarmupPolicy", "enableSidecarPrettyConfig", "enableValidateGatewayListenerHostname",
		"enableValidateHTTPRouteHostnames", "enableValidateGRPCRouteHostnames", "enableValidateTLSRouteHostnames",
		"useEndpointSlicesForGateway", "dropRouteRuleIfNoAvailableBackends"} {
		unstructured.RemoveNestedField(spec, "featureFlags", k)
	}
	unstructured.RemoveNestedField(spec, "repoServer", "port")
	unstructured.RemoveNestedField(spec, "observability", "remoteLogging", "secretName")
	_ = unstructured.SetNestedField(spec, 0.25, "observability", "tracing", "sampledFraction")
	_ = unstructured.SetNestedField(spec, "fsm-demo-sidecar-class", "sidecar", "sidecarClass")
	if cs, ok, _ := unstructured.NestedMap(spec, "clusterSet"); ok {
		spec["clusterSet"] = map[string]any{"properties": cs["properties"]}
	}
	_ = unstructured.SetNestedMap(v1.Object, spec, "spec")
	if err := d.Client.Create(ctx, v1); err != nil {
		return fmt.Errorf("creating a v1alpha1 MeshConfig: %w", err)
	}
	fmt.Fprintf(d.Out, "    created %s/%s as config.flomesh.io/v1alpha1 with tracing.sampledFraction: 0.25 (a number) and sidecar.sidecarClass (gone in v1alpha3)\n", v1.GetNamespace(), v1.GetName())
	for _, version := range []string{"v1alpha1", "v1alpha2", "v1alpha3"} {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(schema.GroupVersionKind{Group: fsmnames.ConfigGroup, Version: version, Kind: "MeshConfig"})
		if err := d.Client.Get(ctx, client.ObjectKeyFromObject(v1), got); err != nil {
			return fmt.Errorf("reading it back as %s: %w", version, err)
		}
		frac, _, _ := unstructured.NestedFieldNoCopy(got.Object, "spec", "observability", "tracing", "sampledFraction")
		class, _, _ := unstructured.NestedString(got.Object, "spec", "sidecar", "sidecarClass")
		image, hasImage, _ := unstructured.NestedMap(got.Object, "spec", "image")
		line := fmt.Sprintf("    read as %s: sampledFraction=%s", version, render(frac))
		if class != "" {
			line += ", sidecarClass=" + class
		}
		if hasImage {
			line += fmt.Sprintf(", image.registry=%v (v1alpha3 default)", image["registry"])
		}
		fmt.Fprintln(d.Out, line)
	}
	fmt.Fprintf(d.Out, "    try: kubectl get meshconfigs.v1alpha2.config.flomesh.io -n %s converted-demo -o yaml\n", v1.GetNamespace())
	return nil
}

// describeInjection is what the injector did to pod, one line each: its
// proxy uuid and bootstrap Secret, then every container, marking the native
// sidecar and readiness probes the injector now routes through the proxy.
func describeInjection(pod *corev1.Pod) []string {
	id := pod.Labels[injector.ProxyUUIDLabel]
	if id == "" {
		return []string{"not injected (no " + injector.ProxyUUIDLabel + " label)"}
	}
	lines := []string{fmt.Sprintf("label %s=%s, bootstrap Secret %s", injector.ProxyUUIDLabel, id, injector.BootstrapSecretName(id))}
	list := func(kind string, cs []corev1.Container) {
		for _, c := range cs {
			extra := ""
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				extra = " (native sidecar)"
			}
			lines = append(lines, strings.TrimRight(fmt.Sprintf("%-15s %-16s %s%s", kind, c.Name, c.Image, extra), " "))
			if p := c.ReadinessProbe; p != nil && p.HTTPGet != nil {
				lines = append(lines, fmt.Sprintf("  readiness probe via the proxy: port %s path %s", p.HTTPGet.Port.String(), p.HTTPGet.Path))
			}
		}
	}
	list("init container", pod.Spec.InitContainers)
	list("container", pod.Spec.Containers)
	return lines
}

func render(v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSpace(string(b))
}

func firstCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}
