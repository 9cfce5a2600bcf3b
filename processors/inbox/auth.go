package inbox

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The inbox API trusts one thing: a member token issued by the shop, the
// party that knows who is logged in. It is a JWT whose issuer, audience
// and expiry are checked and whose subject is the member ID; the algorithm
// is fixed by the key that verifies it (an HS256 secret, an RSA key for
// RS256, a P-256 key for ES256), so a token cannot choose a weaker one
// ("none", or HS256 keyed with a public key).

// MinHS256Bytes is the shortest HS256 secret accepted: RFC 7518 §3.2
// requires a key at least as long as the hash, 32 bytes (the same minimum
// as every other RTM secret).
const MinHS256Bytes = 32

// Leeway is the clock skew allowed between the shop's issuer and RTM
// when checking exp and nbf.
const Leeway = 30 * time.Second

// AuthConfig is how member tokens are verified.
type AuthConfig struct {
	// Issuer and Audience must equal the token's iss and one of its aud.
	Issuer, Audience string
	// Keys verify tokens, by key ID (the token header's kid). A token
	// without a kid is verified only when there is exactly one key.
	// Several keys are active at once for rotation. Values are []byte
	// (HS256), *rsa.PublicKey (RS256) or *ecdsa.PublicKey on P-256 (ES256).
	Keys map[string]any
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Auth verifies member tokens.
type Auth struct {
	cfg     AuthConfig
	parser  *jwt.Parser
	methods map[string]string // kid → the one algorithm its key verifies
}

// NewAuth checks cfg and returns its verifier.
func NewAuth(cfg AuthConfig) (*Auth, error) {
	var errs []error
	if cfg.Issuer == "" {
		errs = append(errs, errors.New("inbox auth: the issuer is required (the shop's token issuer, iss)"))
	}
	if cfg.Audience == "" {
		errs = append(errs, errors.New("inbox auth: the audience is required (aud)"))
	}
	if len(cfg.Keys) == 0 {
		errs = append(errs, errors.New("inbox auth: at least one verification key is required (an HS256 secret or an RS256/ES256 public key)"))
	}
	methods := map[string]string{}
	var all []string
	for kid, k := range cfg.Keys {
		m, err := methodOf(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("inbox auth: key %q: %w", kid, err))
			continue
		}
		methods[kid] = m
		all = append(all, m)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := jwt.NewParser(jwt.WithValidMethods(all), jwt.WithIssuer(cfg.Issuer), jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(), jwt.WithLeeway(Leeway), jwt.WithTimeFunc(cfg.Now), jwt.WithStrictDecoding())
	return &Auth{cfg: cfg, parser: p, methods: methods}, nil
}

// methodOf is the one algorithm a key verifies.
func methodOf(k any) (string, error) {
	switch k := k.(type) {
	case []byte:
		if len(k) < MinHS256Bytes {
			return "", fmt.Errorf("HS256 secret has %d bytes; use at least %d random bytes", len(k), MinHS256Bytes)
		}
		return jwt.SigningMethodHS256.Alg(), nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", fmt.Errorf("RSA key has %d bits; use at least 2048", k.N.BitLen())
		}
		return jwt.SigningMethodRS256.Alg(), nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", errors.New("EC key is not on P-256 (ES256)")
		}
		return jwt.SigningMethodES256.Alg(), nil
	default:
		return "", fmt.Errorf("unsupported key type %T (want an HS256 secret, an RSA or a P-256 public key)", k)
	}
}

// ErrUnauthorized is every reason a request is refused: no token, a bad
// one, or one for another member all answer alike.
var ErrUnauthorized = errors.New("unauthorized")

// Member returns the member a request's bearer token was issued for.
func (a *Auth) Member(r *http.Request) (string, error) {
	if a == nil {
		return "", ErrUnauthorized
	}
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return "", ErrUnauthorized
	}
	return a.Verify(strings.TrimSpace(raw))
}

// Verify checks a token and returns its subject, the member ID.
func (a *Auth) Verify(raw string) (string, error) {
	var claims jwt.RegisteredClaims
	_, err := a.parser.ParseWithClaims(raw, &claims, a.key)
	if err != nil || claims.Subject == "" {
		return "", ErrUnauthorized
	}
	return claims.Subject, nil
}

// key picks the token's key by kid and refuses any algorithm but the key's.
func (a *Auth) key(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	if _, has := t.Header["kid"]; !has && len(a.cfg.Keys) == 1 {
		for only := range a.cfg.Keys {
			kid = only
		}
	}
	k, ok := a.cfg.Keys[kid]
	if !ok || t.Method.Alg() != a.methods[kid] {
		return nil, ErrUnauthorized
	}
	return k, nil
}

// ParseKeys builds AuthConfig.Keys from the settings: HS256 secrets as
// "kid:secret" and public key PEM files (a PKIX public key or a
// certificate) as "kid:path".
func ParseKeys(hs256 []string, publicKeyFiles []string) (map[string]any, error) {
	keys := map[string]any{}
	var errs []error
	add := func(what string, i int, entry string, parse func(string) (any, error)) {
		kid, v, ok := strings.Cut(entry, ":")
		if !ok || kid == "" || v == "" {
			errs = append(errs, fmt.Errorf("%s[%d]: want kid:value", what, i))
			return
		}
		if _, dup := keys[kid]; dup {
			errs = append(errs, fmt.Errorf("%s[%d]: key ID %q is given twice", what, i, kid))
			return
		}
		k, err := parse(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s[%d] (%s): %w", what, i, kid, err))
			return
		}
		keys[kid] = k
	}
	for i, e := range hs256 {
		add("inbox.jwt.hs256_keys", i, e, func(s string) (any, error) { return []byte(s), nil })
	}
	for i, e := range publicKeyFiles {
		add("inbox.jwt.public_key_files", i, e, readPublicKey)
	}
	return keys, errors.Join(errs...)
}

func readPublicKey(path string) (any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("no PEM block")
	}
	var k crypto.PublicKey
	switch b.Type {
	case "PUBLIC KEY":
		k, err = x509.ParsePKIXPublicKey(b.Bytes)
	case "CERTIFICATE":
		var c *x509.Certificate
		if c, err = x509.ParseCertificate(b.Bytes); err == nil {
			k = c.PublicKey
		}
	default:
		return nil, fmt.Errorf("PEM block %q: want PUBLIC KEY or CERTIFICATE", b.Type)
	}
	if err != nil {
		return nil, err
	}
	if _, err := methodOf(k); err != nil {
		return nil, err
	}
	return k, nil
}
