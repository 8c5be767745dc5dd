// Command proxyecho is the backend of `make bench`'s gateway rows: the
// smallest HTTP backend a -proxy service can have. It checks every
// request's X-Sockjsd-Signature (internal/sign, the same check the
// examples make), accepts every connect, answers each message batch with
// the same messages back (an echo through the backend) and acknowledges
// closes. A request whose signature does not verify gets 401, which
// closes its session: a misconfigured run shows up as load generator
// errors, never as fast unsigned echoes.
//
//	proxyecho -addr 127.0.0.1:8095 -secret s3cret
//	server -proxy /pecho=http://127.0.0.1:8095/base -proxy-secret s3cret
//
// GET /stats answers the requests and messages seen so far, as JSON, so
// that the bench can report messages per backend request (the batching).
package main

import (
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sockjsd/sockjsd/internal/sign"
)

// Stats is what GET /stats answers.
type Stats struct {
	Connects    int64 `json:"connects"`
	Batches     int64 `json:"batches"` // POST /message requests
	Messages    int64 `json:"messages"`
	Closes      int64 `json:"closes"`
	BadSigs     int64 `json:"bad_signatures"`
	BadRequests int64 `json:"bad_requests"`
}

type backend struct {
	secret                       []byte
	connects, batches, messages  atomic.Int64
	closes, badSigs, badRequests atomic.Int64
	maxBody                      int64
}

// body reads and authenticates r's body; it answers the error itself and
// returns nil when the request is refused.
func (b *backend) body(w http.ResponseWriter, r *http.Request) []byte {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return nil
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, b.maxBody))
	if err != nil {
		b.badRequests.Add(1)
		http.Error(w, "read: "+err.Error(), http.StatusBadRequest)
		return nil
	}
	if err := sign.Verify(b.secret, r.Header.Get(sign.Header), raw, time.Now(), 0); err != nil {
		b.badSigs.Add(1)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return nil
	}
	return raw
}

func answer(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hook := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	if hook == "stats" && r.Method == http.MethodGet {
		answer(w, Stats{Connects: b.connects.Load(), Batches: b.batches.Load(), Messages: b.messages.Load(),
			Closes: b.closes.Load(), BadSigs: b.badSigs.Load(), BadRequests: b.badRequests.Load()})
		return
	}
	raw := b.body(w, r)
	if raw == nil {
		return
	}
	switch hook {
	case "connect":
		b.connects.Add(1)
		answer(w, struct{}{})
	case "message":
		var m struct {
			Session  string   `json:"session"`
			Messages []string `json:"messages"`
		}
		if err := json.Unmarshal(raw, &m); err != nil || m.Session == "" {
			b.badRequests.Add(1)
			http.Error(w, "bad message batch", http.StatusBadRequest)
			return
		}
		b.batches.Add(1)
		b.messages.Add(int64(len(m.Messages)))
		answer(w, struct {
			Messages []string `json:"messages"`
		}{m.Messages})
	case "close":
		b.closes.Add(1)
		answer(w, struct{}{})
	default:
		http.NotFound(w, r)
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8095", "listen address")
	secret := flag.String("secret", "", "the -proxy-secret sockjsd signs with (required)")
	flag.Parse()
	if *secret == "" {
		log.Fatal("proxyecho: -secret is required")
	}
	b := &backend{secret: []byte(*secret), maxBody: 16 << 20}
	srv := &http.Server{Addr: *addr, Handler: b, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	log.Fatal(srv.ListenAndServe())
}
