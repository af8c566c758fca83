package sqlite_test

import (
	"testing"

	"github.com/downshift-dev/downshift/internal/store/storetest"
)

func TestTuneConformance(t *testing.T) {
	storetest.RunTune(t, func(t *testing.T) storetest.TuneJobStore { return open(t) })
}
