package sign

import (
	"errors"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	secret := []byte("s3cret")
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"session":"a"}`)
	good := Value(secret, now, body)
	// The fixed vector docs/proxy.md and the examples check against.
	if want := "t=1700000000,v1=" + mac(secret, "1700000000", body); good != want {
		t.Fatalf("Value = %q, want %q", good, want)
	}
	for _, tc := range []struct {
		name  string
		value string
		body  string
		now   time.Time
		want  error
	}{
		{"good", good, string(body), now, nil},
		{"clock a little ahead", good, string(body), now.Add(4 * time.Minute), nil},
		{"tampered body", good, `{"session":"b"}`, now, ErrMismatch},
		{"stale", good, string(body), now.Add(6 * time.Minute), ErrStale},
		{"from the future", good, string(body), now.Add(-6 * time.Minute), ErrStale},
		{"wrong secret", Value([]byte("other"), now, body), string(body), now, ErrMismatch},
		{"two signatures, one good", "t=1700000000,v1=00," + good[len("t=1700000000,"):], string(body), now, nil},
		{"no v1", "t=1700000000", string(body), now, ErrMalformed},
		{"no t", "v1=ab", string(body), now, ErrMalformed},
		{"garbage", "hello", string(body), now, ErrMalformed},
		{"empty", "", string(body), now, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Verify(secret, tc.value, []byte(tc.body), tc.now, 0); !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("t=1,v1=ab", []byte("x"))
	f.Add("t=,v1=", []byte(""))
	f.Fuzz(func(t *testing.T, value string, body []byte) {
		_ = Verify([]byte("k"), value, body, time.Unix(1, 0), 0) // must not panic
	})
}
