package inbox

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/rtm-project/rtm/topics"
)

var (
	now       = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	hsCurrent = []byte("shop-inbox-secret-current-0123456")
	hsOld     = []byte("shop-inbox-secret-previous-012345")
	rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _  = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
)

const issuer, audience = "https://shop.example.jp", "rtm-inbox"

func auth(t testing.TB, keys map[string]any) *Auth {
	t.Helper()
	a, err := NewAuth(AuthConfig{Issuer: issuer, Audience: audience, Keys: keys, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func allKeys() map[string]any {
	return map[string]any{"hs-2026-12": hsCurrent, "hs-2026-11": hsOld, "rs-1": &rsaKey.PublicKey, "es-1": &ecKey.PublicKey}
}

// claims is a valid member token's claims; edit takes away or changes one.
func claims(member string, edit ...func(*jwt.RegisteredClaims)) jwt.RegisteredClaims {
	c := jwt.RegisteredClaims{Issuer: issuer, Audience: jwt.ClaimStrings{audience}, Subject: member,
		IssuedAt: jwt.NewNumericDate(now.Add(-time.Minute)), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}
	for _, e := range edit {
		e(&c)
	}
	return c
}

func sign(t testing.TB, m jwt.SigningMethod, kid string, key any, c jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyMemberTokens(t *testing.T) {
	a := auth(t, allKeys())
	pubPEM, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"HS256, current key", sign(t, jwt.SigningMethodHS256, "hs-2026-12", hsCurrent, claims("M1")), true},
		{"HS256, previous key still active", sign(t, jwt.SigningMethodHS256, "hs-2026-11", hsOld, claims("M1")), true},
		{"RS256", sign(t, jwt.SigningMethodRS256, "rs-1", rsaKey, claims("M1")), true},
		{"ES256", sign(t, jwt.SigningMethodES256, "es-1", ecKey, claims("M1")), true},
		{"expired", sign(t, jwt.SigningMethodHS256, "hs-2026-12", hsCurrent, claims("M1", func(c *jwt.RegisteredClaims) {
			c.ExpiresAt = jwt.NewNumericDate(now.Add(-Leeway - time.Second))
		})), false},
		{"no expiry", sign(t, jwt.SigningMethodHS256, "hs-2026-12", hsCurrent, claims("M1", func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil })), false},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, "hs-2026-12", hsCurrent, claims("M1", func(c *jwt.RegisteredClaims) {
			c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour))
		})), false},
		{"other issuer", sign(t, jwt.SigningMethodHS256, "hs-2026-12", hsCurrent, claims("M1", func(c *jwt.RegisteredClaims) { c.Issuer = "https://evil.example" })), false},
		{"other audience", sign(t, jwt.SigningMethodHS256, "hs-2026-12", hsCurrent, claims("M1", func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"shop-app"} })), false},
		{"no subject", sign(t, jwt.SigningMethodHS256, "hs-2026-12", hsCurrent, claims("")), false},
		{"unknown kid", sign(t, jwt.SigningMethodHS256, "hs-2025", hsCurrent, claims("M1")), false},
		{"no kid among several keys", sign(t, jwt.SigningMethodHS256, "", hsCurrent, claims("M1")), false},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, "hs-2026-12", []byte("guessed-secret-guessed-secret-012"), claims("M1")), false},
		// Algorithm confusion: HS256 keyed with the RSA public key's bytes.
		{"HS256 with the RSA key's kid", sign(t, jwt.SigningMethodHS256, "rs-1", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubPEM}), claims("M1")), false},
		{"HS384 with an HS256 key", sign(t, jwt.SigningMethodHS384, "hs-2026-12", hsCurrent, claims("M1")), false},
		{"alg none", sign(t, jwt.SigningMethodNone, "hs-2026-12", jwt.UnsafeAllowNoneSignatureType, claims("M1")), false},
		{"garbage", "not.a.jwt", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		m, err := a.Verify(tt.token)
		if tt.ok && (err != nil || m != "M1") {
			t.Errorf("%s: %q, %v; want M1", tt.name, m, err)
		}
		if !tt.ok && err == nil {
			t.Errorf("%s: accepted for %q", tt.name, m)
		}
	}
	// Retiring a key (removing it from the settings) ends its tokens.
	old := sign(t, jwt.SigningMethodHS256, "hs-2026-11", hsOld, claims("M1"))
	if _, err := auth(t, map[string]any{"hs-2026-12": hsCurrent}).Verify(old); err == nil {
		t.Error("a token of a retired key verified")
	}
	// With one key, a token needs no kid.
	if m, err := auth(t, map[string]any{"only": hsCurrent}).Verify(sign(t, jwt.SigningMethodHS256, "", hsCurrent, claims("M1"))); err != nil || m != "M1" {
		t.Errorf("single key, no kid: %q, %v", m, err)
	}
}

