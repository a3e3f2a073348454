package injector_test

import (
	"os"
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// TestMain sets controller-runtime's global logger once, to nothing: only
// its first SetLogger takes effect, so a test's own testr logger set there
// outlives that test, and anything logged through it afterwards (a later
// test, or the second round of -count=2) panics as a log after the test
// completed. Each test hands its testr logger to what it starts instead.
func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard())
	os.Exit(m.Run())
}
