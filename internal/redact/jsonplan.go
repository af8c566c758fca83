package redact

// jsonPlan is what to replace in a JSON document held in a string (tool-call
// arguments, a tool's result): every string value, and every long number, with what
// was found in it. It does not depend on the call, so it is cached with the text.
type jsonPlan struct {
	edits []valueEdit
}

// valueEdit is one value of the document: doc[a:b] is its token.
type valueEdit struct {
	a, b   int
	value  string
	number bool
	spans  []span
}

func (p *jsonPlan) cost() int {
	n := 0
	for _, e := range p.edits {
		n += 64 + len(e.value) + 32*len(e.spans)
	}
	return n
}

// planJSON walks a JSON document and finds what to replace in each value, with the
// value's key as a hint and the secrets gitleaks finds in the whole document (its
// rules look at the key and the operator around a value, which a value alone lacks).
func (r *Redactor) planJSON(doc string) *jsonPlan {
	var secrets []string
	if r.secrets != nil {
		secrets = r.secrets.secretsIn(doc)
	}
	plan := &jsonPlan{}
	p := &jr{s: doc}
	var walk func(key string)
	walk = func(key string) {
		switch c := p.peek(); {
		case c == '{':
			p.object(walk)
		case c == '[':
			p.array(func() { walk(key) })
		case c == '"':
			a, b := p.str()
			v := unquote(doc[a:b])
			if len(v) >= 4 || isSecretKey(key) {
				plan.edits = append(plan.edits, valueEdit{a: a, b: b, value: v, spans: r.findValue(v, hintFor(key), secrets)})
			}
		case c == '-' || isDigit(c):
			a := p.i
			p.skipValue()
			if v := doc[a:p.i]; len(v) >= 7 && isDigits(v) {
				plan.edits = append(plan.edits, valueEdit{a: a, b: p.i, value: v, number: true, spans: r.findValue(v, hintFor(key), nil)})
			}
		default:
			p.skipValue()
		}
	}
	walk("")
	// Only values worth sweeping or replacing are kept.
	kept := plan.edits[:0]
	for _, e := range plan.edits {
		if len(e.spans) > 0 || len(e.value) >= 4 {
			kept = append(kept, e)
		}
	}
	plan.edits = kept
	return plan
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return len(s) > 0
}

// applyPlan returns doc with the plan's values replaced (and every other occurrence of
// values, found anywhere in the call, swept up), or false when nothing changed.
func (r *Redactor) applyPlan(doc string, plan *jsonPlan, values []typedValue, st *State) (string, bool) {
	var b []byte
	last := 0
	for _, e := range plan.edits {
		spans := sweep(e.value, e.spans, placeholders(e.value), values)
		if len(spans) == 0 {
			continue
		}
		if b == nil {
			b = make([]byte, 0, len(doc)+64)
		}
		b = append(b, doc[last:e.a]...)
		b = appendQuoted(b, r.apply(e.value, spans, st))
		last = e.b
	}
	if b == nil {
		return "", false
	}
	b = append(b, doc[last:]...)
	return string(b), true
}
