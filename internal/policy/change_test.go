package policy_test

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/downshift-dev/downshift/internal/policy"
	"github.com/downshift-dev/downshift/internal/store"
)

func ptr[T any](v T) *T { return &v }

// saved returns p as a store would keep it after a save by someone: defaults applied,
// who and when set.
func saved(p store.Policy) store.Policy {
	p = p.WithDefaults()
	p.At, p.Actor, p.ActorName, p.Remote, p.Reason = t0, "key_1", "alice", "127.0.0.1:5000", "because"
	return p
}

func TestNextAppliesAPartialChange(t *testing.T) {
	canary := saved(store.Policy{Workload: "w", Version: 3, Mode: store.ModeCanary, Candidate: "slm",
		CanaryShare: 0.2, VerifyShare: 0.02, Guards: []string{"not_empty"}, MinAgreement: 0.8, MinGuardPass: 0.9,
		Window: 100, MinSamples: 50, PromoteAfter: 500})
	canary.Automatic = true
	shadow := saved(store.Policy{Workload: "w", Version: 1, Mode: store.ModeShadow, Candidate: "slm",
		MinAgreement: 0.9, MinGuardPass: 0.95})
	for _, tt := range []struct {
		name   string
		cur    *store.Policy
		change policy.Change
		want   store.Policy // compared whole; At, Actor and the rest stay zero
	}{
		{"first policy takes the defaults", nil,
			policy.Change{Mode: ptr(store.ModeShadow), Candidate: ptr("slm")},
			store.Policy{Workload: "w", Version: 1, Mode: store.ModeShadow, Candidate: "slm", ShadowShare: 1,
				VerifyShare: 0.05, MinAgreement: 0.9, MinGuardPass: 0.95, Window: 200, MinSamples: 200}},
		{"first policy in observe needs no candidate", nil,
			policy.Change{Mode: ptr(store.ModeObserve)},
			store.Policy{Workload: "w", Version: 1, Mode: store.ModeObserve, ShadowShare: 1,
				VerifyShare: 0.05, MinAgreement: 0.9, MinGuardPass: 0.95, Window: 200, MinSamples: 200}},
		{"the mode alone keeps everything else", &canary,
			policy.Change{Mode: ptr(store.ModeServe)},
			store.Policy{Workload: "w", Version: 4, Mode: store.ModeServe, Candidate: "slm", CanaryShare: 0.2,
				ShadowShare: 1, VerifyShare: 0.02, Guards: []string{"not_empty"}, MinAgreement: 0.8, MinGuardPass: 0.9,
				Window: 100, MinSamples: 50, PromoteAfter: 500}},
		{"a step into canary without a share takes the default share", &shadow,
			policy.Change{Mode: ptr(store.ModeCanary)},
			store.Policy{Workload: "w", Version: 2, Mode: store.ModeCanary, Candidate: "slm", CanaryShare: policy.DefaultCanaryShare,
				ShadowShare: 1, VerifyShare: 0.05, MinAgreement: 0.9, MinGuardPass: 0.95, Window: 200, MinSamples: 200}},
		{"shares, thresholds and guards are set", &shadow,
			policy.Change{Mode: ptr(store.ModeCanary), Candidate: ptr(" other "), CanaryShare: ptr(0.25), ShadowShare: ptr(0.5),
				VerifyShare: ptr(0.1), MinAgreement: ptr(0.0), MinGuardPass: ptr(1.0), PromoteAfter: ptr(10),
				Guards: ptr([]string{"json_valid", "tool_known"})},
			store.Policy{Workload: "w", Version: 2, Mode: store.ModeCanary, Candidate: "other", CanaryShare: 0.25,
				ShadowShare: 0.5, VerifyShare: 0.1, Guards: []string{"json_valid", "tool_known"}, MinGuardPass: 1,
				Window: 200, MinSamples: 200, PromoteAfter: 10}},
		{"an empty guard list is every guard", &canary,
			policy.Change{Guards: ptr([]string{})},
			store.Policy{Workload: "w", Version: 4, Mode: store.ModeCanary, Candidate: "slm", CanaryShare: 0.2,
				ShadowShare: 1, VerifyShare: 0.02, MinAgreement: 0.8, MinGuardPass: 0.9, Window: 100, MinSamples: 50, PromoteAfter: 500}},
		{"min samples that were the whole window follow it", &shadow,
			policy.Change{Window: ptr(50)},
			store.Policy{Workload: "w", Version: 2, Mode: store.ModeShadow, Candidate: "slm", ShadowShare: 1,
				VerifyShare: 0.05, MinAgreement: 0.9, MinGuardPass: 0.95, Window: 50, MinSamples: 50}},
		{"min samples set apart from the window stay", &canary,
			policy.Change{Window: ptr(80)},
			store.Policy{Workload: "w", Version: 4, Mode: store.ModeCanary, Candidate: "slm", CanaryShare: 0.2,
				ShadowShare: 1, VerifyShare: 0.02, Guards: []string{"not_empty"}, MinAgreement: 0.8, MinGuardPass: 0.9,
				Window: 80, MinSamples: 50, PromoteAfter: 500}},
		{"back returns to observe and keeps the candidate", &canary,
			policy.Change{Back: true},
			store.Policy{Workload: "w", Version: 4, Mode: store.ModeObserve, Candidate: "slm", CanaryShare: 0.2,
				ShadowShare: 1, VerifyShare: 0.02, Guards: []string{"not_empty"}, MinAgreement: 0.8, MinGuardPass: 0.9,
				Window: 100, MinSamples: 50, PromoteAfter: 500}},
		{"back from nothing is observe", nil,
			policy.Change{Back: true},
			store.Policy{Workload: "w", Version: 1, Mode: store.ModeObserve, ShadowShare: 1,
				VerifyShare: 0.05, MinAgreement: 0.9, MinGuardPass: 0.95, Window: 200, MinSamples: 200}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var before store.Policy
			if tt.cur != nil {
				before = *tt.cur
				before.Guards = append([]string(nil), tt.cur.Guards...)
			}
			got, err := policy.Next(tt.cur, "w", tt.change)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Next\n got %+v\nwant %+v", got, tt.want)
			}
			// What Next returns is what a store keeps, once someone and a time are set.
			got.At, got.Actor = t0, "key_1"
			if err := got.Validate(); err != nil {
				t.Errorf("the next version does not validate: %v", err)
			}
			if tt.cur != nil && !reflect.DeepEqual(*tt.cur, before) {
				t.Errorf("Next changed the current policy: %+v", *tt.cur)
			}
			if len(got.Guards) > 0 && tt.cur != nil && len(tt.cur.Guards) > 0 {
				got.Guards[0] = "changed"
				if tt.cur.Guards[0] == "changed" {
					t.Error("the next version shares its guards with the current one")
				}
			}
		})
	}
}

func TestNextRefusesNamingTheField(t *testing.T) {
	canary := saved(store.Policy{Workload: "w", Version: 2, Mode: store.ModeCanary, Candidate: "slm", CanaryShare: 0.1})
	for _, tt := range []struct {
		name   string
		cur    *store.Policy
		change policy.Change
		field  string
		msg    string
	}{
		{"first policy without a mode", nil, policy.Change{Candidate: ptr("slm")}, "mode", "needs a mode"},
		{"empty mode", &canary, policy.Change{Mode: ptr("")}, "mode", `"": want observe`},
		{"unknown mode", &canary, policy.Change{Mode: ptr("fast")}, "mode", `"fast": want observe, shadow, canary, serve`},
		{"first policy without a candidate", nil, policy.Change{Mode: ptr(store.ModeShadow)}, "candidate", "needs a candidate"},
		{"blank candidate", &canary, policy.Change{Candidate: ptr("  ")}, "candidate", "needs a candidate"},
		{"back with a mode", &canary, policy.Change{Back: true, Mode: ptr(store.ModeShadow)}, "mode", "takes no mode"},
		{"back with a candidate", &canary, policy.Change{Back: true, Candidate: ptr("x")}, "candidate", "takes no candidate"},
		{"canary share above 1", &canary, policy.Change{CanaryShare: ptr(1.5)}, "canary_share", "want a share from 0 to 1"},
		{"canary share of 0", &canary, policy.Change{CanaryShare: ptr(0.0)}, "canary_share", "a canary needs a share above 0"},
		{"negative shadow share", &canary, policy.Change{ShadowShare: ptr(-0.1)}, "shadow_share", "want a share"},
		{"verify share NaN", &canary, policy.Change{VerifyShare: ptr(math.NaN())}, "verify_share", "want a share"},
		{"min agreement above 1", &canary, policy.Change{MinAgreement: ptr(90.0)}, "min_agreement", "want a share"},
		{"min guard pass below 0", &canary, policy.Change{MinGuardPass: ptr(-1.0)}, "min_guard_pass", "want a share"},
		{"window too large", &canary, policy.Change{Window: ptr(store.MaxPolicyWindow + 1)}, "window", "want 1 to"},
		{"negative window", &canary, policy.Change{Window: ptr(-1)}, "window", "want 1 to"},
		{"min samples above the window", &canary, policy.Change{MinSamples: ptr(201)}, "min_samples", "want 1 to 200"},
		{"negative min samples", &canary, policy.Change{MinSamples: ptr(-5)}, "min_samples", "want 1 to 200"},
		{"negative promote after", &canary, policy.Change{PromoteAfter: ptr(-1)}, "promote_after", "must not be negative"},
		{"unknown guard", &canary, policy.Change{Guards: ptr([]string{"not_empty", "vibes"})}, "guards", `unknown guard "vibes"`},
		{"empty guard name", &canary, policy.Change{Guards: ptr([]string{""})}, "guards", `unknown guard ""`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policy.Next(tt.cur, "w", tt.change)
			var fe *policy.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v, want a *policy.FieldError", err)
			}
			if fe.Field != tt.field || !strings.Contains(fe.Msg, tt.msg) {
				t.Errorf("field %q msg %q, want field %q msg containing %q", fe.Field, fe.Msg, tt.field, tt.msg)
			}
		})
	}
	if _, err := policy.Next(nil, "", policy.Change{Mode: ptr(store.ModeObserve)}); err == nil {
		t.Error("a policy without a workload was accepted")
	}
}
