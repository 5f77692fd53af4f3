package backendtest_test

import (
	"testing"

	"github.com/volcanion/tracking/shared/storage/backendtest"
)

// Cassandra keyspaces are pooled across the package's tests.
func TestMain(m *testing.M) { backendtest.Main(m) }
