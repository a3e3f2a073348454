package injector

import "github.com/flomesh-io/fsm-webhooks/internal/warning"

// The admission warnings' names: each warning ends with its name as a docs
// tag ("[docs: proxy-uid]"), the heading of its section in README.md
// "Admission warnings", which holds the reasons a warning has no room for
// (internal/warning: the apiserver cuts long ones).
const (
	warnProxyUID          = "proxy-uid"
	warnPortCollision     = "port-collision"
	warnHealthPort        = "health-port"
	warnScrapeAnnotations = "scrape-annotations"
	warnLocalDNS          = "local-dns"
	warnProbePort         = "probe-port"
	warnProbeScheme       = "probe-scheme"
	warnNativeSidecars    = "native-sidecars"
	warnNeverCompletes    = "never-completes"
)

// docsTag ends a warning with the name of its docs section.
func docsTag(name string) string { return " [docs: " + name + "]" }

// fitWarning is msg with its docs tag, never over warning.MaxRunes.
func fitWarning(msg, name string) string { return warning.Fit(msg, docsTag(name)) }
