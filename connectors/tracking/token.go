// Package tracking signs and verifies the tokens of tracked links and open
// pixels: the render stage signs them into every message, the collector
// verifies them on /t/o and /t/c. Both import this small package, so
// neither depends on the other, and one secret rule holds everywhere.
package tracking

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Tracking token kinds.
const (
	KindOpen  = "open"
	KindClick = "click"
)

// Tracking is what a tracking token carries. URL is set for clicks only:
// the collector redirects to it and nowhere else.
type Tracking struct {
	DeliveryID string `json:"delivery_id"`
	MemberID   string `json:"member_id"`
	CampaignID string `json:"campaign_id"`
	URL        string `json:"url,omitempty"`
	Kind       string `json:"kind"`
}

// ErrBadToken is returned for a token that is malformed, forged, altered,
// or of the wrong kind.
var ErrBadToken = errors.New("invalid tracking token")

var b64 = base64.RawURLEncoding

// SignOpen returns the token for an open pixel: /t/o/{token}.
func SignOpen(secret []byte, deliveryID, memberID, campaignID string) (string, error) {
	return sign(secret, Tracking{DeliveryID: deliveryID, MemberID: memberID, CampaignID: campaignID, Kind: KindOpen})
}

// SignClick returns the token for a tracked link to target: /t/c/{token}.
// target must be an absolute http or https URL.
func SignClick(secret []byte, deliveryID, memberID, campaignID, target string) (string, error) {
	if err := checkURL(target); err != nil {
		return "", err
	}
	return sign(secret, Tracking{DeliveryID: deliveryID, MemberID: memberID, CampaignID: campaignID, URL: target, Kind: KindClick})
}

func sign(secret []byte, t Tracking) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("signing tracking token: no secret")
	}
	if t.DeliveryID == "" || t.MemberID == "" {
		return "", errors.New("signing tracking token: delivery_id and member_id are required")
	}
	payload, err := json.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("signing tracking token: %w", err)
	}
	p := b64.EncodeToString(payload)
	return p + "." + b64.EncodeToString(mac(secret, p)), nil
}

// Verify checks a token's signature and kind and returns its payload.
func Verify(secret []byte, token, kind string) (Tracking, error) {
	p, sig, ok := strings.Cut(token, ".")
	if len(secret) == 0 || !ok {
		return Tracking{}, ErrBadToken
	}
	got, err := b64.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac(secret, p)) {
		return Tracking{}, ErrBadToken
	}
	payload, err := b64.DecodeString(p)
	if err != nil {
		return Tracking{}, ErrBadToken
	}
	var t Tracking
	if err := json.Unmarshal(payload, &t); err != nil || t.Kind != kind || t.MemberID == "" || t.DeliveryID == "" {
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

func mac(secret []byte, payload string) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(payload))
	return h.Sum(nil)
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("tracked link %q must be an absolute http(s) URL", s)
	}
	return nil
}
