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
//
// Either way the client is not rate limited on this side unless the file
// says so: controller-runtime's config has no limit (the apiserver's
// priority and fairness applies), and one from a kubeconfig gets the same,
// not client-go's 5 requests/s, which held an uninstall-hook or a
// rotate-root run from an operator's machine to minutes per thousand
// Secrets. serve sets its own limits (--kube-api-qps and friends).
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
	if cfg.QPS == 0 {
		cfg.QPS = -1
	}
	return cfg, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
