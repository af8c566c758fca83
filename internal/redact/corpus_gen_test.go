package redact

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
)

// This file builds the labelled corpus: realistic agent messages (support chats, tool
// arguments, tool results, system prompts) with known values of each structured type
// in many formats, and near-misses that must not be found. Everything comes from a
// seeded generator, so the corpus is the same on every run.

// label is a value the corpus planted: its type and its exact text.
type label struct {
	t Type
	v string
}

// sample is one call's worth of text: where it goes, what it holds, what was planted.
type sample struct {
	where  string // "user", "assistant", "system", "tool", "args"
	text   string
	labels []label
}

type gen struct {
	r *rand.Rand
}

func newGen(seed uint64) *gen { return &gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))} }

func (g *gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }
func (g *gen) digits(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + g.r.IntN(10))
	}
	return string(b)
}
func (g *gen) digitsFrom(n int, first string) string { return first + g.digits(n-len(first)) }
func (g *gen) upper(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('A' + g.r.IntN(26))
	}
	return string(b)
}
func (g *gen) alnum(n int, set string) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = set[g.r.IntN(len(set))]
	}
	return string(b)
}

const (
	alnumSet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	lowerSet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b64url   = alnumSet + "-_"
)

var (
	firstNames = []string{"mia", "noah", "olivia", "liam", "ava", "ethan", "sofia", "lucas", "amelia", "yusuf", "chen", "raj", "fatima", "juan", "anna"}
	lastNames  = []string{"li", "garcia", "smith", "kovacs", "nguyen", "patel", "muller", "rossi", "khan", "silva", "taylor", "kim"}
	domains    = []string{"example.com", "example.org", "mail.example.co.uk", "corp.example.net", "example.io", "shop.example.de"}
)

func (g *gen) email() string {
	f, l := g.pick(firstNames...), g.pick(lastNames...)
	local := g.pick(f+"."+l+g.digits(4), f+l, f+"_"+l, f+"+orders", l+"."+f, f[:1]+l+g.digits(2))
	e := local + "@" + g.pick(domains...)
	if g.r.IntN(6) == 0 {
		e = strings.ToUpper(e[:1]) + e[1:]
	}
	return e
}

func (g *gen) nanp() (area, exch, line string) {
	return g.digitsFrom(3, string(byte('2'+g.r.IntN(8)))), g.digitsFrom(3, string(byte('2'+g.r.IntN(8)))), g.digits(4)
}

// phone returns a phone number in one of the supported formats; bare says it is a
// bare digit run that needs context.
func (g *gen) phone() (p string, bare bool) {
	a, e, l := g.nanp()
	switch g.r.IntN(12) {
	case 0:
		return "+44 20 " + g.digits(4) + " " + g.digits(4), false
	case 1:
		return "+1 " + a + "-" + e + "-" + l, false
	case 2:
		return "(" + a + ") " + e + "-" + l, false
	case 3:
		return a + "-" + e + "-" + l, false
	case 4:
		return a + "." + e + "." + l, false
	case 5:
		return "+49 30 " + g.digits(8), false
	case 6:
		return "+33 1 " + g.digits(2) + " " + g.digits(2) + " " + g.digits(2) + " " + g.digits(2), false
	case 7:
		return "020 " + g.digits(4) + " " + g.digits(4), false
	case 8:
		return "0" + string(byte('1'+g.r.IntN(9))) + " " + g.digits(2) + " " + g.digits(2) + " " + g.digits(2) + " " + g.digits(2), false
	case 9:
		return "+1" + a + e + l, false
	case 10:
		return "1-" + a + "-" + e + "-" + l, false
	default:
		return a + e + l, true
	}
}

func luhnDigit(body string) byte {
	for c := byte('0'); c <= '9'; c++ {
		if luhn([]byte(body + string(c))) {
			return c
		}
	}
	panic("unreachable")
}

// cardDigits returns a valid card number of a random brand.
func (g *gen) cardDigits() string {
	var prefix string
	n := 16
	switch g.r.IntN(7) {
	case 0:
		prefix = "4"
	case 1:
		prefix = fmt.Sprint(51 + g.r.IntN(5))
	case 2:
		prefix, n = g.pick("34", "37"), 15
	case 3:
		prefix = g.pick("6011", "65")
	case 4:
		prefix = fmt.Sprint(2221 + g.r.IntN(500))
	case 5:
		prefix = fmt.Sprint(3528 + g.r.IntN(60))
	default:
		prefix, n = "4", []int{13, 19}[g.r.IntN(2)]
	}
	body := prefix + g.digits(n-1-len(prefix))
	return body + string(luhnDigit(body))
}

