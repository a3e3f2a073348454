package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"maps"
	"math/big"
	"strings"
	"testing"
	"time"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// fsmArgs are the arguments of fsm-injector's container in FSM v1.5.1's
// install (../shared/fsm-reference/fsm-install-v1.5.1.yaml).
var fsmArgs = []string{
	"--verbosity", "info", "--fsm-namespace", "fsm-system", "--fsm-version", "v1.5.1", "--mesh-name", "fsm",
	"--webhook-config-name", "fsm-webhook-fsm", "--webhook-timeout", "20", "--ca-bundle-secret-name", "fsm-ca-bundle",
	"--certificate-manager", "tresor", "--trust-domain", "cluster.local", "--enable-mesh-root-certificate=false",
	"--cert-manager-issuer-name", "fsm-ca", "--cert-manager-issuer-kind", "Issuer", "--cert-manager-issuer-group", "cert-manager.io",
	"--enable-reconciler=false", "--fsm-container-pull-policy=IfNotPresent",
}

func TestParseFlags(t *testing.T) {
	with := func(extra ...string) []string { return append(append([]string(nil), fsmArgs...), extra...) }
	for _, tc := range []struct {
		name    string
		args    []string
		want    options
		wantErr string
	}{
		{"FSM's Deployment", fsmArgs, options{namespace: "fsm-system", meshName: "fsm", version: "v1.5.1", configName: "fsm-webhook-fsm", caSecret: "fsm-ca-bundle", certManager: "tresor", timeout: 20}, ""},
		{"vault", with("--certificate-manager", "vault"), options{}, `--certificate-manager "vault"`},
		{"no mesh name", with("--mesh-name", ""), options{}, "--mesh-name is required"},
		{"timeout out of bounds", with("--webhook-timeout", "31"), options{}, "--webhook-timeout 31"},
		{"unknown flag", with("--no-such-flag"), options{}, "no-such-flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFlags(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseFlags = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestRespond(t *testing.T) {
	pod := func(ann map[string]string) runtime.RawExtension {
		b, err := json.Marshal(&corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{GenerateName: "p-", Annotations: ann},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return runtime.RawExtension{Raw: b}
	}
	for _, tc := range []struct {
		name    string
		kind    string
		object  runtime.RawExtension
		wantAnn map[string]string // nil: no patch
	}{
		{"pod without annotations", "Pod", pod(nil), map[string]string{ServedBy: "true"}},
		{"pod's annotations kept", "Pod", pod(map[string]string{"flomesh.io/sidecar-injection": "enabled"}),
			map[string]string{"flomesh.io/sidecar-injection": "enabled", ServedBy: "true"}},
		{"a VirtualMachine is allowed unchanged", "VirtualMachine", runtime.RawExtension{Raw: []byte(`{"kind":"VirtualMachine"}`)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &admissionv1.AdmissionRequest{UID: "u1", Kind: metav1.GroupVersionKind{Kind: tc.kind}, Object: tc.object}
			resp, err := respond(req)
			if err != nil {
				t.Fatal(err)
			}
			if !resp.Allowed || resp.UID != "u1" {
				t.Fatalf("response %+v: want allowed, UID u1", resp)
			}
			if tc.wantAnn == nil {
				if resp.Patch != nil {
					t.Fatalf("patch %s, want none", resp.Patch)
				}
				return
			}
			p, err := jsonpatchapply.DecodePatch(resp.Patch)
			if err != nil {
				t.Fatal(err)
			}
			out, err := p.Apply(tc.object.Raw)
			if err != nil {
				t.Fatalf("applying %s: %v", resp.Patch, err)
			}
			var got corev1.Pod
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got.Annotations, tc.wantAnn) || len(got.Spec.Containers) != 1 {
				t.Errorf("patched pod annotations %v, containers %d; want %v and the app only (patch %s)", got.Annotations, len(got.Spec.Containers), tc.wantAnn, resp.Patch)
			}
		})
	}
}

func TestIssueServingChainsToRoot(t *testing.T) {
	root := testRoot(t)
	cert, err := issueServing(root, "fsm-injector.fsm-system.svc")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root.cert)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "fsm-injector.fsm-system.svc", Roots: pool}); err != nil {
		t.Errorf("serving certificate does not verify for the Service's name against the root: %v", err)
	}
}

func TestParseRoot(t *testing.T) {
	good := testRootData(t)
	for _, tc := range []struct {
		name    string
		mutate  func(map[string][]byte)
		wantErr string
	}{
		{"FSM's layout", func(map[string][]byte) {}, ""},
		{"no private.key", func(d map[string][]byte) { delete(d, "private.key") }, `no key "private.key"`},
		{"PKCS#1 key", func(d map[string][]byte) {
			d["private.key"] = []byte(strings.Replace(string(d["private.key"]), "PRIVATE KEY", "RSA PRIVATE KEY", 2))
		}, `type "PRIVATE KEY"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := maps.Clone(good)
			tc.mutate(d)
			_, err := parseRoot(d)
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("parseRoot: %v, want error %q", err, tc.wantErr)
			}
		})
	}
}

// testRootData is fsm-ca-bundle's data as FSM's tresor writes it.
func testRootData(t *testing.T) map[string][]byte {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fsm-ca.flomesh.io"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"ca.crt":      pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"private.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}),
	}
}

func testRoot(t *testing.T) meshRoot {
	t.Helper()
	r, err := parseRoot(testRootData(t))
	if err != nil {
		t.Fatal(err)
	}
	return r
}
