package alerts_test

import (
	"os"
	"testing"

	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }
