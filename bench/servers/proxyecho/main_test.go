package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/sign"
)

func post(b *backend, path, body, sig string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set(sign.Header, sig)
	w := httptest.NewRecorder()
	b.ServeHTTP(w, req)
	return w
}

func TestEchoesSignedBatches(t *testing.T) {
	secret := []byte("s")
	b := &backend{secret: secret, maxBody: 1 << 20}
	body := `{"session":"x","user":"","messages":["a","b\"c"]}`
	w := post(b, "/base/message", body, sign.Value(secret, time.Now(), []byte(body)))
	if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != `{"messages":["a","b\"c"]}` {
		t.Fatalf("message: %d %s", w.Code, w.Body)
	}
	for _, sig := range []string{"", sign.Value([]byte("other"), time.Now(), []byte(body)), sign.Value(secret, time.Now().Add(-time.Hour), []byte(body))} {
		if w := post(b, "/base/message", body, sig); w.Code != http.StatusUnauthorized {
			t.Errorf("signature %q: %d, want 401", sig, w.Code)
		}
	}
	c := `{"session":"x","service":"/pecho"}`
	if w := post(b, "/base/connect", c, sign.Value(secret, time.Now(), []byte(c))); w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != `{}` {
		t.Errorf("connect: %d %s", w.Code, w.Body)
	}
	if b.batches.Load() != 1 || b.messages.Load() != 2 || b.badSigs.Load() != 3 || b.connects.Load() != 1 {
		t.Errorf("counters: batches %d messages %d bad %d connects %d", b.batches.Load(), b.messages.Load(), b.badSigs.Load(), b.connects.Load())
	}
}
