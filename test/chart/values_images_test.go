package chart_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// TestImagesPerImage: fsm.image.* names each image as FSM's chart does
// (registry, per-image name and digest; fsm.image.tag is FSM's images' tag),
// injected pods get FSM v1.5.1's published images by default, never the
// chart's appVersion, and only fsm.webhooks.imageTag moves our own tag.
func TestImagesPerImage(t *testing.T) {
	ch, err := charttest.Load()
	if err != nil {
		t.Fatal(err)
	}
	app := ch.Metadata.AppVersion
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name   string
		values string
		// ours is the servers' image (and the uninstall hook's); the rest
		// are the flags naming what the injector puts into pods.
		ours, initImage, healthcheck, sidecar string
	}{
		{"defaults: FSM v1.5.1's published images", ``,
			"flomesh/fsm-webhooks:" + app, "flomesh/fsm-sidecar-init:1.5.1", "flomesh/fsm-healthcheck:1.5.1", "flomesh/pipy:1.5.12"},
		{"FSM's image block as its values file has it", `fsm: {image: {registry: flomesh, pullPolicy: IfNotPresent, tag: "1.5.1"}}`,
			"flomesh/fsm-webhooks:" + app, "flomesh/fsm-sidecar-init:1.5.1", "flomesh/fsm-healthcheck:1.5.1", "flomesh/pipy:1.5.12"},
		{"a mirror registry moves every FSM image and ours, not Pipy's", `fsm: {image: {registry: mirror.example.com/flomesh}}`,
			"mirror.example.com/flomesh/fsm-webhooks:" + app, "mirror.example.com/flomesh/fsm-sidecar-init:1.5.1",
			"mirror.example.com/flomesh/fsm-healthcheck:1.5.1", "flomesh/pipy:1.5.12"},
		{"fsm.image.tag moves FSM's images only", `fsm: {image: {tag: "1.5.0"}}`,
			"flomesh/fsm-webhooks:" + app, "flomesh/fsm-sidecar-init:1.5.0", "flomesh/fsm-healthcheck:1.5.0", "flomesh/pipy:1.5.12"},
		{"fsm.webhooks.imageTag moves ours only", `fsm: {webhooks: {imageTag: dev-1}}`,
			"flomesh/fsm-webhooks:dev-1", "flomesh/fsm-sidecar-init:1.5.1", "flomesh/fsm-healthcheck:1.5.1", "flomesh/pipy:1.5.12"},
		{"per-image names", `fsm: {image: {name: {fsmWebhooks: team/hooks, fsmSidecarInit: team/init, fsmHealthcheck: team/hc}}}`,
			"flomesh/team/hooks:" + app, "flomesh/team/init:1.5.1", "flomesh/team/hc:1.5.1", "flomesh/pipy:1.5.12"},
		{"a digest pins its image only", `fsm: {image: {digest: {fsmHealthcheck: "` + digest + `"}}}`,
			"flomesh/fsm-webhooks:" + app, "flomesh/fsm-sidecar-init:1.5.1", "flomesh/fsm-healthcheck@" + digest, "flomesh/pipy:1.5.12"},
		{"our digest", `fsm: {image: {digest: {fsmWebhooks: "` + digest + `"}}}`,
			"flomesh/fsm-webhooks@" + digest, "flomesh/fsm-sidecar-init:1.5.1", "flomesh/fsm-healthcheck:1.5.1", "flomesh/pipy:1.5.12"},
		{"Pipy from fsm.sidecar.image", `fsm: {sidecar: {image: {registry: mirror.example.com, name: pipy-nightly, tag: 1.6.0}}}`,
			"flomesh/fsm-webhooks:" + app, "flomesh/fsm-sidecar-init:1.5.1", "flomesh/fsm-healthcheck:1.5.1", "mirror.example.com/pipy-nightly:1.6.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, tc.values)
			dep := mustFind(t, r, "Deployment", "fsm-webhooks")
			if got := container(t, dep)["image"]; got != tc.ours {
				t.Errorf("Deployment image %v, want %s", got, tc.ours)
			}
			if got := container(t, mustFind(t, r, "Job", "fsm-webhooks-uninstall"))["image"]; got != tc.ours {
				t.Errorf("uninstall hook image %v, want %s", got, tc.ours)
			}
			a := args(t, dep)
			for _, want := range []string{
				"--init-container-image=" + tc.initImage,
				"--healthcheck-container-image=" + tc.healthcheck,
				"--sidecar-image=" + tc.sidecar,
			} {
				if !slices.Contains(a, want) {
					t.Errorf("args lack %s:\n%s", want, strings.Join(a, "\n"))
				}
			}
			for _, f := range a {
				if strings.HasPrefix(f, "--init-container-image=") || strings.HasPrefix(f, "--healthcheck-container-image=") {
					if strings.HasSuffix(f, ":"+app) {
						t.Errorf("%s: an FSM image with the chart's appVersion", f)
					}
				}
			}
		})
	}
}
