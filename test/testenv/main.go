package testenv

import (
	"os"
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// Main runs a package's tests with controller-runtime's global logger set,
// once, to nothing: a TestMain's whole body. controller-runtime takes only
// the first SetLogger, so a test's own testr logger set there would outlive
// that test, and anything logged through it afterwards (a later test, the
// second round of -count=2) panics as a log after the test completed; left
// unset, controller-runtime warns with a stack trace. Tests hand their own
// loggers to what they start.
func Main(m *testing.M) {
	ctrllog.SetLogger(logr.Discard())
	os.Exit(m.Run())
}
