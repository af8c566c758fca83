package sqlite_test

import (
	"testing"

	"github.com/downshift-dev/downshift/internal/store/storetest"
)

func TestModelsConformance(t *testing.T) {
	storetest.RunModels(t, func(t *testing.T) storetest.ModelStore { return open(t) })
}

func TestEvalsConformance(t *testing.T) {
	storetest.RunEvals(t, func(t *testing.T) storetest.EvalStore { return open(t) })
}
