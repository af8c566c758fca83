package ui

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestPagesSendAPersonWithoutSessionToLogIn(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	for _, path := range []string{"/ui/", "/ui/workloads?period=7d", "/ui/workloads/route", "/ui/models", "/ui/calls/x", "/ui/nope"} {
		r := b.get(path)
		want := "/ui/login?next=" + url.QueryEscape(path)
		if r.status != http.StatusSeeOther || r.location() != want {
			t.Errorf("GET %s: %d to %q; want 303 to %q", path, r.status, r.location(), want)
		}
	}
	if r := b.post("/ui/workloads/route/policy", url.Values{"mode": {"shadow"}}); r.status != http.StatusForbidden {
		t.Errorf("POST without a session: %d; want 403", r.status)
	}
	// The stylesheet needs no session, and comes from this server only.
	r := b.get("/ui/static/ui.css")
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/css") {
		t.Errorf("stylesheet: %d %s", r.status, r.header.Get("Content-Type"))
	}
	if strings.Contains(r.body, "http://") || strings.Contains(r.body, "https://") || strings.Contains(r.body, "@import") {
		t.Error("the stylesheet loads something from elsewhere")
	}
}

func TestLoginOpensASessionThatNamesTheKeyAndLogoutEndsIt(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	page := b.get("/ui/login?next=" + url.QueryEscape("/ui/models?period=7d"))
	if page.status != http.StatusOK || !strings.Contains(page.body, `data-testid="login-form"`) {
		t.Fatalf("login page: %d\n%s", page.status, page.body)
	}
	r := b.post("/ui/login", url.Values{"csrf": {csrf(t, page.body)}, "key": {e.secrets["admin"]}, "next": {"/ui/models?period=7d"}})
	if r.status != http.StatusSeeOther || r.location() != "/ui/models?period=7d" {
		t.Fatalf("login: %d to %q; want 303 to the page asked for\n%s", r.status, r.location(), r.body)
	}
	var session *http.Cookie
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == sessionCookie {
			session = c
		}
	}
	switch {
	case session == nil:
		t.Fatal("no session cookie")
	case !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Path != "/ui" || session.Secure:
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/ui, not Secure without TLS", session)
	case strings.Contains(session.Value, e.secrets["admin"]) || strings.Contains(r.header.Get("Set-Cookie"), e.secrets["admin"][4:20]):
		t.Error("the session cookie holds the key")
	}
	home := b.ok("/ui/")
	if !strings.Contains(home, `data-testid="whoami">alice`) {
		t.Errorf("the overview does not say who is logged in:\n%s", home)
	}
	if strings.Contains(e.logs.String(), e.secrets["admin"]) || strings.Contains(e.logs.String(), session.Value) {
		t.Error("the log holds the key or the cookie")
	}

	// Logging out ends this session, even for a copy of its cookie kept elsewhere.
	copyOf := e.browser()
	copyOf.client.Jar.SetCookies(mustURL(t, e.srv.URL+"/ui/"), []*http.Cookie{{Name: sessionCookie, Value: session.Value, Path: "/ui"}})
	copyOf.ok("/ui/")
	if r := b.get("/ui/logout"); r.status != http.StatusOK {
		t.Fatalf("logout page: %d", r.status)
	}
	r = b.post("/ui/logout", url.Values{"csrf": {csrf(t, home)}})
	if r.status != http.StatusSeeOther || r.location() != "/ui/login" {
		t.Fatalf("logout: %d to %q", r.status, r.location())
	}
	for name, br := range map[string]*browser{"the browser": b, "a copy of the cookie": copyOf} {
		if r := br.get("/ui/"); r.status != http.StatusSeeOther {
			t.Errorf("%s after logout: %d; want 303 to the login page", name, r.status)
		}
	}
}

