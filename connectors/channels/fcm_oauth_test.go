package channels_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/internal/testkit"
)

// tokenServer is a local OAuth 2 token endpoint for service accounts
// (RFC 7523 JWT bearer grant): it checks each assertion's signature and
// claims and issues numbered tokens living expiresIn seconds.
type tokenServer struct {
	t         *testing.T
	key       *rsa.PublicKey
	expiresIn int
	url       string

	mu     sync.Mutex
	issued []string
}

func (s *tokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		http.Error(w, `{"error":"unsupported_grant_type"}`, http.StatusBadRequest)
		return
	}
	parts := strings.Split(r.Form.Get("assertion"), ".")
	if len(parts) != 3 {
		http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
		return
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	if err := rsa.VerifyPKCS1v15(s.key, crypto.SHA256, sum[:], sig); err != nil {
		s.t.Errorf("assertion signature: %v", err)
		http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
		return
	}
	var claims struct {
		Iss, Scope, Aud string
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(payload, &claims); err != nil {
		s.t.Errorf("assertion claims: %v", err)
	}
	if claims.Iss != "rtm-push@rtm-test.iam.gserviceaccount.com" || claims.Scope != channels.FCMScope || claims.Aud != s.url {
		s.t.Errorf("assertion claims = %+v, want the service account, the FCM scope and this endpoint as audience", claims)
	}
	s.mu.Lock()
	tok := fmt.Sprintf("ya29.test-%d", len(s.issued)+1)
	s.issued = append(s.issued, tok)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": s.expiresIn})
}

func (s *tokenServer) tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// fcmEndpoint records the bearer token of every send and accepts it if
// the token server issued it.
type fcmEndpoint struct {
	tokens *tokenServer
	mu     sync.Mutex
	seen   []string
}

func (f *fcmEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	f.seen = append(f.seen, tok)
	f.mu.Unlock()
	issued := f.tokens.tokens()
	if len(issued) == 0 || issued[len(issued)-1] != tok {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Write([]byte(`{"name":"projects/rtm-test/messages/1"}`))
}

func serviceAccountKey(t *testing.T, tokenURI string) (string, *rsa.PublicKey) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "rtm-test", "private_key_id": "k1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "rtm-push@rtm-test.iam.gserviceaccount.com", "client_id": "1",
		"token_uri": tokenURI,
	})
	return string(key), &k.PublicKey
}

// TestFCMServiceAccountTokens: the adapter mints its bearer token from a
// service-account key at the token endpoint set in the configuration
// (not the key's token_uri), reuses it while it is valid, and fetches a
// new one once it is about to expire. Tokens that live 1 s are inside
// oauth2's expiry margin from the start, so each send must refresh; tokens
// that live an hour serve every send.
func TestFCMServiceAccountTokens(t *testing.T) {
	for _, tc := range []struct {
		name       string
		expiresIn  int
		wantTokens int
	}{
		{"long-lived token is reused", 3600, 1},
		{"expiring token is refreshed", 1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := &tokenServer{t: t, expiresIn: tc.expiresIn}
			tokSrv := httptest.NewServer(ts)
			defer tokSrv.Close()
			ts.url = tokSrv.URL + "/token"
			creds, pub := serviceAccountKey(t, "https://oauth2.invalid/token")
			ts.key = pub
			fcm := &fcmEndpoint{tokens: ts}
			api := httptest.NewServer(fcm)
			defer api.Close()

			a, err := channels.NewFCMAdapter(channels.FCMConfig{BaseURL: api.URL, CredentialsJSON: creds, TokenURL: ts.url}, testkit.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			push := channels.NewPush("device-token-1", "Price drop", "now ¥1,980", nil)
			for i := range 3 {
				if err := a.Send(testkit.Context(t), delivery(t, fmt.Sprintf("dl-%d", i), push)); err != nil {
					t.Fatalf("send %d: %v", i, err)
				}
			}
			issued := ts.tokens()
			if len(issued) != tc.wantTokens {
				t.Fatalf("token endpoint issued %v, want %d tokens", issued, tc.wantTokens)
			}
			fcm.mu.Lock()
			defer fcm.mu.Unlock()
			if tc.wantTokens > 1 {
				// every send carried the token issued for it
				if strings.Join(fcm.seen, ",") != strings.Join(issued, ",") {
					t.Errorf("sends carried %v, want one fresh token each %v", fcm.seen, issued)
				}
			}
		})
	}
}

func TestFCMConfigCredentials(t *testing.T) {
	creds, _ := serviceAccountKey(t, "https://oauth2.googleapis.com/token")
	for _, tc := range []struct {
		name    string
		cfg     channels.FCMConfig
		wantErr string
	}{
		{"service account, project from the key", channels.FCMConfig{CredentialsJSON: creds}, ""},
		{"static token", channels.FCMConfig{AccessToken: "t", ProjectID: "p"}, ""},
		{"neither", channels.FCMConfig{ProjectID: "p"}, "fcm.credentials_json (a service-account key) or fcm.access_token is required"},
		{"both", channels.FCMConfig{CredentialsJSON: creds, AccessToken: "t"}, "are both set"},
		{"not a key", channels.FCMConfig{CredentialsJSON: `{"type":"authorized_user"}`, ProjectID: "p"}, "not a usable service-account key"},
		{"static token without project", channels.FCMConfig{AccessToken: "t"}, "fcm.project_id is required"},
		{"bad token url", channels.FCMConfig{CredentialsJSON: creds, TokenURL: "oauth2/token"}, "fcm.token_url must be an absolute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
