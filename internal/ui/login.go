package ui

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/downshift-dev/downshift/internal/auth"
)

type loginView struct {
	common
	Next  string
	Error string
	Lasts string // how long a session lasts, in words
}

// loginForm answers GET /ui/login: the form for an admin key. A person already
// logged in goes where next says.
func (u *UI) loginForm(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	next := safeNext(r.URL.Query().Get("next"))
	if _, ok := u.sessions.read(r, u.keys); ok {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	u.showLogin(w, r, http.StatusOK, next, "")
}

// showLogin renders the login form with a fresh nonce cookie for its CSRF token.
func (u *UI) showLogin(w http.ResponseWriter, r *http.Request, status int, next, msg string) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	nonce := hex.EncodeToString(b[:])
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: nonce, Path: "/ui", MaxAge: 3600,
		HttpOnly: true, Secure: u.secureCookie(r), SameSite: http.SameSiteStrictMode})
	v := loginView{common: u.common(r, nil, "Log in", ""), Next: next, Error: msg, Lasts: lasts(u.sessions.ttl)}
	v.CSRF = u.sessions.loginToken(nonce)
	if err := u.render(w, status, "login", v); err != nil {
		u.log.Error("dashboard login page failed", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
}

// login answers POST /ui/login: a valid admin key opens a session and goes where
// next says; anything else shows the form again with what was wrong, never the key.
func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	next := safeNext(r.PostFormValue("next"))
	if !u.sessions.checkLogin(r) {
		u.log.Info("dashboard login refused: no or wrong form token", "remote", r.RemoteAddr)
		u.showLogin(w, r, http.StatusForbidden, next, "The login form had expired or did not come from this dashboard: try again.")
		return
	}
	p, err := u.keys.Admin(r.PostFormValue("key"))
	if err != nil {
		msg := "This is not an active admin key."
		switch {
		case errors.Is(err, auth.ErrMissingKey):
			msg = "Enter an admin key."
		case errors.Is(err, auth.ErrGatewayKey):
			msg = "This is a gateway key, for agents; the dashboard needs an admin key."
		}
		u.log.Info("dashboard login refused", "remote", r.RemoteAddr, "err", err)
		u.showLogin(w, r, http.StatusUnauthorized, next, msg)
		return
	}
	http.SetCookie(w, u.sessions.start(p.KeyID, u.secureCookie(r)))
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Path: "/ui", MaxAge: -1, HttpOnly: true,
		Secure: u.secureCookie(r), SameSite: http.SameSiteStrictMode})
	u.log.Info("dashboard login", "key", p.KeyID, "role", p.Role, "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logoutForm answers GET /ui/logout: a button that logs out (a POST, so that
// another site cannot log a person out).
func (u *UI) logoutForm(w http.ResponseWriter, r *http.Request, s *session) error {
	return u.render(w, http.StatusOK, "logout", u.common(r, s, "Log out", ""))
}

// logout answers POST /ui/logout: the session ends here and now, even for a copy of
// its cookie.
func (u *UI) logout(w http.ResponseWriter, r *http.Request, s *session) error {
	u.sessions.end(s)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Path: "/ui", MaxAge: -1, HttpOnly: true,
		Secure: u.secureCookie(r), SameSite: http.SameSiteStrictMode})
	u.log.Info("dashboard logout", "key", s.keyID, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
	return nil
}

// lasts writes a session's length in words: "12 hours".
func lasts(d time.Duration) string {
	switch {
	case d%time.Hour == 0 && d == time.Hour:
		return "an hour"
	case d%time.Hour == 0:
		return fmt.Sprintf("%d hours", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%d minutes", d/time.Minute)
	}
	return d.String()
}

// secureCookie reports whether the response's cookies are to be Secure.
func (u *UI) secureCookie(r *http.Request) bool { return u.secure || r.TLS != nil }
