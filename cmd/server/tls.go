package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HTTPS and HTTP/2 (docs/tls.md). With -tls-cert and -tls-key the one
// listener speaks TLS only; browsers then get HTTP/2 by ALPN (unless
// -http2=false), which multiplexes every streaming and polling request of
// one origin on one connection instead of the six HTTP/1.1 allows.
// Websockets keep their HTTP/1.1 upgrade on a connection of their own:
// Go's HTTP/2 server does not advertise RFC 8441's extended CONNECT
// unless GODEBUG=http2xconnect=1, and the websocket handler (gorilla's
// Upgrader) needs an HTTP/1.1 connection to hijack.
const (
	// DefaultTLSReloadInterval is how often the certificate files are
	// checked for a change.
	DefaultTLSReloadInterval = 5 * time.Second
	// DefaultHTTP2MaxStreams bounds the requests one HTTP/2 connection
	// carries at once (net/http's own default): each streaming or
	// polling session holds one while it waits.
	DefaultHTTP2MaxStreams = 250
	// maxCertFileBytes bounds what is read of a certificate or key file;
	// a real chain with its key is a few KB.
	maxCertFileBytes = 1 << 20
)

// TLSConfig holds the flags of HTTPS and HTTP/2.
type TLSConfig struct {
	Cert           string
	Key            string
	ReloadInterval time.Duration
	HTTP2          bool
	MaxStreams     int
}

func (c *TLSConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.Cert, "tls-cert", "", "PEM certificate chain file (leaf first): serve HTTPS and WSS on -addr instead of HTTP; needs -tls-key. Reloaded when it changes, without a restart")
	fs.StringVar(&c.Key, "tls-key", "", "PEM private key file of -tls-cert; reloaded with it")
	fs.DurationVar(&c.ReloadInterval, "tls-reload-interval", DefaultTLSReloadInterval, "how often -tls-cert and -tls-key are checked for a change (a renewed certificate is served to new handshakes; SIGHUP checks at once); 0: only on SIGHUP")
	fs.BoolVar(&c.HTTP2, "http2", true, "with -tls-cert: offer HTTP/2 by ALPN (every HTTP transport of a page shares one connection; websockets keep their own HTTP/1.1 connection); false: HTTP/1.1 only")
	fs.IntVar(&c.MaxStreams, "http2-max-streams", DefaultHTTP2MaxStreams, "requests one HTTP/2 connection carries at once (advertised to the client, which queues the rest until a stream is free)")
}

// enabled says whether the listener speaks TLS.
func (c TLSConfig) enabled() bool { return c.Cert != "" || c.Key != "" }

// scheme is the URL scheme of this server's own address.
func (c TLSConfig) scheme() string {
	if c.enabled() {
		return "https"
	}
	return "http"
}

// check refuses one of the pair without the other.
func (c TLSConfig) check() error {
	switch {
	case c.Cert != "" && c.Key == "":
		return errors.New("-tls-cert needs -tls-key (the certificate's private key)")
	case c.Cert == "" && c.Key != "":
		return errors.New("-tls-key needs -tls-cert (the certificate chain)")
	case c.ReloadInterval < 0:
		return errors.New("-tls-reload-interval must be 0 or more")
	case c.MaxStreams < 1:
		return errors.New("-http2-max-streams must be 1 or more")
	}
	return nil
}

// loadCerts checks the certificate files (a bad one fails the start,
// naming it) and returns their reloader, or nil without -tls-cert.
func (c TLSConfig) loadCerts(reg prometheus.Registerer, log *slog.Logger) (*certReloader, error) {
	if !c.enabled() {
		return nil, nil
	}
	return newCertReloader(c.Cert, c.Key, reg, log)
}

