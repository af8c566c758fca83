package redact

import "sync"

// spanCache remembers what was found in long texts. An agent's calls repeat most of
// their text: the system prompt is the same in every call of a workload, and call n of
// a conversation holds the n-1 turns before it. Scanning each long text once turns the
// cost of a conversation from quadratic in its length to linear.
//
// Keys are the texts themselves, compared in full, so a hit can never hand back another
// text's spans. Two generations bound the memory: when the current one holds half the
// budget it becomes the old one, and the old one is dropped; a hit in the old
// generation moves the entry back to the current one.
type spanCache struct {
	mu       sync.Mutex
	half     int
	cur, old map[cacheKey]cacheEntry
	curBytes int
}

// cacheMin is the shortest text worth remembering: below it, scanning is as cheap as
// hashing.
const cacheMin = 256

type cacheKind uint8

const (
	cacheText  cacheKind = iota // RedactText: key is the text
	cacheField                  // RedactCall: key is a field's JSON token
)

type cacheKey struct {
	kind cacheKind
	text string
}

type cacheEntry struct {
	text  string // cacheField: the token's text
	spans []span
	plan  *jsonPlan
}

func newSpanCache(budget int) *spanCache {
	return &spanCache{half: max(budget/2, 1), cur: map[cacheKey]cacheEntry{}}
}

// entryCost is what an entry is charged: its text, its spans and map overhead.
func entryCost(k cacheKey, e cacheEntry) int {
	n := len(k.text) + 64 + 32*len(e.spans)
	n += len(e.text) // counted even when it shares the key's memory: a bound, not a tally
	if e.plan != nil {
		n += e.plan.cost()
	}
	return n
}

func (c *spanCache) lookup(kind cacheKind, s string) (cacheEntry, bool) {
	if c == nil || len(s) < cacheMin {
		return cacheEntry{}, false
	}
	k := cacheKey{kind, s}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.cur[k]; ok {
		return e, true
	}
	if e, ok := c.old[k]; ok {
		delete(c.old, k)
		c.store(k, e)
		return e, true
	}
	return cacheEntry{}, false
}

func (c *spanCache) store(k cacheKey, e cacheEntry) {
	cost := entryCost(k, e)
	if cost > c.half {
		return
	}
	if c.curBytes+cost > c.half {
		c.old, c.cur, c.curBytes = c.cur, map[cacheKey]cacheEntry{}, 0
	}
	c.cur[k] = e
	c.curBytes += cost
}

func (c *spanCache) add(kind cacheKind, s string, e cacheEntry) {
	if c == nil || len(s) < cacheMin {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.store(cacheKey{kind, s}, e)
}

func (c *spanCache) get(kind cacheKind, s string) ([]span, bool) {
	e, ok := c.lookup(kind, s)
	return e.spans, ok
}

func (c *spanCache) put(kind cacheKind, s string, spans []span) {
	c.add(kind, s, cacheEntry{spans: spans})
}
