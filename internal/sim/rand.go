package sim

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
)

// lockedRand is a seeded source shared by concurrent requests.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newLockedRand(seed uint64) *lockedRand {
	return &lockedRand{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Float64 returns a number in [0, 1).
func (l *lockedRand) Float64() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Float64()
}

// IntN returns a number in [0, n).
func (l *lockedRand) IntN(n int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.IntN(n)
}

// Uint64 returns a random number.
func (l *lockedRand) Uint64() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Uint64()
}

// requestRand returns a source for one request's invented answer, seeded by the
// server seed and the conversation, so that the same request gets the same answer
// whatever else runs at the same time.
func requestRand(seed uint64, k key) *rand.Rand {
	return rand.New(rand.NewPCG(seed, binary.LittleEndian.Uint64(k[:8])))
}
