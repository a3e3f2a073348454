package meshimages

import (
	"fmt"
	"strings"

	"github.com/distribution/reference"
)

// Environment variables that point the node suite at published images
// instead of the ones built here, where a registry is reachable (issue 16).
// Each names an image reference (a short Docker Hub name such as
// flomesh/pipy:1.5.12 is completed as Docker does); the harness pulls it
// with `ctr images pull` and tags it with the name the injected pods use.
const (
	EnvSidecarImage     = "FSM_WEBHOOKS_PIPY_IMAGE"
	EnvRepoImage        = "FSM_WEBHOOKS_PIPY_REPO_IMAGE"
	EnvInitImage        = "FSM_WEBHOOKS_INIT_IMAGE"
	EnvHealthcheckImage = "FSM_WEBHOOKS_HEALTHCHECK_IMAGE"
)

// overridable maps each variable to the image it replaces.
var overridable = []struct{ env, image string }{
	{EnvSidecarImage, SidecarImage},
	{EnvRepoImage, RepoImage},
	{EnvInitImage, InitImage},
	{EnvHealthcheckImage, HealthcheckImage},
}

// Published reads the override variables through getenv (os.Getenv in the
// suite) and returns the images to pull instead of building: the fully
// qualified name the pods' image resolves to (what containerd's CRI looks
// up) → the fully qualified reference to pull. An unset or blank variable
// keeps the local build. A reference that does not parse fails, naming the
// variable and its value; a digest is kept as given.
func Published(getenv func(string) string) (map[string]string, error) {
	pulls := map[string]string{}
	for _, o := range overridable {
		v := strings.TrimSpace(getenv(o.env))
		if v == "" {
			continue
		}
		ref, err := qualify(v)
		if err != nil {
			return nil, fmt.Errorf("meshimages: %s=%q: %w", o.env, v, err)
		}
		as, err := qualify(o.image)
		if err != nil {
			return nil, fmt.Errorf("meshimages: image name %q: %w", o.image, err)
		}
		pulls[as] = ref
	}
	return pulls, nil
}

// qualify completes a reference as Docker and containerd's CRI do
// (docker.io/library/, :latest), because `ctr images pull` takes only
// fully qualified references.
func qualify(s string) (string, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return "", err
	}
	return reference.TagNameOnly(named).String(), nil
}

// NeedsBuild says whether image (one of the names above) is still to be
// built locally, given Published's result.
func NeedsBuild(image string, pulls map[string]string) bool {
	q, err := qualify(image)
	if err != nil {
		return true
	}
	_, pulled := pulls[q]
	return !pulled
}

// NeedsPipy says whether Pipy must be compiled: the sidecar or the repo
// image is still built here.
func NeedsPipy(pulls map[string]string) bool {
	return NeedsBuild(SidecarImage, pulls) || NeedsBuild(RepoImage, pulls)
}
