package workload

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
)

// Vector is a sparse feature vector: Val[i] is the weight of feature Idx[i]. Indexes
// are distinct; their order is the order features were first seen.
type Vector struct {
	Idx []uint32
	Val []float32
}

// Dot returns the inner product of two vectors.
func (v Vector) Dot(w Vector) float64 {
	if len(v.Idx) > len(w.Idx) {
		v, w = w, v
	}
	if len(v.Idx) == 0 {
		return 0
	}
	m := make(map[uint32]float32, len(v.Idx))
	for i, ix := range v.Idx {
		m[ix] = v.Val[i]
	}
	var s float64
	for i, ix := range w.Idx {
		s += float64(m[ix]) * float64(w.Val[i])
	}
	return s
}

// FeatureConfig says how requests become vectors. It travels in a Model, so that the
// features computed online are the ones the model was fitted on. The zero value is
// not usable; start from DefaultFeatureConfig.
type FeatureConfig struct {
	// DimBits: features are hashed into 1<<DimBits dimensions.
	DimBits int `json:"dim_bits"`
	// WordBytes and CharBytes: how many bytes of the last message feed word n-grams
	// (unigrams and bigrams) and character 4-grams.
	WordBytes int `json:"word_bytes"`
	CharBytes int `json:"char_bytes"`
	// TextWeight and StageWeight are the norms of the text block (TF-IDF of the
	// n-grams) and of the stage block (last role, last tool, turn and step counts)
	// before the whole vector is scaled to norm 1.
	TextWeight  float64 `json:"text_weight"`
	StageWeight float64 `json:"stage_weight"`
}

// DefaultFeatureConfig returns the configuration discover fits models with.
func DefaultFeatureConfig() FeatureConfig {
	return FeatureConfig{DimBits: 18, WordBytes: 1024, CharBytes: 256, TextWeight: 1, StageWeight: 0.6}
}

func (c FeatureConfig) validate() error {
	switch {
	case c.DimBits < 10 || c.DimBits > 24:
		return fmt.Errorf("workload: features: dim_bits %d is outside 10..24", c.DimBits)
	case c.WordBytes < 0 || c.CharBytes < 0 || c.WordBytes > MaxTextBytes || c.CharBytes > MaxTextBytes:
		return fmt.Errorf("workload: features: word_bytes and char_bytes must be within 0..%d", MaxTextBytes)
	case c.TextWeight < 0 || c.StageWeight < 0 || c.TextWeight+c.StageWeight == 0:
		return errors.New("workload: features: text_weight and stage_weight must be >= 0 and not both 0")
	}
	return nil
}

// IDF holds inverse document frequencies of text features, learned offline: Val[i] for
// feature Idx[i], Default for every feature not listed (rare or unseen ones).
type IDF struct {
	Docs    int       `json:"docs"`
	Default float32   `json:"default"`
	Idx     []uint32  `json:"idx"`
	Val     []float32 `json:"val"`
}

// FitIDF returns the IDF of features from their document frequencies over docs
// documents: ln((1+docs)/(1+df)) + 1, the smoothed form, listed for features seen in
// at least minDF documents.
func FitIDF(df map[uint32]int, docs, minDF int) IDF {
	idf := IDF{Docs: docs, Default: float32(math.Log(float64(1+docs)/1) + 1)}
	keys := make([]uint32, 0, len(df))
	for k, n := range df {
		if n >= minDF {
			keys = append(keys, k)
		}
	}
	sortUint32(keys)
	for _, k := range keys {
		idf.Idx = append(idf.Idx, k)
		idf.Val = append(idf.Val, float32(math.Log(float64(1+docs)/float64(1+df[k]))+1))
	}
	return idf
}

// Featurizer turns a Conversation into a request-side Vector: hashed TF-IDF of the
// last message's word unigrams and bigrams and character 4-grams (sublinear term
// frequency), plus one-hot stage features, each block scaled to its weight and the
// whole to norm 1. It is safe for concurrent use.
type Featurizer struct {
	cfg  FeatureConfig
	mask uint32
	// slots holds per dimension the IDF (and, for an Assigner, where the postings of
	// the dimension start), so one cache line serves both lookups.
	slots   []dimSlot
	scratch sync.Pool
}

type dimSlot struct {
	idf   float32
	start uint32 // postings of the dimension: post[start:slots[d+1].start]
}

// NewFeaturizer returns a Featurizer with the given configuration and IDF. A zero IDF
// weighs every text feature 1.
func NewFeaturizer(cfg FeatureConfig, idf IDF) (*Featurizer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if len(idf.Idx) != len(idf.Val) {
		return nil, errors.New("workload: idf: idx and val differ in length")
	}
	dim := 1 << cfg.DimBits
	f := &Featurizer{cfg: cfg, mask: uint32(dim - 1), slots: make([]dimSlot, dim+1)}
	def := idf.Default
	if def == 0 {
		def = 1
	}
	for i := range f.slots {
		f.slots[i].idf = def
	}
	for i, ix := range idf.Idx {
		if ix > f.mask {
			return nil, fmt.Errorf("workload: idf: index %d is outside %d dimensions", ix, dim)
		}
		f.slots[ix].idf = idf.Val[i]
	}
	f.scratch.New = func() any { return newCounter() }
	return f, nil
}