func groupCard(d string, sep string) string {
	if len(d) == 15 {
		return d[:4] + sep + d[4:10] + sep + d[10:]
	}
	var parts []string
	for i := 0; i < len(d); i += 4 {
		parts = append(parts, d[i:min(len(d), i+4)])
	}
	return strings.Join(parts, sep)
}

func (g *gen) card() string {
	d := g.cardDigits()
	switch g.r.IntN(3) {
	case 0:
		return d
	case 1:
		return groupCard(d, " ")
	default:
		return groupCard(d, "-")
	}
}

// badCard returns a card-shaped number that fails the Luhn check.
func (g *gen) badCard() string {
	d := g.cardDigits()
	last := d[len(d)-1]
	d = d[:len(d)-1] + string(byte('0'+(int(last-'0')+1+g.r.IntN(9))%10))
	if g.r.IntN(2) == 0 {
		return groupCard(d, " ")
	}
	return d
}

var ibanCountries = []struct {
	cc   string
	bban func(g *gen) string
}{
	{"DE", func(g *gen) string { return g.digits(18) }},
	{"GB", func(g *gen) string { return g.upper(4) + g.digits(14) }},
	{"FR", func(g *gen) string { return g.digits(23) }},
	{"NL", func(g *gen) string { return g.upper(4) + g.digits(10) }},
	{"ES", func(g *gen) string { return g.digits(20) }},
	{"IT", func(g *gen) string { return g.upper(1) + g.digits(22) }},
	{"CH", func(g *gen) string { return g.digits(17) }},
	{"BE", func(g *gen) string { return g.digits(12) }},
}

func ibanCheck(cc, bban string) string {
	for ck := 2; ck <= 98; ck++ {
		v := fmt.Sprintf("%s%02d%s", cc, ck, bban)
		if ibanChecksum([]byte(v)) {
			return v
		}
	}
	panic("no check digits")
}

func spaceIBAN(v string) string {
	var parts []string
	for i := 0; i < len(v); i += 4 {
		parts = append(parts, v[i:min(len(v), i+4)])
	}
	return strings.Join(parts, " ")
}

func (g *gen) iban() string {
	c := ibanCountries[g.r.IntN(len(ibanCountries))]
	v := ibanCheck(c.cc, c.bban(g))
	if g.r.IntN(2) == 0 {
		return spaceIBAN(v)
	}
	return v
}

// badIBAN returns an IBAN-shaped string whose check digits are wrong.
func (g *gen) badIBAN() string {
	c := ibanCountries[g.r.IntN(len(ibanCountries))]
	good := ibanCheck(c.cc, c.bban(g))
	ck := (int(good[2]-'0')*10 + int(good[3]-'0') + 1 + g.r.IntN(90)) % 100
	v := fmt.Sprintf("%s%02d%s", c.cc, ck, good[4:])
	if ibanChecksum([]byte(v)) {
		v = fmt.Sprintf("%s%02d%s", c.cc, (ck+1)%100, good[4:])
	}
	if g.r.IntN(2) == 0 {
		return spaceIBAN(v)
	}
	return v
}

func (g *gen) ssn() string {
	area := 1 + g.r.IntN(899)
	if area == 666 {
		area = 667
	}
	return fmt.Sprintf("%03d-%02d-%04d", area, 1+g.r.IntN(99), 1+g.r.IntN(9999))
}

func (g *gen) badSSN() string {
	switch g.r.IntN(4) {
	case 0:
		return fmt.Sprintf("000-%02d-%04d", 1+g.r.IntN(99), 1+g.r.IntN(9999))
	case 1:
		return fmt.Sprintf("666-%02d-%04d", 1+g.r.IntN(99), 1+g.r.IntN(9999))
	case 2:
		return fmt.Sprintf("9%02d-%02d-%04d", g.r.IntN(100), 1+g.r.IntN(99), 1+g.r.IntN(9999))
	default:
		return fmt.Sprintf("%03d-00-%04d", 1+g.r.IntN(899), 1+g.r.IntN(9999))
	}
}

