package cassandrastore

import (
	"testing"

	"github.com/volcanion/tracking/shared/storage"
)

// OpenTestStore opens a store on a pooled keyspace of its own, for the
// package's external tests (the conformance suite).
func OpenTestStore(t *testing.T) storage.Store { return openStore(t) }
