// Package tracking seals and opens the tokens of tracked links, open pixels
// and one-click unsubscribe links: the render stage seals them into every
// message, the collector opens them on /t/o, /t/c and /t/u. Both import this
// small package, so neither depends on the other, and one secret rule holds
// everywhere.
//
// A token is "<kid>.<base64url(nonce || AES-256-GCM ciphertext)>". The
// whole payload (delivery, member, campaign, channel, URL, kind, expiry) is
// sealed, not only signed: whoever reads a URL learns nothing about the
// member, and any change to it fails authentication. kid names the key
// that sealed it, so several keys can verify at once while one signs
// (rotation); a key removed from the keyring stops verifying.
package tracking

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/bytedance/sonic"
)

// MinSecretBytes is the shortest tracking secret accepted anywhere (the
// collector, render, the settings): 32 bytes, the key size of the
// HMAC-SHA256 and AES-256 keys derived from it.
const MinSecretBytes = 32

// Token kinds. A token opens only for its own kind, so an open pixel's
// token can never be used as a click or an unsubscribe.
const (
	KindOpen        = "open"
	KindClick       = "click"
	KindUnsubscribe = "unsubscribe"
)

// Tracking is what a token carries. URL is set for clicks only: the
// collector redirects to it and nowhere else. Channel is the channel the
// message went out on (an unsubscribe turns that channel off).
type Tracking struct {
	DeliveryID string
	MemberID   string
	CampaignID string
	Channel    string
	URL        string
	Kind       string
	// Expires is when the token stops opening (to the second).
	Expires time.Time
}

// wire is a token's sealed payload: short names, since it rides in URLs.
type wire struct {
	DeliveryID string `json:"d"`
	MemberID   string `json:"m"`
	CampaignID string `json:"c,omitempty"`
	Channel    string `json:"ch,omitempty"`
	URL        string `json:"u,omitempty"`
	Kind       string `json:"k"`
	Exp        int64  `json:"e"`
}

// ErrBadToken is returned for a token that is malformed, forged, altered,
// sealed by an unknown or retired key, expired, or of the wrong kind. The
// collector answers all of them alike (404), so a prober learns nothing.
var ErrBadToken = errors.New("invalid tracking token")

// b64 decodes strictly: a token has exactly one encoding, so a link holder
// cannot mint variants of one token that open alike but hash to different
// event IDs (and count one click many times).
var b64 = base64.RawURLEncoding.Strict()

// key is one secret's derived keys.
type key struct {
	id   string
	aead cipher.AEAD
}

// Keyring holds the signing key and the keys that still verify.
type Keyring struct {
	signing *key
	keys    map[string]*key
}

// NewKeyring returns a keyring that seals with signing and opens tokens of
// signing and of every one of verifyOnly (the previous secrets during a
// rotation). Every secret must have at least MinSecretBytes bytes.
func NewKeyring(signing []byte, verifyOnly ...[]byte) (*Keyring, error) {
	kr := &Keyring{keys: map[string]*key{}}
	for i, s := range append([][]byte{signing}, verifyOnly...) {
		if len(s) < MinSecretBytes {
			what := "the signing secret"
			if i > 0 {
				what = fmt.Sprintf("verify-only secret %d", i)
			}
			return nil, fmt.Errorf("tracking keys: %s has %d bytes; use at least %d random bytes", what, len(s), MinSecretBytes)
		}
		k, err := deriveKey(s)
		if err != nil {
			return nil, err
		}
		if _, dup := kr.keys[k.id]; dup {
			return nil, fmt.Errorf("tracking keys: secret %d is given twice", i)
		}
		kr.keys[k.id] = k
		if i == 0 {
			kr.signing = k
		}
	}
	return kr, nil
}

