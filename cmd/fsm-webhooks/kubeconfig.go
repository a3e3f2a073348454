package main

import (
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
)

// loadRESTConfig is --kubeconfig and --context as kubectl reads them: the
// named file (else $KUBECONFIG, else ~/.kube/config) with the named context
// (else its current one). With neither flag, controller-runtime's order
// applies ($KUBECONFIG, else the in-cluster config, else ~/.kube/config):
// in a pod without $KUBECONFIG, the in-cluster config serve needs.
func loadRESTConfig(kubeconfig, kubeContext string) (*rest.Config, error) {
	if kubeconfig == "" && kubeContext == "" {
		cfg, err := ctrl.GetConfig()
		if err != nil {
			return nil, fmt.Errorf("no Kubernetes config (set --kubeconfig or run in a cluster): %w", err)
		}
		return cfg, nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: kubeContext}).ClientConfig()
	if err != nil {
		switch {
		case kubeContext != "":
			return nil, usageErrorf("invalid value %q for --context (kubeconfig %q): %v", kubeContext, orDefault(kubeconfig, "default"), err)
		default:
			return nil, usageErrorf("invalid value %q for --kubeconfig: %v", kubeconfig, err)
		}
	}
	return cfg, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