func (g *gen) ipv4() string {
	return fmt.Sprintf("%d.%d.%d.%d", 1+g.r.IntN(223), g.r.IntN(256), g.r.IntN(256), 1+g.r.IntN(254))
}

func (g *gen) ipv6() string {
	var b [16]byte
	b[0], b[1] = 0x20, 0x01
	b[2], b[3] = 0x0d, 0xb8
	for i := 4; i < 16; i++ {
		if g.r.IntN(3) > 0 {
			b[i] = byte(g.r.IntN(256))
		}
	}
	a := netip.AddrFrom16(b)
	if g.r.IntN(3) == 0 {
		return a.StringExpanded()
	}
	s := a.String()
	if g.r.IntN(4) == 0 {
		s = strings.ToUpper(s)
	}
	return s
}

func (g *gen) urlCreds() string {
	user := g.pick("admin", "svc_orders", "deploy", "root", g.pick(firstNames...))
	pass := g.alnum(8+g.r.IntN(12), alnumSet+"!*-_.~")
	host := g.pick("db.internal.example.com", "10.2.3.4", "cache.example.net", "ftp.example.org", "broker.example.io")
	switch g.r.IntN(5) {
	case 0:
		return "postgres://" + user + ":" + pass + "@" + host + ":5432/orders"
	case 1:
		return "mysql://" + user + ":" + pass + "@" + host + "/app?tls=true"
	case 2:
		return "https://" + user + ":" + pass + "@" + host + "/api/v1/export"
	case 3:
		return "redis://:" + pass + "@" + host + ":6379/0"
	default:
		return "amqp://" + user + ":" + pass + "@" + host
	}
}

