package console

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// CookieName is the name of the console's session cookie.
const CookieName = "relay_console"

// SessionLifetime is how long a console login lasts.
const SessionLifetime = 12 * time.Hour

// sessionVersion starts every session value, so that the format can change.
const sessionVersion = "v1"

// NewSession returns a session value for the admin token token that expires
// SessionLifetime after now. The value is "v1.<unix expiry>.<mac>", the mac
// an HMAC-SHA256 of the expiry keyed by the token: it proves the token was
// known without containing it, every relay sharing the token accepts it, and
// changing the token ends every session.
func NewSession(token string, now time.Time) string {
	exp := strconv.FormatInt(now.Add(SessionLifetime).Unix(), 10)
	return sessionVersion + "." + exp + "." + sessionMAC(token, exp)
}

// ValidSession reports whether value is a session NewSession made for token
// that has not expired at now. The mac is compared in constant time; an
// empty token has no sessions.
func ValidSession(token, value string, now time.Time) bool {
	if token == "" {
		return false
	}
	version, rest, ok := strings.Cut(value, ".")
	if !ok || version != sessionVersion {
		return false
	}
	exp, mac, ok := strings.Cut(rest, ".")
	if !ok {
		return false
	}
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || !now.Before(time.Unix(unix, 0)) {
		return false
	}
	return hmac.Equal([]byte(mac), []byte(sessionMAC(token, exp)))
}

// Authorized reports whether r carries a valid session cookie for token.
func Authorized(r *http.Request, token string, now time.Time) bool {
	c, err := r.Cookie(CookieName)
	return err == nil && ValidSession(token, c.Value, now)
}

func sessionMAC(token, exp string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("relay console session " + sessionVersion + " " + exp))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// sessionCookie is the cookie that carries value (an empty value with
// MaxAge -1 removes it).
func sessionCookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     CookieName,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	}
}
