package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/poll"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/validator"
)

// TestServeWithoutMeshConfigCRD: `serve` (all three webhooks) on an
// apiserver without the MeshConfig CRD (deleted by hand or by another
// release's uninstall, or an install whose CRD apply lags). It used to exit
// at once ("informer for v1alpha3.MeshConfig: no matches for kind"), so its
// pod crash-looped and, the injector's failurePolicy being Fail, every pod
// create in a meshed namespace was refused until the CRD came back. Now:
// the injector injects with the built-in defaults and is Ready, the
// validator answers, /readyz/converter names the missing CRD; once the CRD
// is installed the converter publishes its stanza and the injector applies
// the MeshConfig, without a restart; the CRD deleted under a running serve
// brings the defaults back and serve keeps serving; installed again, it
// recovers again.
//
// The only test here serving the injector in-process: serve registers its
// controllers under fixed names, which controller-runtime allows once per
// process (so not with -count above 1).
func TestServeWithoutMeshConfigCRD(t *testing.T) {
	const ns, appNS = "fsm-system", "app"
	env := testenv.Start(t, testenv.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Before serve starts: its first request creates the CA Secret there,
	// and a namespace not found ends it.
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	o, done := serveHooks(ctx, t, env.Config, ns, allHooks, func(o *options, _ *serveFlags) {
		o.keyPoolSize = 0
		o.caKeyAlgorithm = "ecdsa-p256"
		o.rootAutoRotateBefore = 0
		o.healthProbeAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	})
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS,
		Labels:      map[string]string{fsmnames.MonitoredByLabel: o.meshName},
		Annotations: map[string]string{injector.SidecarInjectionAnnotation: "enabled"}}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	running := func() error {
		select {
		case err := <-done:
			t.Fatalf("serve stopped: %v", err)
		default:
		}
		return nil
	}
	// readyz is /readyz/<name>'s status and body.
	readyz := func(name string) (int, string) {
		resp, err := http.Get("http://" + o.healthProbeAddr + "/readyz/" + name)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// review posts an AdmissionReview of obj to a webhook of serve.
	review := func(port int, path string, obj runtime.Object, gvr metav1.GroupVersionResource) (*admissionv1.AdmissionResponse, error) {
		raw, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		acc := obj.(client.Object)
		gvk := obj.GetObjectKind().GroupVersionKind()
		body, err := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID:  types.UID("u-" + acc.GetName()),
				Kind: metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind}, Resource: gvr,
				Namespace: acc.GetNamespace(), Name: acc.GetName(), Operation: admissionv1.Create,
				Object: runtime.RawExtension{Raw: raw},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Post(fmt.Sprintf("https://127.0.0.1:%d%s", port, path), "application/json", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var rv admissionv1.AdmissionReview
		if err := json.Unmarshal(b, &rv); err != nil || rv.Response == nil {
			return nil, fmt.Errorf("HTTP %d %s: %v", resp.StatusCode, b, err)
		}
		return rv.Response, nil
	}
	pods := 0
	// injectsWith: a pod create in the meshed namespace is admitted with a
	// sidecar of image.
	injectsWith := func(image string) func() error {
		return func() error {
			running()
			pods++
			pod := &corev1.Pod{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
				ObjectMeta: metav1.ObjectMeta{Name: "web-" + strconv.Itoa(pods), Namespace: appNS},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
			}
			r, err := review(o.injectorPort, fsmnames.InjectorPath, pod, metav1.GroupVersionResource{Version: "v1", Resource: "pods"})
			switch {
			case err != nil:
				return err
			case !r.Allowed:
				return fmt.Errorf("pod create refused: %+v", r.Result)
			case !bytes.Contains(r.Patch, []byte(`"image":"`+image+`"`)):
				return fmt.Errorf("pod admitted without a sidecar of image %s: patch %s", image, r.Patch)
			}
			return nil
		}
	}
	isReady := func(name string, want bool, says string) func() error {
		return func() error {
			running()
			code, body := readyz(name)
			if (code == http.StatusOK) != want || !strings.Contains(body, says) {
				return fmt.Errorf("/readyz/%s: %d %s", name, code, body)
			}
			return nil
		}
	}
	// validatesPlugin: another kind the validator checks, reading the
	// MeshConfig's feature flags, is answered, not refused with an error.
	plugin := &unstructured.Unstructured{}
	plugin.SetAPIVersion("plugin.flomesh.io/v1alpha1")
	plugin.SetKind("Plugin")
	plugin.SetNamespace(appNS)
	plugin.SetName("p1")
	_ = unstructured.SetNestedField(plugin.Object, "x", "spec", "script")
	validatesPlugin := func() error {
		running()
		r, err := review(o.validatorPort, fsmnames.ValidatorPath, plugin,
			metav1.GroupVersionResource{Group: "plugin.flomesh.io", Version: "v1alpha1", Resource: "plugins"})
		if err != nil {
			return err
		}
		if r.Result != nil && r.Result.Code >= 500 {
			return fmt.Errorf("server error: %+v", r.Result)
		}
		return nil
	}
	noCRD := func(when string) {
		t.Helper()
		poll.Until(t, 3*time.Minute, 300*time.Millisecond, when+": the injector injects with the built-in defaults", injectsWith(o.sidecarImage))
		poll.Until(t, 3*time.Minute, 300*time.Millisecond, when+": /readyz/injector passes", isReady(hookInjector, true, ""))
		poll.Until(t, 3*time.Minute, 300*time.Millisecond, when+": /readyz/converter names the missing CRD",
			isReady(hookConverter, false, fsmnames.MeshConfigCRDName+" not found"))
		poll.Until(t, 3*time.Minute, 300*time.Millisecond, when+": the validator answers a Plugin", validatesPlugin)
	}
	const mcImage = "example.com/flomesh/pipy:from-meshconfig"
	withCRD := func(when string) {
		t.Helper()
		if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{Paths: []string{testenv.MeshConfigCRDs()}, ErrorIfPathMissing: true}); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, 3*time.Minute, 300*time.Millisecond, when+": /readyz/converter passes", isReady(hookConverter, true, ""))
		mc, err := validator.BaseMeshConfig(ns, fsmnames.MeshConfigName)
		if err != nil {
			t.Fatal(err)
		}
		if err := unstructured.SetNestedField(mc.Object, mcImage, "spec", "sidecar", "sidecarImage"); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, 3*time.Minute, time.Second, when+": MeshConfig created", func() error {
			running()
			err := env.Client.Create(ctx, mc.DeepCopy())
			if apierrors.IsAlreadyExists(err) {
				return nil
			}
			return err
		})
		poll.Until(t, 3*time.Minute, 300*time.Millisecond, when+": the injector applies the MeshConfig", injectsWith(mcImage))
		poll.Until(t, 3*time.Minute, 300*time.Millisecond, when+": the validator answers a Plugin", validatesPlugin)
	}

	noCRD("started without the CRD")
	withCRD("CRD installed")

	crd := &apiextv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: fsmnames.MeshConfigCRDName}}
	if err := env.Client.Delete(ctx, crd); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 3*time.Minute, 300*time.Millisecond, "CRD deleted", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(crd), crd); !apierrors.IsNotFound(err) {
			return errors.Join(errors.New("still there"), err)
		}
		return nil
	})
	noCRD("CRD deleted")
	withCRD("CRD installed again")
}
