package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"
)

// Cookie names. Both are HttpOnly and SameSite=Strict, scoped to Prefix.
const (
	sessionCookie = "rtm_console"
	loginCookie   = "rtm_console_login"
)

// sessionKeys are derived from the administrator token, so a session
// survives a restart of the console and every session ends when the
// token is rotated — the one thing an operator does after a leak.
type sessionKeys struct {
	token []byte // sha256 of the admin token: compared in constant time
	mac   []byte
}

func newSessionKeys(token string) sessionKeys {
	sum := sha256.Sum256([]byte(token))
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("rtm console session v1"))
	return sessionKeys{token: sum[:], mac: m.Sum(nil)}
}

// tokenOK compares a given token with the configured one in constant
// time (of equal-length digests, so the length leaks nothing either).
func (k sessionKeys) tokenOK(given string) bool {
	sum := sha256.Sum256([]byte(given))
	return subtle.ConstantTimeCompare(sum[:], k.token) == 1
}

func (k sessionKeys) sign(parts ...string) string {
	m := hmac.New(sha256.New, k.mac)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// session is a signed-in user. Nonce is random per sign-in: the CSRF
// token is derived from it, so a token leaked from one session is
// worthless in the next.
type session struct {
	User    string    `json:"u"`
	Expires time.Time `json:"e"`
	Nonce   string    `json:"n"`
}

func (k sessionKeys) encode(s *session) string {
	b, _ := json.Marshal(s)
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + k.sign("session", payload)
}

func (k sessionKeys) decode(v string, now time.Time) (*session, bool) {
	payload, sig, ok := strings.Cut(v, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(k.sign("session", payload))) {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return nil, false
	}
	var s session
	if json.Unmarshal(b, &s) != nil || s.User == "" || s.Nonce == "" || !now.Before(s.Expires) {
		return nil, false
	}
	return &s, true
}

// csrf is the session's form token.
func (k sessionKeys) csrf(s *session) string { return k.sign("csrf", s.Nonce) }

func (k sessionKeys) csrfOK(s *session, given string) bool {
	return given != "" && hmac.Equal([]byte(given), []byte(k.csrf(s)))
}

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

func cookie(r *http.Request, name, value string, maxAge time.Duration) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: Prefix, MaxAge: int(maxAge / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil}
}

// requireSession lets h run only for a signed-in user: anyone else is
// sent to the sign-in page (and back afterwards, for a GET). A POST must
// also carry the session's CSRF token, or is refused with 403.
func (c *Console) requireSession(h func(http.ResponseWriter, *http.Request, *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var s *session
		if ck, err := r.Cookie(sessionCookie); err == nil {
			s, _ = c.keys.decode(ck.Value, c.now())
		}
		if s == nil {
			next := Prefix + "/"
			if r.Method == http.MethodGet {
				next = r.URL.RequestURI()
			}
			http.Redirect(w, r, Prefix+"/login?next="+url.QueryEscape(next), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			// Uploads are multipart: ParseMultipartForm reads the token
			// from the body (bounded by the handler's MaxBytesReader).
			if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
				r.Body = http.MaxBytesReader(w, r.Body, maxUploadBytes)
				if err := r.ParseMultipartForm(maxUploadMemory); err != nil {
					http.Error(w, "bad upload: "+err.Error(), http.StatusBadRequest)
					return
				}
			}
			if !c.keys.csrfOK(s, r.FormValue("csrf")) {
				c.log.Warn("console: POST without a valid CSRF token refused", "path", r.URL.Path, "user", s.User, "remote", clientIP(r))
				http.Error(w, "forbidden: this form has expired or did not come from the console; reload the page and try again", http.StatusForbidden)
				return
			}
		}
		h(w, r, s)
	})
}

type loginData struct {
	Next, User, Error string
	LoginCSRF         string
}

