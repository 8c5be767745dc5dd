package main

import (
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

func TestClusterConfig(t *testing.T) {
	host, _ := os.Hostname()
	certFile, keyFile := certFiles(t, testenv.NewCA(t).Issue(t, 1))
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // "" for success
		wantURL string // the advertised URL in cluster mode
	}{
		{name: "one node", args: nil},
		{name: "no secret", args: []string{"-redis", "redis://127.0.0.1:1/0"}, wantErr: "-cluster-secret"},
		{name: "bad URL", args: []string{"-redis", "http://user:hunter2@x", "-cluster-secret", "s"}, wantErr: "not a redis"},
		{name: "derived from -addr", args: []string{"-redis", "redis://127.0.0.1:1/0", "-cluster-secret", "s", "-addr", "127.0.0.1:8085"}, wantURL: "http://127.0.0.1:8085"},
		{name: "derived, with TLS", args: []string{"-redis", "redis://127.0.0.1:1/0", "-cluster-secret", "s", "-addr", "127.0.0.1:8085", "-tls-cert", certFile, "-tls-key", keyFile}, wantURL: "https://127.0.0.1:8085"},
		{name: "every interface", args: []string{"-redis", "redis://127.0.0.1:1/0", "-cluster-secret", "s", "-addr", ":8085"}, wantURL: "http://" + host + ":8085"},
		{name: "free port", args: []string{"-redis", "redis://127.0.0.1:1/0", "-cluster-secret", "s", "-addr", "127.0.0.1:0"}, wantErr: "-cluster-advertise"},
		{name: "explicit", args: []string{"-redis", "redis://127.0.0.1:1/0", "-cluster-advertise", "http://10.1.2.3:9000"}, env: map[string]string{"SOCKJSD_CLUSTER_SECRET": "s"}, wantURL: "http://10.1.2.3:9000"},
		{name: "bad advertise", args: []string{"-redis", "redis://127.0.0.1:1/0", "-cluster-secret", "s", "-cluster-advertise", "10.1.2.3:9000"}, wantErr: "-cluster-advertise"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg, err := parseConfig(append([]string{"-client-dir", t.TempDir()}, tc.args...))
			if err != nil {
				t.Fatal(err)
			}
			var logged strings.Builder
			srv, err := newServer(cfg, slog.New(slog.NewTextHandler(&logged, nil)))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one naming %s", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("the error shows the Redis password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(srv.services) == 0 {
				t.Fatal("no services")
			}
			if tc.wantURL != "" && !strings.Contains(logged.String(), "advertise="+tc.wantURL) {
				t.Fatalf("log %q does not advertise %s", logged.String(), tc.wantURL)
			}
			if strings.Contains(logged.String(), "cluster-secret") || strings.Contains(logged.String(), "secret=") {
				t.Fatalf("the log mentions the secret: %q", logged.String())
			}
		})
	}
}
