package version

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// buildInfo is the conventional constant-1 gauge that carries the build's
// identity as labels, so dashboards and alerts can join on it.
var buildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "fsm_webhooks_build_info",
	Help: "Always 1; labels identify the running build (version, commit, go_version).",
}, []string{"version", "commit", "go_version"})

func init() {
	i := Get()
	buildInfo.WithLabelValues(i.Version, i.Commit, i.GoVersion).Set(1)
	metrics.Registry.MustRegister(buildInfo)
}
