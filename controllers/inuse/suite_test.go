package inuse_test

import (
	"os"
	"testing"

	"github.com/regwire/regwire/internal/test/envtest"
)

// env is the API server and the manager this package's envtest suite runs on.
var env *envtest.Environment

func TestMain(m *testing.M) { os.Exit(envtest.Run(m, &env)) }
