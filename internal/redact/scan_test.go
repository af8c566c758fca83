package redact

import (
	"strings"
	"sync"
	"testing"
)

var (
	sharedOnce sync.Once
	shared     *Redactor
	sharedErr  error
)

// testRedactor returns one Redactor with default options, built once for the package's
// tests (gitleaks' rules take a while to build).
func testRedactor(t testing.TB) *Redactor {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = New(Options{}) })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func TestRedactTextFindsEachType(t *testing.T) {
	r := testRedactor(t)
	tests := []struct {
		name, in, want string
	}{
		{"email", "write to Mia.Li3818@example.com today", "write to <EMAIL_1> today"},
		{"email sentence end", "mail: a.b+tag@mail.example.co.uk.", "mail: <EMAIL_1>."},
		{"phone e164", "call +44 20 7946 0958 now", "call <PHONE_1> now"},
		{"phone e164 compact", "my number is +14155550132", "my number is <PHONE_1>"},
		{"phone us parens", "reach me at (415) 555-0132.", "reach me at <PHONE_1>."},
		{"phone us dashes", "415-555-0132", "<PHONE_1>"},
		{"phone us dots", "it is 415.555.0132", "it is <PHONE_1>"},
		{"phone us leading 1", "dial 1-415-555-0132", "dial <PHONE_1>"},
		{"phone plus paren", "+1 (415) 555-0132", "<PHONE_1>"},
		{"phone uk national", "office 020 7946 0958", "office <PHONE_1>"},
		{"phone fr national", "tel 01 23 45 67 89", "tel <PHONE_1>"},
		{"phone bare with context", "my phone: 4155550132", "my phone: <PHONE_1>"},
		{"card visa spaces", "card 4111 1111 1111 1111 exp 12/27", "card <CARD_1> exp 12/27"},
		{"card mc dashes", "5555-5555-5555-4444", "<CARD_1>"},
		{"card amex", "3782 822463 10005", "<CARD_1>"},
		{"card bare", "num 4242424242424242.", "num <CARD_1>."},
		{"iban spaced", "IBAN: DE89 3704 0044 0532 0130 00 please", "IBAN: <IBAN_1> please"},
		{"iban bare", "GB82WEST12345698765432", "<IBAN_1>"},
		{"ssn", "SSN 123-45-6789", "SSN <SSN_1>"},
		{"ipv4", "from 192.168.1.20, again", "from <IPV4_1>, again"},
		{"ipv6", "host 2001:db8::8a2e:370:7334 up", "host <IPV6_1> up"},
		{"ipv6 bracketed", "http://[fe80::1]:8080/", "http://[<IPV6_1>]:8080/"},
		{"url credentials", "dsn postgres://admin:s3cr3t@db.example.com:5432/orders ok", "dsn <URL_CREDENTIALS_1> ok"},
		{"openai key", "key sk-proj-abcdefghijklmnopqrstuvwxyz0123456789", "key <SECRET_1>"},
		{"github token", "ghp_abcdefghijklmnopqrstuvwxyzABCDEF0123", "<SECRET_1>"},
		{"aws key id", "AKIAIOSFODNN7EXAMPLE", "<SECRET_1>"},
		{"jwt", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "Bearer <SECRET_1>"},
		{"password assignment", `password="hunter2!x"`, `password="<SECRET_1>"`},
		{"same value same placeholder", "a@example.com, b@example.com, A@example.com", "<EMAIL_1>, <EMAIL_2>, <EMAIL_1>"},
		{"placeholder kept", "see <EMAIL_1> and <PHONE_2>", "see <EMAIL_1> and <PHONE_2>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.RedactText(tt.in, nil); got != tt.want {
				t.Errorf("RedactText(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRedactTextLeavesNearMisses(t *testing.T) {
	r := testRedactor(t)
	for _, in := range []string{
		"order #W2378156 shipped",
		"user id mia_li_3668, reservation 8JX2KQ, flight HAT123",
		"payment credit_card_7815826 and gift_card_4421486",
		"on 2024-05-15 at 15:00:00 EST",
		"it costs $1,234.56 or €1.234,56",
		"version 1.2.3 and 1.2.3.4.5, v2.10.0",
		"card 4111 1111 1111 1112 fails Luhn",
		"IBAN DE89 3704 0044 0532 0130 01 fails mod-97",
		"SSN 000-12-3456 and 666-12-3456 and 912-12-3456 are never issued",
		"item 1002345678 and product 6086499569",
		"ISBN 978-3-16-148410-0",
		"300.400.500.600 is not an address",
		"std::vector and a::b",
		"time 10:30:45 and 12:00",
		"the key, however, is to be kind",
	} {
		if got := r.RedactText(in, nil); got != in {
			t.Errorf("RedactText(%q) = %q, want it unchanged", in, got)
		}
	}
}

func TestPseudonymsAreKeyedAndStable(t *testing.T) {
	r, err := New(Options{PseudonymKey: []byte("k1"), NoGitleaks: true})
	if err != nil {
		t.Fatal(err)
	}
	a := r.RedactText("Mia.Li@Example.com", nil)
	b := r.RedactText("mia.li@example.com", nil)
	if a != b || !strings.HasPrefix(a, "<EMAIL_") || len(a) != len("<EMAIL_12345678>") {
		t.Errorf("pseudonyms %q and %q: want the same <EMAIL_xxxxxxxx>", a, b)
	}
	r2, _ := New(Options{PseudonymKey: []byte("k2"), NoGitleaks: true})
	if c := r2.RedactText("mia.li@example.com", nil); c == a {
		t.Errorf("another key gave the same pseudonym %q", c)
	}
	p1 := r.RedactText("+1 415-555-0132", nil)
	p2 := r.RedactText("+1 (415) 555 0132", nil)
	if p1 != p2 {
		t.Errorf("phones normalise to digits: %q != %q", p1, p2)
	}
}