func TestLoginRefusesWhatIsNotAnActiveAdminKey(t *testing.T) {
	e := newEnv(t, false)
	for _, c := range []struct {
		name, key, want string
	}{
		{"no key", "", "Enter an admin key"},
		{"wrong key", "dsa_" + strings.Repeat("x", 43), "not an active admin key"},
		{"revoked key", e.secrets["revoked admin"], "not an active admin key"},
		{"gateway key", e.secrets["gateway key"], "gateway key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := e.browser()
			page := b.get("/ui/login")
			r := b.post("/ui/login", url.Values{"csrf": {csrf(t, page.body)}, "key": {c.key}})
			if r.status != http.StatusUnauthorized || !strings.Contains(r.body, c.want) {
				t.Errorf("%d; want 401 saying %q\n%s", r.status, c.want, r.body)
			}
			if c.key != "" && strings.Contains(r.body, c.key) {
				t.Error("the page shows the key back")
			}
			if r := b.get("/ui/"); r.status != http.StatusSeeOther {
				t.Errorf("after a refused login the overview gives %d; want 303", r.status)
			}
		})
	}
	t.Run("no form token", func(t *testing.T) {
		b := e.browser()
		b.get("/ui/login")
		r := b.post("/ui/login", url.Values{"key": {e.secrets["admin"]}})
		if r.status != http.StatusForbidden {
			t.Errorf("%d; want 403", r.status)
		}
	})
	t.Run("another browser's form token", func(t *testing.T) {
		token := csrf(t, e.browser().get("/ui/login").body)
		b := e.browser()
		r := b.post("/ui/login", url.Values{"csrf": {token}, "key": {e.secrets["admin"]}})
		if r.status != http.StatusForbidden {
			t.Errorf("%d; want 403 (the login cookie is missing)", r.status)
		}
	})
	if strings.Contains(e.logs.String(), e.secrets["revoked admin"]) || strings.Contains(e.logs.String(), e.secrets["gateway key"]) {
		t.Error("the log holds a key")
	}
}

func TestSessionEndsAfterItsTime(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.login("viewer")
	e.clock.advance(DefaultSessionTTL - time.Second)
	b.ok("/ui/")
	e.clock.advance(time.Second)
	if r := b.get("/ui/workloads"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/ui/login") {
		t.Errorf("after %v: %d %q; want 303 to the login page", DefaultSessionTTL, r.status, r.location())
	}
}

func TestSessionEndsWhenItsKeyIsRevoked(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.login("admin")
	b.ok("/ui/")
	if err := e.db.RevokeKey(context.Background(), e.ids["admin"], t0); err != nil {
		t.Fatal(err)
	}
	if err := e.keys.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := b.get("/ui/"); r.status != http.StatusSeeOther {
		t.Errorf("after the key was revoked: %d; want 303 to the login page", r.status)
	}
}

func TestSessionCookieCannotBeForged(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.login("viewer")
	var value string
	for _, c := range b.client.Jar.Cookies(mustURL(t, e.srv.URL+"/ui/")) {
		if c.Name == sessionCookie {
			value = c.Value
		}
	}
	enc, sig, _ := strings.Cut(value, ".")
	// The same signature on a session naming the admin key.
	forged := encodeB64(strings.Replace(decodeB64(t, enc), e.ids["viewer"], e.ids["admin"], 1)) + "." + sig
	for name, v := range map[string]string{"forged": forged, "unsigned": enc, "garbage": "x.y"} {
		other := e.browser()
		other.client.Jar.SetCookies(mustURL(t, e.srv.URL+"/ui/"), []*http.Cookie{{Name: sessionCookie, Value: v, Path: "/ui"}})
		if r := other.get("/ui/"); r.status != http.StatusSeeOther {
			t.Errorf("%s cookie: %d; want 303 to the login page", name, r.status)
		}
	}
}

func TestSafeNextKeepsPeopleOnTheDashboard(t *testing.T) {
	for next, want := range map[string]string{
		"":                        "/ui/",
		"/ui/models?period=7d":    "/ui/models?period=7d",
		"/ui/workloads/a%2Fb":     "/ui/workloads/a%2Fb",
		"https://evil.example/":   "/ui/",
		"//evil.example/ui/":      "/ui/",
		"/\\evil.example":         "/ui/",
		"/ui/\\evil":              "/ui/",
		"/api/keys":               "/ui/",
		"/ui/../api/keys":         "/ui/",
		"/ui/login?next=/ui/":     "/ui/",
		"/ui/logout":              "/ui/",
		"javascript:alert(1)":     "/ui/",
		"/ui/x\r\nSet-Cookie: a=": "/ui/",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q; want %q", next, got, want)
		}
	}
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func encodeB64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func decodeB64(t testing.TB, s string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCookiesAreSecureOverTLSOrWhenAsked(t *testing.T) {
	for _, c := range []struct {
		name   string
		tls    bool
		option bool
	}{{"plain HTTP", false, false}, {"TLS", true, false}, {"behind a TLS proxy", false, true}} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, false)
			u, err := New(Options{Store: e.db, Keys: e.keys, SecureCookies: c.option})
			if err != nil {
				t.Fatal(err)
			}
			target := "http://downshift.example/ui/login"
			if c.tls {
				target = "https://downshift.example/ui/login"
			}
			req := httptest.NewRequest(http.MethodGet, target, nil)
			w := httptest.NewRecorder()
			u.ServeHTTP(w, req)
			cookies := w.Result().Cookies()
			if len(cookies) != 1 || cookies[0].Secure != (c.tls || c.option) {
				t.Errorf("cookies %+v: want one, Secure %v", cookies, c.tls || c.option)
			}
		})
	}
}
