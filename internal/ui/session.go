package ui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/downshift-dev/downshift/internal/auth"
)

// Cookies. Both are HttpOnly, SameSite=Strict, Path=/ui, and Secure over TLS.
const (
	// sessionCookie holds a session: the key's id, when the session ends, and a
	// random session id, signed. Never the key.
	sessionCookie = "downshift_session"
	// loginCookie holds a random nonce that the login form's CSRF token is bound to,
	// so that another site cannot log a browser in with its own key.
	loginCookie = "downshift_login"
)

// session is a logged-in person: the principal of their key as it is now.
type session struct {
	id        string // random, hex; what CSRF tokens and logouts are bound to
	keyID     string
	expires   time.Time
	principal *auth.Principal
}

// sessions signs and checks session cookies and CSRF tokens under one key, and
// remembers the sessions logged out before their end, until that end.
type sessions struct {
	key []byte
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	ended map[string]time.Time // session id -> when it would have expired
}

func newSessions(key []byte, ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{key: key, ttl: ttl, now: now, ended: map[string]time.Time{}}
}

func (ss *sessions) mac(purpose, msg string) []byte {
	m := hmac.New(sha256.New, ss.key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// start opens a session for the key with this id and returns the cookie that
// carries it. The cookie's lifetime is a Max-Age rather than an expiry date, so that
// a browser whose clock is off keeps it as long; the signed expiry is what counts.
func (ss *sessions) start(keyID string, secure bool) *http.Cookie {
	var id [16]byte
	_, _ = rand.Read(id[:])
	expires := ss.now().Add(ss.ttl)
	payload := strings.Join([]string{keyID, strconv.FormatInt(expires.Unix(), 10), hex.EncodeToString(id[:])}, "|")
	value := base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." +
		base64.RawURLEncoding.EncodeToString(ss.mac("session", payload))
	return &http.Cookie{Name: sessionCookie, Value: value, Path: "/ui", MaxAge: int(ss.ttl / time.Second),
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode}
}

// read returns the request's session: a cookie signed under this key, not expired,
// not logged out, whose key is still an active admin key. The principal is the key's
// as the keys' last refresh loaded it, so a changed role holds at once.
func (ss *sessions) read(r *http.Request, keys *auth.Keys) (*session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, false
	}
	enc, sig, ok := strings.Cut(c.Value, ".")
	if !ok {
		return nil, false
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(enc)
	mac, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, ss.mac("session", string(payload))) {
		return nil, false
	}
	parts := strings.Split(string(payload), "|")
	if len(parts) != 3 {
		return nil, false
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return nil, false
	}
	s := &session{keyID: parts[0], expires: time.Unix(exp, 0), id: parts[2]}
	if !ss.now().Before(s.expires) || ss.isEnded(s.id) {
		return nil, false
	}
	if s.principal, ok = keys.AdminByID(s.keyID); !ok {
		return nil, false
	}
	return s, true
}

// end logs a session out: its cookie is refused from now on, even if a copy is kept.
func (ss *sessions) end(s *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	for id, exp := range ss.ended {
		if !now.Before(exp) {
			delete(ss.ended, id)
		}
	}
	ss.ended[s.id] = s.expires
}

func (ss *sessions) isEnded(id string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	_, ok := ss.ended[id]
	return ok
}

// csrf is the token every form of a session carries.
func (ss *sessions) csrf(s *session) string {
	return base64.RawURLEncoding.EncodeToString(ss.mac("csrf", s.id))
}

func (ss *sessions) checkCSRF(s *session, token string) bool {
	got, err := base64.RawURLEncoding.DecodeString(token)
	return err == nil && token != "" && hmac.Equal(got, ss.mac("csrf", s.id))
}

// loginToken is the login form's CSRF token, bound to the login cookie's nonce.
func (ss *sessions) loginToken(nonce string) string {
	return base64.RawURLEncoding.EncodeToString(ss.mac("login", nonce))
}

func (ss *sessions) checkLogin(r *http.Request) bool {
	c, err := r.Cookie(loginCookie)
	if err != nil || c.Value == "" {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(r.PostFormValue("csrf"))
	return err == nil && hmac.Equal(got, ss.mac("login", c.Value))
}

// safeNext returns where to go after logging in: next when it is a path of the
// dashboard on this site, else the overview. It refuses absolute URLs,
// protocol-relative ones ("//host") and backslashes, which some browsers read as
// slashes.
func safeNext(next string) string {
	const home = "/ui/"
	if next == "" || !strings.HasPrefix(next, "/ui/") || strings.ContainsAny(next, "\\\r\n\t") {
		return home
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || strings.HasPrefix(next, "//") {
		return home
	}
	if clean := path.Clean(u.Path); clean != u.Path && clean+"/" != u.Path {
		return home
	}
	if strings.HasPrefix(u.Path, "/ui/login") || strings.HasPrefix(u.Path, "/ui/logout") {
		return home
	}
	return next
}
