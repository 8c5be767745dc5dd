package bridge

import (
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/sockjsd/sockjsd/session"
)

// environ builds a program's environment, in increasing precedence: the
// server's variables named in PassEnv, the operator's Env additions, then
// the request's variables, so that a program can trust REMOTE_ADDR and
// SOCKJS_SESSION_ID. Nothing else of the server's environment (which may
// hold secrets such as SOCKJSD_HUB_API_KEY) reaches the program.
func (b *Bridge) environ(s *session.Session) []string {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, k := range b.opts.PassEnv {
		if v, ok := os.LookupEnv(k); ok {
			set(k, v)
		}
	}
	for _, kv := range b.opts.Env {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	req := s.Request()
	host, port, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		host, port = req.RemoteAddr, ""
	}
	set("REMOTE_ADDR", host)
	set("REMOTE_PORT", port)
	set("QUERY_STRING", queryString(req.Query, s.Transport()))
	set("SCRIPT_NAME", b.opts.Name)
	set("SERVER_SOFTWARE", "sockjsd")
	set("SERVER_PROTOCOL", "SockJS/0.3")
	if h, p, err := net.SplitHostPort(req.Host); err == nil {
		set("SERVER_NAME", h)
		set("SERVER_PORT", p)
	} else {
		set("SERVER_NAME", req.Host)
	}
	set("SOCKJS_TRANSPORT", s.Transport().String())
	set("SOCKJS_SESSION_ID", s.ID())
	for _, name := range b.opts.Headers {
		if vs := req.Header.Values(name); len(vs) > 0 {
			set(headerVar(name), strings.Join(vs, ", "))
		}
	}
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	return env
}

// headerVar is the CGI name of a request header: HTTP_ then the name in
// upper case with '-' as '_'.
func headerVar(name string) string {
	return "HTTP_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// queryString re-encodes the query of the session's opening request (keys
// sorted), less what sockjs-client adds for its own use: c=<callback> on
// jsonp-polling and htmlfile requests, t=<timestamp> (cache busting) on
// xhr-streaming and xhr-polling ones. Applications should not name their
// own parameters c or t.
func queryString(q url.Values, t session.Transport) string {
	var drop string
	switch t {
	case session.JSONPPolling, session.HTMLFile:
		drop = "c"
	case session.XHRStreaming, session.XHRPolling:
		drop = "t"
	}
	if _, ok := q[drop]; ok && drop != "" {
		q = cloneValues(q)
		q.Del(drop)
	}
	return q.Encode()
}

func cloneValues(q url.Values) url.Values {
	out := make(url.Values, len(q))
	for k, v := range q {
		out[k] = v
	}
	return out
}
