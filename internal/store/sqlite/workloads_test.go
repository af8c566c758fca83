package sqlite_test

import (
	"testing"

	"github.com/downshift-dev/downshift/internal/store"
	"github.com/downshift-dev/downshift/internal/store/storetest"
)

func TestWorkloadsConformance(t *testing.T) {
	storetest.RunWorkloads(t, func(t *testing.T) store.Store { return open(t) })
}