// Config returns the Featurizer's configuration.
func (f *Featurizer) Config() FeatureConfig { return f.cfg }

// Term is a hashed text feature and how often it occurs in one call.
type Term struct {
	Idx   uint32
	Count float32
}

// Terms appends the distinct text features of c with their counts to dst: the input
// FitIDF's document frequencies are counted from.
func (f *Featurizer) Terms(c *Conversation, dst []Term) []Term {
	ct := f.scratch.Get().(*counter)
	f.countText(ct, c.LastText)
	for _, k := range ct.used {
		e := ct.table[k]
		dst = append(dst, Term{Idx: e.key - 1, Count: e.count})
	}
	ct.reset()
	f.scratch.Put(ct)
	return dst
}

// Vector appends c's features to dst (reusing its slices) and returns it.
func (f *Featurizer) Vector(c *Conversation, dst Vector) Vector {
	dst.Idx, dst.Val = dst.Idx[:0], dst.Val[:0]
	ct := f.scratch.Get().(*counter)
	f.countText(ct, c.LastText)
	var textNorm float64
	for _, k := range ct.used {
		e := &ct.table[k]
		w := sublinear(e.count) * float64(f.slots[e.key-1].idf)
		e.count = float32(w)
		textNorm += w * w
	}
	var stage [stageFeatures]uint32
	ns := f.stageFeatures(c, &stage)
	textW, stageW := f.cfg.TextWeight, f.cfg.StageWeight
	if textNorm == 0 {
		textW = 0
	}
	if total := math.Sqrt(textW*textW + stageW*stageW); total > 0 {
		textW, stageW = textW/total, stageW/total
	}
	if textW > 0 {
		scale := textW / math.Sqrt(textNorm)
		for _, k := range ct.used {
			e := ct.table[k]
			dst.Idx = append(dst.Idx, e.key-1)
			dst.Val = append(dst.Val, float32(float64(e.count)*scale))
		}
	}
	if stageW > 0 {
		w := float32(stageW / math.Sqrt(float64(ns)))
		for k, ix := range stage[:ns] {
			if (textW > 0 && ct.has(ix+1)) || slices.Contains(stage[:k], ix) {
				// A rare hash collision with a feature already written.
				for i, j := range dst.Idx {
					if j == ix {
						dst.Val[i] += w
					}
				}
				continue
			}
			dst.Idx = append(dst.Idx, ix)
			dst.Val = append(dst.Val, w)
		}
	}
	ct.reset()
	f.scratch.Put(ct)
	return dst
}

const stageFeatures = 4

// sublinear is the term frequency weight 1 + ln(count), from a table for small counts.
func sublinear(count float32) float64 {
	if c := int(count); c < len(logTable) {
		return logTable[c]
	}
	return 1 + math.Log(float64(count))
}

var logTable = func() (t [32]float64) {
	for i := 1; i < len(t); i++ {
		t[i] = 1 + math.Log(float64(i))
	}
	return t
}()

// Namespaces keep features of different kinds apart in the hash space.
const (
	nsWord uint64 = iota + 1
	nsBigram
	nsChar
	nsStage
)

// stageFeatures writes the stage features of c: last role, last tool, and user turns
// and steps since the user (bucketed). The tools offered are the template's business
// (the fingerprint holds them), not the stage's.
func (f *Featurizer) stageFeatures(c *Conversation, out *[stageFeatures]uint32) int {
	n := 0
	put := func(kind byte, s string, v int) {
		h := hashSeed(nsStage)
		h = hashByte(h, kind)
		h = hashString(h, s)
		h = hashByte(h, byte(v))
		out[n] = uint32(finish(h)) & f.mask
		n++
	}
	put('r', c.LastRole, 0)
	if c.LastTool != "" {
		put('t', c.LastTool, 0)
	}
	put('u', "", bucket(c.UserTurns))
	put('s', "", bucket(c.Steps))
	return n
}

// bucket maps a count to 0, 1, 2, 3, 4 (3-4), 5 (5-8), 6 (9-16), 7 (more).
func bucket(n int) int {
	switch {
	case n <= 2:
		return max(n, 0)
	case n <= 4:
		return 3
	case n <= 8:
		return 5
	case n <= 16:
		return 6
	}
	return 7
}