// secret returns a secret and the text it sits in (the secret must appear in it once).
func (g *gen) secret() (value, context string) {
	switch g.r.IntN(12) {
	case 0:
		v := "sk-proj-" + g.alnum(48, b64url)
		return v, "OPENAI_API_KEY=" + v
	case 1:
		v := "sk-ant-api03-" + g.alnum(93, b64url) + "AA"
		return v, "use the key " + v + " for the summariser"
	case 2:
		v := "AKIA" + g.alnum(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
		return v, "aws_access_key_id = " + v
	case 3:
		v := "ghp_" + g.alnum(36, alnumSet)
		return v, "git clone with token " + v
	case 4:
		v := "xoxb-" + g.digits(12) + "-" + g.digits(13) + "-" + g.alnum(24, alnumSet)
		return v, "slack bot token: " + v
	case 5:
		v := "sk_live_" + g.alnum(24, alnumSet)
		return v, "stripe key " + v
	case 6:
		v := "AIza" + g.alnum(35, b64url)
		return v, "maps key=" + v
	case 7:
		h := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
		p := "eyJ" + g.alnum(30+g.r.IntN(30), b64url)
		v := h + "." + p + "." + g.alnum(43, b64url)
		return v, "Authorization: Bearer " + v
	case 8:
		body := ""
		for i := 0; i < 6; i++ {
			body += g.alnum(64, alnumSet+"+/") + "\n"
		}
		v := "-----BEGIN RSA PRIVATE KEY-----\n" + body + "-----END RSA PRIVATE KEY-----"
		return v, "here is the deploy key:\n" + v + "\nkeep it safe"
	case 9:
		v := g.alnum(6, alnumSet) + g.pick("!", "#", "9", "$", "7") + g.alnum(5, lowerSet)
		return v, g.pick("password=", "password: ", "db_password = ", "PASSWORD=") + v
	case 10:
		v := "github_pat_" + g.alnum(22, alnumSet) + "_" + g.alnum(59, alnumSet)
		return v, "fine-grained token " + v
	default:
		v := g.alnum(32, "0123456789abcdef")
		return v, `"api_key": "` + v + `"`
	}
}

// nearMiss returns text that must not be found.
func (g *gen) nearMiss() string {
	switch g.r.IntN(24) {
	case 0:
		return "order #W" + g.digits(7)
	case 1:
		return "card number " + g.badCard()
	case 2:
		return "IBAN " + g.badIBAN()
	case 3:
		return g.pick("on ", "date ", "") + fmt.Sprintf("2024-%02d-%02d", 1+g.r.IntN(12), 1+g.r.IntN(28))
	case 4:
		return fmt.Sprintf("%02d/%02d/2024 at %02d:%02d", 1+g.r.IntN(12), 1+g.r.IntN(28), g.r.IntN(24), g.r.IntN(60))
	case 5:
		return fmt.Sprintf("%02d:%02d:%02d EST", g.r.IntN(24), g.r.IntN(60), g.r.IntN(60))
	case 6:
		return fmt.Sprintf("$%d,%03d.%02d", 1+g.r.IntN(99), g.r.IntN(1000), g.r.IntN(100))
	case 7:
		return fmt.Sprintf("version %d.%d.%d", g.r.IntN(20), g.r.IntN(30), g.r.IntN(100))
	case 8:
		return fmt.Sprintf("v%d.%d.%d.%d.%d", g.r.IntN(9), g.r.IntN(9), g.r.IntN(9), g.r.IntN(9), g.r.IntN(9))
	case 9:
		return "flight " + g.upper(3) + g.digits(3)
	case 10:
		return "user id " + g.pick(firstNames...) + "_" + g.pick(lastNames...) + "_" + g.digits(4)
	case 11:
		return "reservation " + g.alnum(6, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
	case 12:
		return g.pick("credit_card_", "gift_card_", "certificate_") + g.digits(7)
	case 13:
		return "SKU " + g.digits(4) + "-" + g.digits(4) + "-" + g.digits(3)
	case 14:
		return "item " + g.digits(10)
	case 15:
		return "SSN " + g.badSSN()
	case 16:
		return fmt.Sprintf("%d.%d.%d.%d", 256+g.r.IntN(700), g.r.IntN(256), g.r.IntN(256), g.r.IntN(256))
	case 17:
		return fmt.Sprintf("€%d.%03d,%02d", 1+g.r.IntN(99), g.r.IntN(1000), g.r.IntN(100))
	case 18:
		return "ISBN 978-" + g.digits(1) + "-" + g.digits(2) + "-" + g.digits(6) + "-" + g.digits(1)
	case 19:
		return "zip " + g.digits(5) + ", " + fmt.Sprint(1+g.r.IntN(5)) + " bags, " + fmt.Sprint(g.r.IntN(100)) + "%"
	case 20:
		return "timestamp " + fmt.Sprint(1700000000+g.r.IntN(100000000))
	case 21:
		return "tracking " + g.digits(12)
	case 22:
		return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", g.r.IntN(256), g.r.IntN(256), g.r.IntN(256), g.r.IntN(256), g.r.IntN(256), g.r.IntN(256))
	default:
		return fmt.Sprintf("build %08x-%04x-4%03x", g.r.Uint32(), g.r.IntN(65536), g.r.IntN(4096))
	}
}

// planted is a value and the phrase that carries it.
type planted struct {
	l      label
	phrase string
	key    string // JSON key, for tool arguments and results
	value  any    // JSON value (the label's text, or a number)
}

func (g *gen) plant() planted {
	switch t := BuiltinTypes[g.r.IntN(len(BuiltinTypes))]; t {
	case EMAIL:
		v := g.email()
		return planted{label{t, v}, g.pick("my email is ", "reach me at ", "e-mail: ", "send it to ") + v, "email", v}
	case PHONE:
		v, bare := g.phone()
		lead := g.pick("my phone is ", "call me at ", "mobile: ", "you can text ")
		if !bare {
			lead = g.pick(lead, "the number is ", "dial ", "")
		}
		return planted{label{t, v}, lead + v, g.pick("phone", "phone_number", "mobile"), v}
	case CARD:
		v := g.card()
		return planted{label{t, v}, g.pick("my card is ", "charge ", "card number: ", "use ") + v, "card_number", v}
	case IBAN:
		v := g.iban()
		return planted{label{t, v}, g.pick("IBAN ", "wire it to ", "account: ", "refund to ") + v, "iban", v}
	case SSN:
		v := g.ssn()
		return planted{label{t, v}, g.pick("SSN ", "social security number ", "my ssn is ", "") + v, "ssn", v}
	case IPV4:
		v := g.ipv4()
		return planted{label{t, v}, g.pick("from IP ", "client ", "server at ", "blocked ") + v, "client_ip", v}
	case IPV6:
		v := g.ipv6()
		return planted{label{t, v}, g.pick("from ", "address ", "peer ") + v, "ip", v}
	case URLCredentials:
		v := g.urlCreds()
		return planted{label{t, v}, g.pick("connect with ", "DSN ", "the export URL is ") + v, "dsn", v}
	default:
		v, ctx := g.secret()
		return planted{label{SECRET, v}, ctx, g.pick("api_key", "token", "password", "secret"), v}
	}
}

var (
	userOpeners  = []string{"Hi! ", "Hello, ", "Hey there. ", "Good morning. ", ""}
	userMiddles  = []string{"I need to change my booking", "I want to cancel my order", "please update my profile", "can you check my refund", "I'd like to add a bag"}
	agentOpeners = []string{"Thank you. ", "Sure, ", "I can help with that. ", "Got it. "}
)

func (g *gen) sample() sample {
	n := 1 + g.r.IntN(3)
	miss := g.r.IntN(4)
	var ps []planted
	for range n {
		ps = append(ps, g.plant())
	}
	var misses []string
	for range miss {
		misses = append(misses, g.nearMiss())
	}
	var labels []label
	for _, p := range ps {
		labels = append(labels, p.l)
	}
	switch where := g.pick("user", "user", "assistant", "system", "tool", "args"); where {
	case "tool", "args":
		obj := map[string]any{}
		for i, p := range ps {
			k := p.key
			if _, dup := obj[k]; dup {
				k = fmt.Sprintf("%s_%d", k, i)
			}
			if p.l.t == SECRET && g.r.IntN(2) == 0 {
				obj["note"+fmt.Sprint(i)] = p.phrase // in free text inside the JSON
			} else {
				obj[k] = p.value
			}
		}
		for i, m := range misses {
			obj[g.pick("order_id", "reservation_id", "payment_method_id", "comment", "flight", "updated_at")+fmt.Sprint(i)] = m
		}
		obj["user_id"] = g.pick(firstNames...) + "_" + g.pick(lastNames...) + "_" + g.digits(4)
		if where == "tool" {
			obj = map[string]any{"record": obj, "status": "ok", "count": 1 + g.r.IntN(5)}
		}
		b, _ := json.Marshal(obj)
		if where == "tool" && g.r.IntN(2) == 0 {
			b, _ = json.MarshalIndent(obj, "", "  ")
		}
		return sample{where: where, text: string(b), labels: labels}
	default:
		parts := []string{}
		for _, p := range ps {
			parts = append(parts, p.phrase)
		}
		parts = append(parts, misses...)
		g.r.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
		var b strings.Builder
		switch where {
		case "user":
			b.WriteString(g.pick(userOpeners...) + g.pick(userMiddles...) + ". ")
		case "assistant":
			b.WriteString(g.pick(agentOpeners...))
		case "system":
			b.WriteString("# Support Agent Policy\n\nThe current time is 2024-05-15 15:00:00 EST.\nEscalation contacts and infrastructure:\n- ")
		}
		for i, p := range parts {
			if i > 0 {
				b.WriteString(g.pick(", and ", ". Also, ", "; ", "\n- ", " and "))
			}
			b.WriteString(p)
		}
		b.WriteString(g.pick(".", "", " thanks!", ". Thank you."))
		return sample{where: where, text: b.String(), labels: labels}
	}
}

// requestFor wraps a sample into a chat-completion request (and an empty answer) at
// its place in a conversation.
func requestFor(s sample) []byte {
	msgs := []map[string]any{{"role": "system", "content": "You are a helpful airline agent."}}
	switch s.where {
	case "system":
		msgs[0]["content"] = s.text
	case "user":
		msgs = append(msgs, map[string]any{"role": "user", "content": s.text})
	case "assistant":
		msgs = append(msgs, map[string]any{"role": "assistant", "content": s.text})
	case "args":
		msgs = append(msgs, map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{
			"id": "call_1", "type": "function", "function": map[string]any{"name": "update_user", "arguments": s.text}}}})
	case "tool":
		msgs = append(msgs, map[string]any{"role": "tool", "tool_call_id": "call_1", "name": "get_user_details", "content": s.text})
	}
	b, _ := json.Marshal(map[string]any{"model": "gpt-4o", "messages": msgs})
	return b
}