func TestNewAuthRefusesWeakOrMissingSettings(t *testing.T) {
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	for name, tt := range map[string]struct {
		cfg  AuthConfig
		want string
	}{
		"no issuer":    {AuthConfig{Audience: audience, Keys: map[string]any{"k": hsCurrent}}, "the issuer is required"},
		"no audience":  {AuthConfig{Issuer: issuer, Keys: map[string]any{"k": hsCurrent}}, "the audience is required"},
		"no keys":      {AuthConfig{Issuer: issuer, Audience: audience}, "at least one verification key"},
		"short secret": {AuthConfig{Issuer: issuer, Audience: audience, Keys: map[string]any{"k": []byte("short")}}, "HS256 secret has 5 bytes; use at least 32"},
		"P-384":        {AuthConfig{Issuer: issuer, Audience: audience, Keys: map[string]any{"k": &ec384.PublicKey}}, "not on P-256"},
		"RSA 1024":     {AuthConfig{Issuer: issuer, Audience: audience, Keys: map[string]any{"k": &small.PublicKey}}, "RSA key has 1024 bits"},
		"private key":  {AuthConfig{Issuer: issuer, Audience: audience, Keys: map[string]any{"k": rsaKey}}, "unsupported key type"},
	} {
		if _, err := NewAuth(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", name, err, tt.want)
		}
	}
}

func TestParseKeys(t *testing.T) {
	dir := t.TempDir()
	der, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	pemFile := filepath.Join(dir, "es.pem")
	os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	keys, err := ParseKeys([]string{"hs1:" + string(hsCurrent)}, []string{"es1:" + pemFile})
	if err != nil || len(keys) != 2 {
		t.Fatalf("ParseKeys = %v, %v", keys, err)
	}
	a := auth(t, keys)
	if m, err := a.Verify(sign(t, jwt.SigningMethodES256, "es1", ecKey, claims("M7"))); err != nil || m != "M7" {
		t.Errorf("ES256 from the PEM file: %q, %v", m, err)
	}
	for name, tt := range map[string]struct {
		hs, files []string
		want      string
	}{
		"no kid":       {[]string{string(hsCurrent)}, nil, "inbox.jwt.hs256_keys[0]: want kid:value"},
		"twice":        {[]string{"a:" + string(hsCurrent), "a:" + string(hsOld)}, nil, `key ID "a" is given twice`},
		"missing file": {nil, []string{"k:" + filepath.Join(dir, "nope.pem")}, "inbox.jwt.public_key_files[0] (k)"},
		"not PEM":      {nil, []string{"k:" + pemFile + "x"}, "no such file"},
	} {
		if _, err := ParseKeys(tt.hs, tt.files); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", name, err, tt.want)
		}
	}
}

// fakeTable is the inbox table: M1 and M2 have messages.
type fakeTable map[string]*Inbox

func (fakeTable) Recovered() bool { return true }
func (f fakeTable) Get(k string) (any, error) {
	if in, ok := f[k]; ok {
		return in, nil
	}
	return nil, nil
}

