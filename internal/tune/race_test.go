//go:build race

package tune

// raceEnabled is true under the race detector, which makes tokenizing the whole
// tau-bench bundle take minutes; the tests then export part of it.
const raceEnabled = true