// apply makes srv serve TLS with certs' certificate, HTTP/2 as the flags
// say.
func (c TLSConfig) apply(srv *http.Server, certs *certReloader, reg prometheus.Registerer, log *slog.Logger) {
	if certs == nil {
		return
	}
	handshakes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sockjs_tls_handshakes_total",
		Help: "TLS handshakes completed, by the protocol ALPN chose (h2, http/1.1; none: the client offered neither).",
	}, []string{"protocol"})
	for _, p := range []string{"h2", "http/1.1", "none"} {
		handshakes.WithLabelValues(p)
	}
	reg.MustRegister(handshakes)
	srv.TLSConfig = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: certs.GetCertificate,
		// Called once per completed handshake; the protocol is one
		// the server offered, so the label stays bounded.
		VerifyConnection: func(cs tls.ConnectionState) error {
			handshakes.WithLabelValues(cmp.Or(cs.NegotiatedProtocol, "none")).Inc()
			return nil
		},
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(c.HTTP2)
	srv.Protocols = &p
	srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: c.MaxStreams}
	srv.ErrorLog = handshakeErrors(srv.ErrorLog, reg, log)
	if c.HTTP2 && strings.Contains(os.Getenv("GODEBUG"), "http2xconnect=1") {
		// Browsers would then open websockets as HTTP/2 streams
		// (RFC 8441), which the websocket handler cannot take: they
		// fail and fall back to an HTTP transport.
		log.Warn("GODEBUG=http2xconnect=1 offers websockets over HTTP/2, which sockjsd's websocket handler does not accept: browsers will fall back to HTTP transports; unset it")
	}
}

// certReloader serves the certificate of the files as last loaded: new
// handshakes get a renewed one as soon as it is loaded, connections
// already open keep theirs. A change that does not load (a key that does
// not match, a half-written file) keeps the old certificate.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	cert              atomic.Pointer[tls.Certificate]
	reloads           *prometheus.CounterVec
	expiry            prometheus.Gauge

	mu   sync.Mutex // one check at a time (poll and SIGHUP)
	seen [32]byte   // hash of the files as last loaded or reported
	// bad is the hash of files that did not load, seen once: they are
	// reported when seen a second time in a row, since certbot and
	// cert-manager write the two files one after the other and the
	// check may fall between the two.
	bad [32]byte
}

// Outcomes of a reload, the result label of sockjs_tls_reloads_total.
const (
	reloadOK    = "ok"
	reloadError = "error"
)

// newCertReloader loads the files, or fails naming the one at fault.
func newCertReloader(certFile, keyFile string, reg prometheus.Registerer, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{
		certFile: certFile,
		keyFile:  keyFile,
		log:      log,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sockjs_tls_reloads_total",
			Help: "Changes of -tls-cert/-tls-key loaded (ok) or refused, the old certificate kept (error).",
		}, []string{"result"}),
		expiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sockjs_tls_certificate_expiry_timestamp_seconds",
			Help: "NotAfter of the certificate served to new handshakes, in Unix seconds.",
		}),
	}
	r.reloads.WithLabelValues(reloadOK)
	r.reloads.WithLabelValues(reloadError)
	cert, sum, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	r.seen = sum
	r.use(cert)
	reg.MustRegister(r.reloads, r.expiry)
	return r, nil
}

// GetCertificate is tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

func (r *certReloader) use(c *tls.Certificate) {
	r.cert.Store(c)
	r.expiry.Set(float64(c.Leaf.NotAfter.Unix()))
}

// reload loads the files if they changed since the last check, and says
// what happened: the certificate is replaced only by a pair that loads.
func (r *certReloader) reload() {
	r.mu.Lock()
	defer r.mu.Unlock()
	sum, err := hashFiles(r.certFile, r.keyFile)
	if err == nil && sum == r.seen {
		return
	}
	var cert *tls.Certificate
	if err == nil {
		cert, sum, err = loadKeyPair(r.certFile, r.keyFile)
	}
	if err != nil {
		if sum != r.bad {
			r.bad = sum // maybe caught between two writes: judged at the next check
			return
		}
		r.seen = sum
		r.reloads.WithLabelValues(reloadError).Inc()
		old := r.cert.Load().Leaf
		r.log.Error("TLS certificate not reloaded: the old one stays", "err", err, "serving_serial", old.SerialNumber.String(), "not_after", old.NotAfter)
		return
	}
	r.seen, r.bad = sum, [32]byte{}
	r.use(cert)
	r.reloads.WithLabelValues(reloadOK).Inc()
	r.log.Info("TLS certificate reloaded", "cert", r.certFile, "subject", cert.Leaf.Subject.String(), "serial", cert.Leaf.SerialNumber.String(), "not_after", cert.Leaf.NotAfter)
}

