package status

import (
	"context"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// ServerLabels select the servers' Deployment as the chart labels it
// (fsm.webhooks.componentLabels); app.kubernetes.io/instance is the mesh.
var ServerLabels = map[string]string{"app": "fsm-webhooks", "app.kubernetes.io/component": "webhooks"}

// MeshLabel carries the mesh name on the servers' Deployment.
const MeshLabel = "app.kubernetes.io/instance"

// envPrefix is how the binary reads a flag from the environment (FSM_<FLAG>).
const envPrefix = "FSM_"

// FindDeployment returns the servers' Deployment: name in namespace when
// name is set; else the one labelled as the chart labels it, in namespace
// (every namespace when empty) and of meshName (any when empty). nil when
// there is none; an error naming them when several match.
func FindDeployment(ctx context.Context, cs kubernetes.Interface, namespace, name, meshName string) (*appsv1.Deployment, error) {
	if name != "" {
		if namespace == "" {
			return nil, fmt.Errorf("--deployment %q: --fsm-namespace must name its namespace", name)
		}
		d, err := cs.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("reading Deployment %s/%s: %w", namespace, name, err)
		}
		return d, nil
	}
	sel := labels.Set{}
	for k, v := range ServerLabels {
		sel[k] = v
	}
	if meshName != "" {
		sel[MeshLabel] = meshName
	}
	list, err := cs.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		// An operator whose rights are in the mesh's namespace only is
		// refused the cluster-wide search, and needs only to narrow it.
		if namespace == "" && apierrors.IsForbidden(err) {
			return nil, fmt.Errorf("listing Deployments labelled %s in %s: %w; give the servers' namespace with --fsm-namespace to search there only", sel, orAll(namespace), err)
		}
		return nil, fmt.Errorf("listing Deployments labelled %s in %s: %w", sel, orAll(namespace), err)
	}
	switch len(list.Items) {
	case 0:
		return nil, nil
	case 1:
		return &list.Items[0], nil
	}
	found := make([]string, 0, len(list.Items))
	for _, d := range list.Items {
		found = append(found, d.Namespace+"/"+d.Name)
	}
	slices.Sort(found)
	return nil, fmt.Errorf("%d fsm-webhooks Deployments labelled %s in %s (%s): choose one with --fsm-namespace, --mesh-name or --deployment",
		len(found), sel, orAll(namespace), strings.Join(found, ", "))
}

func orAll(namespace string) string {
	if namespace == "" {
		return "all namespaces"
	}
	return "namespace " + namespace
}

// DeploymentFlags is the configuration the servers run with, as their
// Deployment states it: the flags of the container running `serve`, from
// its args (--name=value, --name value, --name for true), then from env
// FSM_<FLAG> literal values for flags the args do not set, as the binary
// resolves them. Env from Secrets or ConfigMaps (valueFrom) is not read:
// it is left to the caller's defaults.
func DeploymentFlags(d *appsv1.Deployment) (map[string]string, error) {
	c := serveContainer(d.Spec.Template.Spec.Containers)
	if c == nil {
		return nil, fmt.Errorf("deployment %s/%s: no container runs `fsm-webhooks serve`", d.Namespace, d.Name)
	}
	flags := map[string]string{}
	args := append(slices.Clone(c.Command), c.Args...)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") || a == "--" {
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !hasValue {
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				value = args[i+1]
				i++
			} else {
				value = "true"
			}
		}
		flags[name] = value
	}
	for _, e := range c.Env {
		if !strings.HasPrefix(e.Name, envPrefix) || e.ValueFrom != nil {
			continue
		}
		name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(e.Name, envPrefix), "_", "-"))
		if _, set := flags[name]; !set {
			flags[name] = e.Value
		}
	}
	return flags, nil
}

// serveContainer is the container whose command or args run `serve`.
func serveContainer(cs []corev1.Container) *corev1.Container {
	for i := range cs {
		for _, a := range append(slices.Clone(cs[i].Command), cs[i].Args...) {
			if a == "serve" {
				return &cs[i]
			}
		}
	}
	return nil
}