// deriveKey derives the key ID and the AES-256-GCM key from a secret with
// HKDF, so the ID reveals nothing about the key and neither is the secret
// itself.
func deriveKey(secret []byte) (*key, error) {
	id, err := hkdf.Key(sha256.New, secret, nil, "rtm tracking key id v1", 6)
	if err != nil {
		return nil, err
	}
	enc, err := hkdf.Key(sha256.New, secret, nil, "rtm tracking seal v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(enc)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &key{id: b64.EncodeToString(id), aead: aead}, nil
}

// SigningKeyID is the ID of the key that seals new tokens (for logs).
func (kr *Keyring) SigningKeyID() string { return kr.signing.id }

// Seal returns t's token, sealed with the signing key. DeliveryID, MemberID,
// Kind and Expires are required; a click needs an absolute http(s) URL.
func (kr *Keyring) Seal(t Tracking) (string, error) {
	if kr == nil {
		return "", errors.New("sealing tracking token: no keys")
	}
	switch {
	case t.DeliveryID == "" || t.MemberID == "":
		return "", errors.New("sealing tracking token: delivery_id and member_id are required")
	case t.Kind != KindOpen && t.Kind != KindClick && t.Kind != KindUnsubscribe:
		return "", fmt.Errorf("sealing tracking token: unknown kind %q", t.Kind)
	case t.Expires.IsZero():
		return "", errors.New("sealing tracking token: no expiry")
	}
	if t.Kind == KindClick {
		if err := checkURL(t.URL); err != nil {
			return "", err
		}
	}
	payload, err := sonic.ConfigStd.Marshal(wire{DeliveryID: t.DeliveryID, MemberID: t.MemberID, CampaignID: t.CampaignID,
		Channel: t.Channel, URL: t.URL, Kind: t.Kind, Exp: t.Expires.Unix()})
	if err != nil {
		return "", fmt.Errorf("sealing tracking token: %w", err)
	}
	k := kr.signing
	nonce := make([]byte, k.aead.NonceSize())
	rand.Read(nonce) // never fails (crypto/rand)
	sealed := k.aead.Seal(nonce, nonce, payload, []byte(k.id))
	return k.id + "." + b64.EncodeToString(sealed), nil
}

// Open checks a token's key, authenticity, kind and expiry at now, and
// returns its payload. Every failure is ErrBadToken.
func (kr *Keyring) Open(token, kind string, now time.Time) (Tracking, error) {
	if kr == nil {
		return Tracking{}, ErrBadToken
	}
	id, body, ok := strings.Cut(token, ".")
	k := kr.keys[id]
	if !ok || k == nil {
		return Tracking{}, ErrBadToken
	}
	sealed, err := b64.DecodeString(body)
	if err != nil || len(sealed) < k.aead.NonceSize()+k.aead.Overhead() {
		return Tracking{}, ErrBadToken
	}
	n := k.aead.NonceSize()
	payload, err := k.aead.Open(nil, sealed[:n], sealed[n:], []byte(k.id))
	if err != nil {
		return Tracking{}, ErrBadToken
	}
	var w wire
	if err := json.Unmarshal(payload, &w); err != nil || w.Kind != kind || w.MemberID == "" || w.DeliveryID == "" {
		return Tracking{}, ErrBadToken
	}
	t := Tracking{DeliveryID: w.DeliveryID, MemberID: w.MemberID, CampaignID: w.CampaignID, Channel: w.Channel,
		URL: w.URL, Kind: w.Kind, Expires: time.Unix(w.Exp, 0).UTC()}
	if !now.Before(t.Expires) {
		return Tracking{}, ErrBadToken
	}
	if kind == KindClick && checkURL(t.URL) != nil {
		return Tracking{}, ErrBadToken
	}
	return t, nil
}

// EventID is the event ID of a tracking hit: a hash of the token, so a
// double click or a reloaded pixel is the same event downstream.
func EventID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "t-" + hex.EncodeToString(sum[:16])
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("tracked link %q must be an absolute http(s) URL", s)
	}
	return nil
}