// watch checks the files every interval (0: never) and on SIGHUP, until
// ctx ends. Polling works wherever the files live (a Kubernetes Secret
// volume swaps a symlink, which file events on the file itself miss), and
// costs two small reads every interval.
func (r *certReloader) watch(ctx context.Context, interval time.Duration) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-hup:
		}
		r.reload()
	}
}

// readBounded reads a certificate or key file, refusing a huge one.
func readBounded(flagName, name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("-%s: %w", flagName, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCertFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("-%s: read %s: %w", flagName, name, err)
	}
	if len(b) > maxCertFileBytes {
		return nil, fmt.Errorf("-%s: %s is larger than %d bytes: not a PEM certificate or key", flagName, name, maxCertFileBytes)
	}
	return b, nil
}

func readPair(certFile, keyFile string) (certPEM, keyPEM []byte, err error) {
	if certPEM, err = readBounded("tls-cert", certFile); err != nil {
		return nil, nil, err
	}
	if keyPEM, err = readBounded("tls-key", keyFile); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// hashFiles is the hash of the two files' bytes; when they cannot be
// read, the hash of the error, so that the same failure is recognised
// at the next check.
func hashFiles(certFile, keyFile string) ([32]byte, error) {
	c, k, err := readPair(certFile, keyFile)
	if err != nil {
		return sha256.Sum256([]byte(err.Error())), err
	}
	return pairSum(c, k), nil
}

func pairSum(certPEM, keyPEM []byte) [32]byte {
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// loadKeyPair reads and checks the pair; an error names the file at
// fault. The hash is of the bytes read, also when they did not load.
func loadKeyPair(certFile, keyFile string) (*tls.Certificate, [32]byte, error) {
	certPEM, keyPEM, err := readPair(certFile, keyFile)
	if err != nil {
		return nil, sha256.Sum256([]byte(err.Error())), err
	}
	sum := pairSum(certPEM, keyPEM)
	// The certificate alone first, so that its errors name its file
	// (tls.X509KeyPair's do not say which input is wrong).
	var leafDER []byte
	for rest := certPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			leafDER = b.Bytes
			break
		}
	}
	if leafDER == nil {
		return nil, sum, fmt.Errorf("-tls-cert: %s holds no PEM CERTIFICATE block", certFile)
	}
	if _, err := x509.ParseCertificate(leafDER); err != nil {
		return nil, sum, fmt.Errorf("-tls-cert: %s: %w", certFile, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, sum, fmt.Errorf("-tls-key: %s (the key of -tls-cert %s): %w", keyFile, certFile, err)
	}
	return &cert, sum, nil // cert.Leaf is parsed by X509KeyPair
}

// handshakeErrors counts net/http's "TLS handshake error" lines and
// sends them to debug: scanners, TCP health checks and clients that do
// not trust the certificate make one per connection, too many for warn.
// Every other line goes to next as before.
func handshakeErrors(next *log.Logger, reg prometheus.Registerer, lg *slog.Logger) *log.Logger {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sockjs_tls_handshake_errors_total",
		Help: "TLS handshakes that failed or timed out (logged at debug).",
	})
	reg.MustRegister(c)
	return log.New(logFilter(func(p []byte) (int, error) {
		if bytes.Contains(p, []byte("http: TLS handshake error")) {
			c.Inc()
			lg.Debug(strings.TrimSpace(string(p)))
			return len(p), nil
		}
		if next == nil {
			return os.Stderr.Write(p)
		}
		return next.Writer().Write(p)
	}), "", 0)
}

type logFilter func([]byte) (int, error)

func (f logFilter) Write(p []byte) (int, error) { return f(p) }
