package tracking

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

var (
	oldSecret = []byte("old-secret-old-secret-old-secret")
	newSecret = []byte("new-secret-new-secret-new-secret")
	now       = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
)

func keyring(t testing.TB, signing []byte, verifyOnly ...[]byte) *Keyring {
	t.Helper()
	kr, err := NewKeyring(signing, verifyOnly...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func seal(t testing.TB, kr *Keyring, tr Tracking) string {
	t.Helper()
	tok, err := kr.Seal(tr)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTokenRoundTripEveryKind(t *testing.T) {
	kr := keyring(t, newSecret)
	exp := now.Add(time.Hour)
	for _, tr := range []Tracking{
		{DeliveryID: "D1", MemberID: "M00042", CampaignID: "C1", Channel: "mail", Kind: KindOpen, Expires: exp},
		{DeliveryID: "D1", MemberID: "M00042", CampaignID: "C1", Channel: "line", URL: "https://shop.example/i/1?utm=rtm", Kind: KindClick, Expires: exp},
		{DeliveryID: "D1", MemberID: "M00042", Channel: "mail", Kind: KindUnsubscribe, Expires: exp},
	} {
		tok := seal(t, kr, tr)
		got, err := kr.Open(tok, tr.Kind, now)
		if err != nil || got != tr {
			t.Errorf("%s: Open = %+v, %v; want %+v", tr.Kind, got, err, tr)
		}
		// The member ID is opaque: neither it nor its base64 is in the URL.
		for _, leak := range []string{"M00042", base64.RawURLEncoding.EncodeToString([]byte(`"M00042"`))[:8]} {
			if strings.Contains(tok, leak) {
				t.Errorf("%s token %s shows the member (%s)", tr.Kind, tok, leak)
			}
		}
		for _, other := range []string{KindOpen, KindClick, KindUnsubscribe} {
			if other == tr.Kind {
				continue
			}
			if _, err := kr.Open(tok, other, now); err == nil {
				t.Errorf("a %s token opened as %s", tr.Kind, other)
			}
		}
	}
}

func TestTokenExpiredOrTamperedIsRefused(t *testing.T) {
	kr := keyring(t, newSecret)
	tok := seal(t, kr, Tracking{DeliveryID: "D1", MemberID: "M1", Kind: KindOpen, Expires: now.Add(time.Hour)})
	if _, err := kr.Open(tok, KindOpen, now.Add(time.Hour-time.Second)); err != nil {
		t.Errorf("a second before expiry: %v", err)
	}
	if _, err := kr.Open(tok, KindOpen, now.Add(time.Hour)); err != ErrBadToken {
		t.Errorf("at expiry: %v, want ErrBadToken", err)
	}
	// Every single-character change anywhere fails.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range len(tok) {
		if tok[i] == '.' {
			continue
		}
		c := alphabet[(strings.IndexByte(alphabet, tok[i])+1)%len(alphabet)]
		bad := tok[:i] + string(c) + tok[i+1:]
		if got, err := kr.Open(bad, KindOpen, now); err == nil {
			t.Fatalf("tampered at %d (%s) opened: %+v", i, bad, got)
		}
	}
	for name, bad := range map[string]string{"empty": "", "no dot": "abc", "kid only": tok[:strings.IndexByte(tok, '.')+1],
		"short body": tok[:strings.IndexByte(tok, '.')+4], "not base64": tok + "!"} {
		if _, err := kr.Open(bad, KindOpen, now); err != ErrBadToken {
			t.Errorf("%s: %v, want ErrBadToken", name, err)
		}
	}
}

// TestTokenRotation: during a rotation the new key signs and the old one
// still verifies; once the old key is retired (removed), its tokens stop
// opening.
func TestTokenRotation(t *testing.T) {
	before := keyring(t, oldSecret)
	during := keyring(t, newSecret, oldSecret)
	after := keyring(t, newSecret)
	tr := Tracking{DeliveryID: "D1", MemberID: "M1", Kind: KindClick, URL: "https://shop.example/", Expires: now.Add(time.Hour)}
	oldTok, newTok := seal(t, before, tr), seal(t, during, tr)
	if before.SigningKeyID() == during.SigningKeyID() || !strings.HasPrefix(newTok, during.SigningKeyID()+".") {
		t.Fatalf("key IDs: old %s, new %s, token %s", before.SigningKeyID(), during.SigningKeyID(), newTok)
	}
	tests := []struct {
		name string
		kr   *Keyring
		tok  string
		ok   bool
	}{
		{"old key, old token", before, oldTok, true},
		{"old key, new token", before, newTok, false},
		{"rotating, old token", during, oldTok, true},
		{"rotating, new token", during, newTok, true},
		{"old key retired, old token", after, oldTok, false},
		{"old key retired, new token", after, newTok, true},
	}
	for _, tt := range tests {
		_, err := tt.kr.Open(tt.tok, KindClick, now)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestKeyringAndSealRefuseBadInput(t *testing.T) {
	if _, err := NewKeyring([]byte("sixteen-bytes-ok")); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("16-byte secret: %v", err)
	}
	if _, err := NewKeyring(newSecret, []byte("short")); err == nil || !strings.Contains(err.Error(), "verify-only secret 1") {
		t.Errorf("short verify-only secret: %v", err)
	}
	if _, err := NewKeyring(newSecret, newSecret); err == nil {
		t.Error("the same secret twice was accepted")
	}
	kr := keyring(t, newSecret)
	exp := now.Add(time.Hour)
	for name, tr := range map[string]Tracking{
		"no member":      {DeliveryID: "D1", Kind: KindOpen, Expires: exp},
		"no delivery":    {MemberID: "M1", Kind: KindOpen, Expires: exp},
		"no expiry":      {DeliveryID: "D1", MemberID: "M1", Kind: KindOpen},
		"unknown kind":   {DeliveryID: "D1", MemberID: "M1", Kind: "login", Expires: exp},
		"javascript url": {DeliveryID: "D1", MemberID: "M1", Kind: KindClick, URL: "javascript:alert(1)", Expires: exp},
		"relative url":   {DeliveryID: "D1", MemberID: "M1", Kind: KindClick, URL: "/items/1", Expires: exp},
	} {
		if tok, err := kr.Seal(tr); err == nil {
			t.Errorf("%s: sealed %s", name, tok)
		}
	}
	var none *Keyring
	if _, err := none.Seal(Tracking{}); err == nil {
		t.Error("a nil keyring sealed")
	}
	if _, err := none.Open("x.y", KindOpen, now); err != ErrBadToken {
		t.Error("a nil keyring opened")
	}
}

// FuzzOpen: no input crashes Open, nothing but a token the keyring sealed
// opens, and whatever opens is complete, of the asked kind and unexpired.
//
//	go test ./connectors/tracking -run '^$' -fuzz FuzzOpen -fuzztime 30s
func FuzzOpen(f *testing.F) {
	kr := keyring(f, newSecret, oldSecret)
	old := keyring(f, oldSecret)
	exp := now.Add(time.Hour)
	for _, tok := range []string{
		seal(f, kr, Tracking{DeliveryID: "D1", MemberID: "M1", Kind: KindOpen, Expires: exp}),
		seal(f, kr, Tracking{DeliveryID: "D1", MemberID: "M1", Kind: KindClick, URL: "https://shop.example/", Expires: exp}),
		seal(f, old, Tracking{DeliveryID: "D1", MemberID: "M1", Channel: "mail", Kind: KindUnsubscribe, Expires: exp}),
		"", ".", "x.y", "AAAAAAAA.", strings.Repeat("A", 200) + "." + strings.Repeat("_", 200),
	} {
		for _, kind := range []string{KindOpen, KindClick, KindUnsubscribe} {
			f.Add(tok, kind)
		}
	}
	f.Fuzz(func(t *testing.T, tok, kind string) {
		got, err := kr.Open(tok, kind, now)
		if err != nil {
			if err != ErrBadToken {
				t.Fatalf("error %v, want ErrBadToken", err)
			}
			return
		}
		if got.Kind != kind || got.MemberID == "" || got.DeliveryID == "" || !now.Before(got.Expires) {
			t.Fatalf("opened an incomplete, wrong-kind or expired token: %+v", got)
		}
		if kind == KindClick && checkURL(got.URL) != nil {
			t.Fatalf("opened a click to %q", got.URL)
		}
		// Whatever opens re-seals to a token that opens to the same.
		again, err := kr.Open(seal(t, kr, got), kind, now)
		if err != nil || again != got {
			t.Fatalf("re-sealed %+v opened as %+v, %v", got, again, err)
		}
	})
}