// countText counts the text features of s into ct: word unigrams and bigrams over the
// first WordBytes bytes, character 4-grams over the first CharBytes bytes. Words are
// ASCII-lower-cased runs of letters and digits (other bytes of 0x80 and up count as
// letters); a word holding a digit becomes one shape token, so ids, dates and amounts
// do not scatter calls of one kind. Character grams see the same normalised text with
// every run of other bytes as one space.
func (f *Featurizer) countText(ct *counter, s string) {
	ws := s[:min(len(s), f.cfg.WordBytes)]
	var prev uint64
	havePrev := false
	for i := 0; i < len(ws); {
		if wordClass[ws[i]] == 0 {
			i++
			continue
		}
		j := i
		h := hashSeed(nsWord)
		digit := false
		for ; j < len(ws) && wordClass[ws[j]] != 0; j++ {
			if wordClass[ws[j]] == 2 {
				digit = true
			}
			h = hashByte(h, lower(ws[j]))
		}
		if digit {
			h = hashByte(hashSeed(nsWord), '#')
		}
		ct.add(uint32(finish(h))&f.mask + 1)
		if havePrev {
			ct.add(uint32(finish(hashByte(prev^h*0x9e3779b97f4a7c15, byte(nsBigram))))&f.mask + 1)
		}
		prev, havePrev = h, true
		i = j
	}
	// Character 4-grams run over the words, lower-cased, each followed by one space; a
	// word holding a digit is written as "0".
	cs := s[:min(len(s), f.cfg.CharBytes)]
	var win uint32 // the last four normalised bytes
	n := 0
	gram := func(c byte) {
		win = win<<8 | uint32(c)
		n++
		if n >= 4 {
			ct.add(uint32(finish(hashUint(hashSeed(nsChar), uint64(win))))&f.mask + 1)
		}
	}
	for i := 0; i < len(cs); {
		if wordClass[cs[i]] == 0 {
			i++
			continue
		}
		j, digit := i, false
		for ; j < len(cs) && wordClass[cs[j]] != 0; j++ {
			digit = digit || wordClass[cs[j]] == 2
		}
		if digit {
			gram('0')
		} else {
			for k := i; k < j; k++ {
				gram(lower(cs[k]))
			}
		}
		gram(' ')
		i = j
	}
}

// wordClass: 0 for separators, 1 for letters (and bytes of multi-byte UTF-8), 2 for digits.
var wordClass = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c >= '0' && c <= '9':
			t[c] = 2
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= 0x80:
			t[c] = 1
		}
	}
	return t
}()

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// FNV-1a with a final mix: fast on short keys and stable across releases (features of
// a saved model must hash alike forever).
func hashSeed(ns uint64) uint64 { return 0xcbf29ce484222325 ^ ns*0x100000001b3 }

func hashByte(h uint64, c byte) uint64 { return (h ^ uint64(c)) * 0x100000001b3 }

func hashString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = hashByte(h, s[i])
	}
	return hashByte(h, 0xff)
}

func hashUint(h uint64, v uint64) uint64 {
	for range 8 {
		h = hashByte(h, byte(v))
		v >>= 8
	}
	return h
}

// finish mixes the bits of h so that its low bits depend on all of them.
func finish(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// HashFeature returns the index of a named feature in a space of 1<<dimBits
// dimensions, in namespace ns (distinct from the request features' namespaces for
// ns >= 16). Cold-path code uses it to add features of its own (the reference's
// action, the template) beside the request's.
func HashFeature(ns uint64, name string, dimBits int) uint32 {
	return uint32(finish(hashString(hashSeed(ns), name))) & (1<<dimBits - 1)
}

// counter counts features in an open-addressing table that is cleared by walking the
// slots used, so a call costs what its features cost, not the table's size.
type counter struct {
	table []entry
	used  []uint32
}

type entry struct {
	key   uint32 // feature index + 1; 0 marks an empty slot
	count float32
}

const counterSlots = 4096 // keeps the table at most half full

func newCounter() *counter {
	return &counter{table: make([]entry, counterSlots), used: make([]uint32, 0, counterSlots/2)}
}

func (ct *counter) add(key uint32) {
	i := (key * 0x9e3779b1) >> (32 - 12)
	for {
		e := &ct.table[i]
		switch e.key {
		case key:
			e.count++
			return
		case 0:
			if len(ct.used) >= counterSlots/2 {
				return // full: later features are dropped
			}
			e.key, e.count = key, 1
			ct.used = append(ct.used, i)
			return
		}
		i = (i + 1) & (counterSlots - 1)
	}
}

func (ct *counter) has(key uint32) bool {
	for i := (key * 0x9e3779b1) >> (32 - 12); ; i = (i + 1) & (counterSlots - 1) {
		switch ct.table[i].key {
		case key:
			return true
		case 0:
			return false
		}
	}
}

func (ct *counter) reset() {
	for _, i := range ct.used {
		ct.table[i] = entry{}
	}
	ct.used = ct.used[:0]
}

func sortUint32(a []uint32) { slices.Sort(a) }
