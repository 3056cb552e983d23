package pglocal

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/answerback/answerback/libs/testenv/ports"
)

// needServer returns the server binaries' folder; without them the test is
// skipped — or fails under CI=true, where a missing dependency is a broken
// build, never a silent skip.
func needServer(t *testing.T) {
	t.Helper()
	if _, err := FindServer(context.Background(), false); err != nil {
		if errors.Is(err, ErrNoServer) && !strings.EqualFold(os.Getenv("CI"), "true") {
			t.Skip(err)
		}
		t.Fatalf("required infrastructure missing under CI=true: %v", err)
	}
}

func TestTLSFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := &Server{opts: Options{Dir: dir, TLS: true}}
	if err := os.MkdirAll(s.dataDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := s.ensureTLSFiles(now); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{caCertFile, serverCertFile, serverKeyFile} {
		fi, err := os.Stat(filepath.Join(s.dataDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	ca, _ := os.ReadFile(s.CAFile())
	if err := s.ensureTLSFiles(now); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(s.CAFile()); string(again) != string(ca) {
		t.Error("valid certificates were made anew")
	}
	later := now.Add(certValidity - certRenewal/2)
	if err := s.ensureTLSFiles(later); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(s.CAFile()); string(again) == string(ca) {
		t.Error("certificates about to expire were kept")
	}
	if !tlsFilesValid(s.dataDir(), later) {
		t.Error("renewed certificates are not valid")
	}
}

// TestStartTLS starts a cluster with TLS and connects to it with pgx,
// verifying the server's certificate: the session is encrypted, and a client
// trusting another authority is refused.
func TestStartTLS(t *testing.T) {
	needServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	port, err := ports.Free()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pg, err := Start(ctx, Options{Dir: dir, Port: port, TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := pg.Stop(ctx); err != nil {
			t.Error(err)
		}
		if pg.opts.Dir != dir { // root: the cluster lives in a folder the server's user can reach
			_ = os.RemoveAll(pg.opts.Dir)
		}
	})
	for _, name := range []string{caCertFile, serverCertFile, serverKeyFile} {
		fi, err := os.Stat(filepath.Join(pg.dataDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, fi.Mode().Perm())
		}
	}

	dsn := pg.DSN("")
	if !strings.Contains(dsn, "sslmode=verify-full") || !strings.Contains(dsn, "sslrootcert=") {
		t.Fatalf("DSN %s does not verify the server", dsn)
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		conn, err := pgx.Connect(ctx, strings.Replace(dsn, "127.0.0.1", host, 1))
		if err != nil {
			t.Fatalf("verify-full to %s: %v (log: %s)", host, err, pg.LogPath())
		}
		var ssl bool
		if err := conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
			t.Fatal(err)
		}
		_ = conn.Close(ctx)
		if !ssl {
			t.Fatalf("verify-full to %s: the session is not encrypted", host)
		}
	}

	// A client trusting another authority refuses the server.
	other, err := newTLSFiles(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	otherCA := filepath.Join(t.TempDir(), "other-ca.crt")
	if err := os.WriteFile(otherCA, other[0].pem, 0o600); err != nil {
		t.Fatal(err)
	}
	wrong := strings.Replace(dsn, url.QueryEscape(pg.CAFile()), url.QueryEscape(otherCA), 1)
	if wrong == dsn {
		t.Fatalf("could not replace the CA in %s", dsn)
	}
	if conn, err := pgx.Connect(ctx, wrong); err == nil {
		_ = conn.Close(ctx)
		t.Fatal("verify-full with another CA connected")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("verify-full with another CA: error %v, want a certificate error", err)
	}

	// Starting again reuses the running cluster, TLS on.
	again, err := Start(ctx, Options{Dir: dir, Port: port, TLS: true})
	if err != nil {
		t.Fatalf("reuse: %v", err)
	}
	if again.CAFile() != pg.CAFile() {
		t.Errorf("reuse: CA file %s, want %s", again.CAFile(), pg.CAFile())
	}
}

// TestStartTLSOnPlainCluster: a cluster already running without TLS is not
// silently reused by a Start that asks for TLS.
func TestStartTLSOnPlainCluster(t *testing.T) {
	needServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	port, err := ports.Free()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pg, err := Start(ctx, Options{Dir: dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := pg.Stop(ctx); err != nil {
			t.Error(err)
		}
		if pg.opts.Dir != dir {
			_ = os.RemoveAll(pg.opts.Dir)
		}
	})
	if pg.CAFile() != "" || !strings.Contains(pg.DSN(""), "sslmode=disable") {
		t.Fatalf("plain cluster: CA file %q, DSN %s", pg.CAFile(), pg.DSN(""))
	}
	if _, err := Start(ctx, Options{Dir: dir, Port: port, TLS: true}); err == nil || !strings.Contains(err.Error(), "without TLS") {
		t.Fatalf("TLS start on a plain running cluster: error %v", err)
	}
}