// loginPage shows the sign-in form. It sets a fresh login cookie whose
// signature the form carries: a sign-in POST from another site (login
// CSRF) has neither.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	nonce := randomToken()
	http.SetCookie(w, cookie(r, loginCookie, nonce, time.Hour))
	c.render(w, 0, nil, "login", "Sign in", "", loginData{Next: safeNext(r.URL.Query().Get("next")), LoginCSRF: c.keys.sign("login", nonce)})
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	ck, err := r.Cookie(loginCookie)
	if err != nil || !hmac.Equal([]byte(r.FormValue("csrf")), []byte(c.keys.sign("login", ck.Value))) {
		http.Error(w, "forbidden: open the sign-in page again", http.StatusForbidden)
		return
	}
	user := strings.TrimSpace(r.FormValue("user"))
	next := safeNext(r.FormValue("next"))
	again := func(status int, msg string) {
		nonce := randomToken()
		http.SetCookie(w, cookie(r, loginCookie, nonce, time.Hour))
		c.render(w, status, nil, "login", "Sign in", "", loginData{Next: next, User: user, Error: msg, LoginCSRF: c.keys.sign("login", nonce)})
	}
	ip := clientIP(r)
	if wait := c.limiter.wait(ip); wait > 0 {
		c.metrics.signins.WithLabelValues("throttled").Inc()
		c.log.Warn("console sign-in throttled", "user", user, "remote", ip, "retry_in", wait)
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds()+1)))
		again(http.StatusTooManyRequests, fmt.Sprintf("Too many failed sign-ins from your address: try again in %v.", wait.Round(time.Second)))
		return
	}
	if msg := validUser(user); msg != "" {
		again(http.StatusBadRequest, msg)
		return
	}
	if !c.keys.tokenOK(r.FormValue("token")) {
		c.limiter.failed(ip)
		c.metrics.signins.WithLabelValues("refused").Inc()
		c.log.Warn("console sign-in refused", "user", user, "remote", ip)
		again(http.StatusUnauthorized, "Wrong password or token.")
		return
	}
	c.limiter.succeeded(ip)
	c.metrics.signins.WithLabelValues("ok").Inc()
	c.log.Info("console sign-in", "user", user, "remote", ip)
	s := &session{User: user, Expires: c.now().Add(c.cfg.SessionTTL), Nonce: randomToken()}
	http.SetCookie(w, cookie(r, sessionCookie, c.keys.encode(s), c.cfg.SessionTTL))
	http.SetCookie(w, cookie(r, loginCookie, "", -time.Second))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	http.SetCookie(w, cookie(r, sessionCookie, "", -time.Second))
	c.log.Info("console sign-out", "user", s.User, "remote", clientIP(r))
	http.Redirect(w, r, Prefix+"/login", http.StatusSeeOther)
}

// validUser checks the name a change will be recorded under.
func validUser(u string) string {
	if u == "" || len(u) > 64 {
		return "Give your name (1 to 64 characters): it is recorded with every change you make."
	}
	for _, r := range u {
		if !unicode.IsPrint(r) {
			return "Your name must be printable characters."
		}
	}
	return ""
}

// safeNext keeps a post-sign-in redirect inside the console.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix+"/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix + "/"
	}
	return next
}

// clientIP is the peer's address. Behind a reverse proxy every client
// shares the proxy's, so the sign-in slowdown then applies to all of them
// together: stricter, never looser.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// limiter slows down guessing: after freeFailures failed sign-ins from an
// address, each next attempt must wait twice as long as the one before
// (1 s, 2 s, 4 s, … up to maxWait). A success clears the address.
type limiter struct {
	now  func() time.Time
	mu   sync.Mutex
	byIP map[string]*failures
}

type failures struct {
	n    int
	last time.Time
}

const (
	freeFailures = 3
	maxWait      = 5 * time.Minute
	// maxTracked bounds the limiter's memory; addresses idle for maxWait
	// are forgotten first.
	maxTracked = 10000
)

func newLimiter(now func() time.Time) *limiter {
	return &limiter{now: now, byIP: map[string]*failures{}}
}

func (f *failures) backoff() time.Duration {
	if f.n < freeFailures {
		return 0
	}
	return min(time.Second<<min(f.n-freeFailures, 20), maxWait)
}

// wait is how long ip must still wait before its next attempt.
func (l *limiter) wait(ip string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.byIP[ip]
	if f == nil {
		return 0
	}
	return max(f.last.Add(f.backoff()).Sub(l.now()), 0)
}

func (l *limiter) failed(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.byIP) >= maxTracked {
		for k, f := range l.byIP {
			if now.Sub(f.last) > maxWait {
				delete(l.byIP, k)
			}
		}
	}
	f := l.byIP[ip]
	if f == nil {
		if len(l.byIP) >= maxTracked {
			return // under a flood of addresses: the token's strength must do
		}
		f = &failures{}
		l.byIP[ip] = f
	}
	f.n++
	f.last = now
}

func (l *limiter) succeeded(ip string) {
	l.mu.Lock()
	delete(l.byIP, ip)
	l.mu.Unlock()
}
