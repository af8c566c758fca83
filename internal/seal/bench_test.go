package seal_test

import (
	"bytes"
	"testing"

	"github.com/downshift-dev/downshift/internal/store"
)

// benchCall is the size of a tau-bench airline call: a ~20 KB request (policy, tool
// schemas, turns) and a ~1 KB response. GCM's speed does not depend on the content.
func benchCall() store.Call {
	req := bytes.Repeat([]byte(`{"role":"user","content":"I want to change my flight to tomorrow, ZFA04Y."},`), 20<<10/72)
	resp := bytes.Repeat([]byte(`{"tool_calls":[{"function":{"name":"get_reservation_details"}}]},`), 1<<10/64)
	return store.Call{ID: "01JBENCH0000000000000000000", Request: req, Response: resp}
}

func BenchmarkSealCall(b *testing.B) {
	k := twoKeys(b, "k1")
	orig := benchCall()
	b.SetBytes(int64(len(orig.Request) + len(orig.Response)))
	b.ReportAllocs()
	for b.Loop() {
		c := orig
		if err := k.SealCall(&c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenCall(b *testing.B) {
	k := twoKeys(b, "k1")
	sealed := benchCall()
	if err := k.SealCall(&sealed); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(sealed.Request) + len(sealed.Response)))
	b.ReportAllocs()
	for b.Loop() {
		c := sealed
		if err := k.OpenCall(&c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSealCallParallel(b *testing.B) {
	k := twoKeys(b, "k1")
	orig := benchCall()
	b.SetBytes(int64(len(orig.Request) + len(orig.Response)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c := orig
			if err := k.SealCall(&c); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
