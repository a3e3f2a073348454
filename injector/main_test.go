package injector_test

import (
	"testing"

	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
