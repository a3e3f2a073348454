package bench

import (
	"testing"

	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// Benchmarks run with controller-runtime's logging off.
func TestMain(m *testing.M) { testenv.Main(m) }
