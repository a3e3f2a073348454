package bench

import (
	"os"
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

func TestMain(m *testing.M) {
	// Benchmarks run with logging off (controller-runtime otherwise warns,
	// with a stack trace, that no logger was set).
	ctrllog.SetLogger(logr.Discard())
	os.Exit(m.Run())
}
