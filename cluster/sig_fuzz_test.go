package cluster

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/iotest"
	"time"
)

// fuzzNow is the time the signature fuzz targets verify at.
var fuzzNow = time.Unix(1_800_000_000, 0)

func fuzzNode() *Node {
	return &Node{opts: Options{Secret: []byte("fuzz secret"), MaxSkew: DefaultMaxSkew}, nonces: nonceCache{max: 8}}
}

// FuzzVerifySignature: whatever a ForwardHeader holds, verify never
// panics; it accepts only the signature the secret makes for the request
// (the fuzzer cannot forge one: only the seeds' valid ones pass), once:
// the same signature again is a replay.
func FuzzVerifySignature(f *testing.F) {
	n := fuzzNode()
	nonce := [nonceLen]byte{1, 2, 3}
	for _, c := range []struct {
		method, uri, remote string
		length              int64
		at                  time.Time
	}{
		{"POST", "/echo/000/abc/xhr_send", "127.0.0.1:5000", 7, fuzzNow},
		{"POST", "/echo/000/abc/xhr", "[::1]:1", 0, fuzzNow.Add(-29 * time.Second)},
		{"GET", "/echo/000/abc/eventsource?t=1", "", -1, fuzzNow.Add(29 * time.Second)},
		{"POST", "/echo/000/abc/xhr_send", "127.0.0.1:5000", 7, fuzzNow.Add(-time.Minute)}, // too old
	} {
		f.Add(n.sign(nonce, c.method, c.uri, c.remote, c.length, c.at), c.method, c.uri, c.remote)
	}
	for _, s := range []string{"", ":", ":::", "1:2:3:4", "nonsense", "1800000000:" + string(bytes.Repeat([]byte("0"), 32)) + ":-:" + string(bytes.Repeat([]byte("0"), 64)),
		"-1:00000000000000000000000000000000:0:" + string(bytes.Repeat([]byte("ab"), 32)), "01800000000:00000000000000000000000000000000:0:00", "1800000000:0000:+5:00"} {
		f.Add(s, "POST", "/echo/000/abc/xhr_send", "")
	}
	f.Fuzz(func(t *testing.T, sig, method, uri, remote string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Method, r.RequestURI = method, uri
		r.URL.Path, r.URL.RawQuery = "/", ""
		if u, err := r.URL.Parse(uri); err == nil {
			r.URL = u
		}
		r.Header.Set(RemoteHeader, remote)
		n := fuzzNode()
		fs, err := n.verify(r, sig, fuzzNow)
		if err != nil {
			return
		}
		if want := n.sign(fs.nonce, r.Method, r.URL.RequestURI(), r.Header.Get(RemoteHeader), fs.length, fs.at); want != sig {
			t.Fatalf("accepted %q, which is not the signature %q of the request", sig, want)
		}
		if d := fuzzNow.Sub(fs.at); d > DefaultMaxSkew || d < -DefaultMaxSkew {
			t.Fatalf("accepted a signature %s off", d)
		}
		if _, err := n.verify(r, sig, fuzzNow); !errors.Is(err, errReplayed) {
			t.Fatalf("the same signature again: %v, want a replay", err)
		}
	})
}

// FuzzVerifiedBody: the owner's reader of a forwarded body gives the body
// and a clean end only when what came is what was signed (same bytes,
// the signed length); otherwise an error, and never the whole body
// followed by a clean end, however it is read (io.ReadAll for a chunked
// body, io.ReadFull of the signed length as the transport reads one, in
// reads of any size).
func FuzzVerifiedBody(f *testing.F) {
	f.Add([]byte(`["one"]`), []byte(`["one"]`), true, uint8(0))
	f.Add([]byte(`["one"]`), []byte(`["two"]`), true, uint8(1))
	f.Add([]byte(`["one"]`), []byte(`["one"]x`), true, uint8(3))
	f.Add([]byte(`["one"]`), []byte(`["one`), false, uint8(2))
	f.Add([]byte(`["one"]`), []byte(`["one"]`), false, uint8(7))
	f.Add([]byte{}, []byte{}, false, uint8(0))
	f.Add([]byte("x"), []byte{}, true, uint8(0))
	f.Fuzz(func(t *testing.T, signed, sent []byte, known bool, step uint8) {
		n := fuzzNode()
		nonce := [nonceLen]byte{9}
		sum := sha256.Sum256(signed)
		length := int64(-1)
		if known {
			length = int64(len(signed))
		}
		newBody := func() *verifiedBody {
			var src io.Reader = bytes.NewReader(sent)
			if step%2 == 1 {
				src = iotest.OneByteReader(src)
			}
			return &verifiedBody{body: io.NopCloser(src), sum: sha256.New(), left: length, n: n, nonce: nonce,
				trailer: http.Header{BodyTrailer: {n.bodyMAC(nonce, sum[:])}}}
		}
		same := bytes.Equal(signed, sent)
		got, err := io.ReadAll(newBody())
		if same != (err == nil) {
			t.Fatalf("ReadAll of %q signed as %q: %q, %v", sent, signed, got, err)
		}
		if err == nil && !bytes.Equal(got, signed) {
			t.Fatalf("ReadAll gave %q, signed %q", got, signed)
		}
		if err != nil && !errors.Is(err, errBodyChanged) {
			t.Fatalf("ReadAll failed with %v, want errBodyChanged", err)
		}
		if !known || length == 0 {
			return // a body signed empty is never read (http.NoBody)
		}
		buf := make([]byte, length)
		k, err := io.ReadFull(newBody(), buf)
		if err == nil && (!same || !bytes.Equal(buf, signed)) {
			t.Fatalf("ReadFull of %q signed as %q gave %q (%d) with no error", sent, signed, buf, k)
		}
		if err != nil && same {
			t.Fatalf("ReadFull of the signed body: %v", err)
		}
	})
}