// TestHandlerNeedsTheMembersOwnToken: the inbox answers its member's token
// only; without one, with a bad one, or with another member's — whether the
// inbox asked for exists or not — the answer is the same 401.
func TestHandlerNeedsTheMembersOwnToken(t *testing.T) {
	table := fakeTable{
		"M1": {Messages: []topics.InAppMessage{{DeliveryID: "D1", Title: "for M1"}}},
		"M2": {Messages: []topics.InAppMessage{{DeliveryID: "D2", Title: "for M2"}}},
	}
	srv := httptest.NewServer(Handler(table, auth(t, allKeys())))
	t.Cleanup(srv.Close)
	tokenM1 := sign(t, jwt.SigningMethodHS256, "hs-2026-12", hsCurrent, claims("M1"))
	tokenM9 := sign(t, jwt.SigningMethodHS256, "hs-2026-12", hsCurrent, claims("M9")) // a member with no inbox
	// get sends token as a bearer token, or as the whole Authorization
	// header when it has a space.
	get := func(path, token string) (int, string, http.Header) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if token != "" && !strings.Contains(token, " ") {
			token = "Bearer " + token
		}
		if token != "" {
			req.Header.Set("Authorization", token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	code, body, _ := get("/v1/inbox/M1", tokenM1)
	var in Inbox
	if err := json.Unmarshal([]byte(body), &in); code != http.StatusOK || err != nil || len(in.Messages) != 1 || in.Messages[0].Title != "for M1" {
		t.Fatalf("own inbox: %d %s", code, body)
	}
	if code, body, _ := get("/v1/inbox/M9", tokenM9); code != http.StatusOK || !strings.Contains(body, `"messages":[]`) {
		t.Errorf("own empty inbox: %d %s", code, body)
	}
	_, refusal, _ := get("/v1/inbox/M1", "")
	for name, tt := range map[string]struct{ path, token string }{
		"no token":                   {"/v1/inbox/M1", ""},
		"bad token":                  {"/v1/inbox/M1", tokenM1 + "x"},
		"expired token":              {"/v1/inbox/M1", sign(t, jwt.SigningMethodHS256, "hs-2026-12", hsCurrent, claims("M1", func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Hour)) }))},
		"another member (exists)":    {"/v1/inbox/M2", tokenM1},
		"another member (no inbox)":  {"/v1/inbox/M3", tokenM1},
		"another member (no member)": {"/v1/inbox/nobody", tokenM1},
		"basic auth":                 {"/v1/inbox/M1", "Basic TTE6cGFzc3dvcmQ="},
		"token without Bearer":       {"/v1/inbox/M1", "Token " + tokenM1},
	} {
		code, body, h := get(tt.path, tt.token)
		if code != http.StatusUnauthorized || body != refusal || h.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %q, want 401 %q with WWW-Authenticate", name, code, body, refusal)
		}
	}
	if nilAuth := httptest.NewServer(Handler(table, nil)); true {
		defer nilAuth.Close()
		resp, _ := http.Get(nilAuth.URL + "/v1/inbox/M1")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("no verifier configured: %d, want 401", resp.StatusCode)
		}
		resp.Body.Close()
	}
}

// FuzzVerify: no token crashes Verify, and none but a token signed with a
// configured key for the right issuer and audience yields a member.
//
//	go test ./processors/inbox -run '^$' -fuzz FuzzVerify -fuzztime 30s
func FuzzVerify(f *testing.F) {
	a := auth(f, allKeys())
	good := sign(f, jwt.SigningMethodHS256, "hs-2026-12", hsCurrent, claims("M1"))
	for _, s := range []string{good, sign(f, jwt.SigningMethodES256, "es-1", ecKey, claims("M1")),
		sign(f, jwt.SigningMethodNone, "hs-2026-12", jwt.UnsafeAllowNoneSignatureType, claims("M1")),
		"", ".", "..", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.", strings.Repeat("A", 500)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		m, err := a.Verify(raw)
		if err != nil {
			if err != ErrUnauthorized {
				t.Fatalf("error %v, want ErrUnauthorized", err)
			}
			return
		}
		if m == "" {
			t.Fatal("verified a token without a subject")
		}
		// Whatever verifies must carry a valid signature: re-parsing it
		// with no keys at all must fail.
		if _, err := auth(t, map[string]any{"other": []byte("an-unrelated-secret-0123456789abc")}).Verify(raw); err == nil {
			t.Fatalf("%q verified under an unrelated key too", raw)
		}
	})
}
