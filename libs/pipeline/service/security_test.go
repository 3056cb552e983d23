package service

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate, PEM
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, name+".crt")
	writePEM(t, file, "CERTIFICATE", der)
	return &testCA{cert: cert, key: key, file: file}
}

// issue signs a certificate for 127.0.0.1 and localhost, usable by a server
// and a client, and returns it with the paths of its PEM files.
func (ca *testCA) issue(t *testing.T, dir, name string) (cert tls.Certificate, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	cert, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return cert, certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// pki is a CA and a server certificate it signed, shared by the tests.
type pki struct {
	dir    string
	ca     *testCA
	server tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	server, _, _ := ca.issue(t, dir, "server")
	return &pki{dir: dir, ca: ca, server: server}
}

func (p *pki) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12}
}

// newCluster starts a one-broker kfake cluster, stopped when the test ends.
func newCluster(t *testing.T, opts ...kfake.Opt) []string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, "sec")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// roundTrip produces a record through a client with the options of sec and
// consumes it back; it returns the first error.
func roundTrip(t *testing.T, seeds []string, sec KafkaSecurityConfig) error {
	t.Helper()
	opts, err := sec.Options()
	if err != nil {
		t.Fatalf("Options: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.ConsumeTopics("sec"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RequestRetries(1),
		kgo.RetryTimeout(2 * time.Second),
		kgo.RecordDeliveryTimeout(3 * time.Second),
	}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	want := fmt.Sprintf("hello %d", time.Now().UnixNano())
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "sec", Value: []byte(want)}).FirstErr(); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	for {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("consume: %w", err)
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			return fmt.Errorf("consume: %w", errs[0].Err)
		}
		for _, r := range fetches.Records() {
			if string(r.Value) == want {
				return nil
			}
		}
	}
}

// ping checks that a client with the options of sec reaches the cluster.
func ping(t *testing.T, seeds []string, sec KafkaSecurityConfig) error {
	t.Helper()
	opts, err := sec.Options()
	if err != nil {
		t.Fatalf("Options: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.RequestRetries(0), kgo.DialTimeout(time.Second)}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	return cl.Ping(ctx)
}

func TestKafkaSecuritySCRAMOverTLS(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	for _, mech := range []string{SASLScramSHA256, SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			seeds := newCluster(t, kfake.EnableSASL(), kfake.Superuser(mech, "alice", "wonder-land"), kfake.TLS(p.serverTLS()))
			sec := KafkaSecurityConfig{TLSCAFile: p.ca.file, SASLMechanism: strings.ToLower(mech), SASLUsername: "alice", SASLPassword: "wonder-land"}
			if err := roundTrip(t, seeds, sec); err != nil {
				t.Fatalf("%s over TLS: %v", mech, err)
			}
			t.Run("wrong password", func(t *testing.T) {
				bad := sec
				bad.SASLPassword = "not-it"
				err := ping(t, seeds, bad)
				if err == nil {
					t.Fatal("a wrong password was accepted")
				}
				t.Logf("wrong password: %v", err)
			})
			t.Run("password file", func(t *testing.T) {
				file := filepath.Join(t.TempDir(), "password")
				if err := os.WriteFile(file, []byte("wonder-land\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				fromFile := sec
				fromFile.SASLPassword, fromFile.SASLPasswordFile = "", file
				if err := ping(t, seeds, fromFile); err != nil {
					t.Fatalf("password from a file with a trailing newline: %v", err)
				}
			})
		})
	}
}

func TestKafkaSecurityTLSWrongCA(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	seeds := newCluster(t, kfake.TLS(p.serverTLS()))
	if err := ping(t, seeds, KafkaSecurityConfig{TLSCAFile: p.ca.file}); err != nil {
		t.Fatalf("right CA: %v", err)
	}
	other := newTestCA(t, t.TempDir(), "other-ca")
	err := ping(t, seeds, KafkaSecurityConfig{TLSCAFile: other.file})
	if err == nil {
		t.Fatal("a broker certificate of an unknown CA was accepted")
	}
	var unknown x509.UnknownAuthorityError
	if !strings.Contains(err.Error(), "unknown authority") && !errors.As(err, &unknown) {
		t.Fatalf("wrong CA: error %v, want an unknown authority", err)
	}
	// A wrong server name fails too; skipping verification accepts anything.
	if err := ping(t, seeds, KafkaSecurityConfig{TLSCAFile: p.ca.file, TLSServerName: "kafka.example"}); err == nil {
		t.Fatal("a certificate without the server name was accepted")
	}
	if err := ping(t, seeds, KafkaSecurityConfig{TLSInsecureSkipVerify: true}); err != nil {
		t.Fatalf("insecure skip verify: %v", err)
	}
}

func TestKafkaSecurityMutualTLS(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	clientCA := newTestCA(t, p.dir, "client-ca")
	_, certFile, keyFile := clientCA.issue(t, p.dir, "client")
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.cert)
	srv := p.serverTLS()
	srv.ClientCAs, srv.ClientAuth = pool, tls.RequireAndVerifyClientCert
	seeds := newCluster(t, kfake.TLS(srv))
	if err := roundTrip(t, seeds, KafkaSecurityConfig{TLSCAFile: p.ca.file, TLSCertFile: certFile, TLSKeyFile: keyFile}); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	if err := ping(t, seeds, KafkaSecurityConfig{TLSCAFile: p.ca.file}); err == nil {
		t.Fatal("a client without a certificate was accepted")
	}
}

func TestKafkaSecurityPlain(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	seeds := newCluster(t, kfake.EnableSASL(), kfake.Superuser(SASLPlain, "bob", "builder"), kfake.TLS(p.serverTLS()))
	if err := roundTrip(t, seeds, KafkaSecurityConfig{TLS: true, TLSCAFile: p.ca.file, SASLMechanism: "plain", SASLUsername: "bob", SASLPassword: "builder"}); err != nil {
		t.Fatalf("PLAIN over TLS: %v", err)
	}
	if err := ping(t, seeds, KafkaSecurityConfig{TLSCAFile: p.ca.file, SASLMechanism: "PLAIN", SASLUsername: "bob", SASLPassword: "wrong"}); err == nil {
		t.Fatal("PLAIN with a wrong password was accepted")
	}
}

func TestKafkaSecurityNoSASLAgainstSASLCluster(t *testing.T) {
	t.Parallel()
	seeds := newCluster(t, kfake.EnableSASL(), kfake.Superuser(SASLScramSHA256, "alice", "wonder-land"))
	if err := ping(t, seeds, KafkaSecurityConfig{SASLMechanism: SASLScramSHA256, SASLUsername: "alice", SASLPassword: "wonder-land"}); err != nil {
		t.Fatalf("SCRAM without TLS: %v", err)
	}
	// kfake answers requests of an unauthenticated connection by closing it.
	err := ping(t, seeds, KafkaSecurityConfig{})
	if err == nil {
		t.Fatal("a client without SASL used a SASL cluster")
	}
	if !strings.Contains(err.Error(), "SASL") { // franz-go names the likely cause
		t.Errorf("without SASL: error %v, want one naming SASL", err)
	}
}

func TestKafkaSecurityConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	_, certFile, keyFile := ca.issue(t, dir, "client")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyPW := filepath.Join(dir, "empty-password")
	if err := os.WriteFile(emptyPW, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	cases := []struct {
		name string
		c    KafkaSecurityConfig
		want string // substring of the error; "" means valid
	}{
		{"zero value", KafkaSecurityConfig{}, ""},
		{"tls with system roots", KafkaSecurityConfig{TLS: true}, ""},
		{"mutual tls", KafkaSecurityConfig{TLSCAFile: ca.file, TLSCertFile: certFile, TLSKeyFile: keyFile}, ""},
		{"scram", KafkaSecurityConfig{SASLMechanism: " scram-sha-512 ", SASLUsername: "u", SASLPassword: "p"}, ""},
		{"unknown mechanism", KafkaSecurityConfig{SASLMechanism: "GSSAPI", SASLUsername: "u", SASLPassword: "p"}, `unknown mechanism "GSSAPI"`},
		{"no username", KafkaSecurityConfig{SASLMechanism: "PLAIN", SASLPassword: "p"}, "needs a username (KAFKA_SASL_USERNAME)"},
		{"no password", KafkaSecurityConfig{SASLMechanism: "PLAIN", SASLUsername: "u"}, "needs a password"},
		{"both passwords", KafkaSecurityConfig{SASLMechanism: "PLAIN", SASLUsername: "u", SASLPassword: "p", SASLPasswordFile: emptyPW}, "both a password"},
		{"credentials without mechanism", KafkaSecurityConfig{SASLUsername: "u", SASLPassword: "p"}, "no mechanism"},
		{"missing password file", KafkaSecurityConfig{SASLMechanism: "PLAIN", SASLUsername: "u", SASLPasswordFile: missing}, "password file (KAFKA_SASL_PASSWORD_FILE)"},
		{"empty password file", KafkaSecurityConfig{SASLMechanism: "PLAIN", SASLUsername: "u", SASLPasswordFile: emptyPW}, "is empty"},
		{"missing CA file", KafkaSecurityConfig{TLSCAFile: missing}, "CA file (KAFKA_TLS_CA_FILE)"},
		{"CA file without certificates", KafkaSecurityConfig{TLSCAFile: garbage}, "holds no PEM certificate"},
		{"cert without key", KafkaSecurityConfig{TLSCertFile: certFile}, "without its key"},
		{"key without cert", KafkaSecurityConfig{TLSKeyFile: keyFile}, "without its certificate"},
		{"unreadable cert", KafkaSecurityConfig{TLSCertFile: missing, TLSKeyFile: keyFile}, "client certificate (KAFKA_TLS_CERT_FILE"},
		{"key of another cert", KafkaSecurityConfig{TLSCertFile: ca.file, TLSKeyFile: keyFile}, "client certificate"},
	}
	for _, c := range cases {
		_, err := c.c.Options()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: unexpected error %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

func TestKafkaSecurityTLSImplied(t *testing.T) {
	t.Parallel()
	for _, c := range []KafkaSecurityConfig{{TLS: true}, {TLSCAFile: "x"}, {TLSCertFile: "x"}, {TLSKeyFile: "x"}, {TLSServerName: "x"}, {TLSInsecureSkipVerify: true}} {
		if !c.TLSEnabled() {
			t.Errorf("%v: TLS not enabled", c)
		}
	}
	if (KafkaSecurityConfig{SASLMechanism: "PLAIN"}).TLSEnabled() {
		t.Error("SASL alone enabled TLS")
	}
}

func TestKafkaSecurityNeverLogsThePassword(t *testing.T) {
	t.Parallel()
	const secret = "hunter2-very-secret"
	c := KafkaSecurityConfig{TLSCAFile: "/etc/kafka/ca.pem", SASLMechanism: "scram-sha-512", SASLUsername: "svc", SASLPassword: secret}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("config", "kafka", c, "ptr", &c)
	log.Info("text", "s", fmt.Sprintf("%v %+v %#v %s", c, c, c, c))
	c.Report(log)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "kafka", c)
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	buf.Write(js)
	out := buf.String()
	if strings.Contains(out, secret) {
		t.Fatalf("the password leaked:\n%s", out)
	}
	for _, want := range []string{`"sasl_username":"svc"`, `"sasl_mechanism":"SCRAM-SHA-512"`, `"sasl_password":"[REDACTED]"`, `"tls":true`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

func TestKafkaSecurityWarnings(t *testing.T) {
	t.Parallel()
	w := KafkaSecurityConfig{TLSInsecureSkipVerify: true}.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "for tests only") {
		t.Errorf("insecure skip verify warnings = %q", w)
	}
	w = KafkaSecurityConfig{SASLMechanism: "plain", SASLUsername: "u", SASLPassword: "p"}.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "in the clear") {
		t.Errorf("PLAIN without TLS warnings = %q", w)
	}
	if w := (KafkaSecurityConfig{TLS: true, SASLMechanism: "SCRAM-SHA-256"}).Warnings(); len(w) != 0 {
		t.Errorf("SCRAM over TLS warnings = %q", w)
	}
}

// The flags read the environment; the password has no flag (a command line is
// public) but is read from KAFKA_SASL_PASSWORD. Not parallel: it sets the environment.
func TestFlagsKafkaSecurity(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	t.Setenv(EnvKafkaTLSCAFile, ca.file)
	t.Setenv(EnvKafkaSASLMechanism, "scram-sha-256")
	t.Setenv(EnvKafkaSASLUsername, "from-env")
	t.Setenv(EnvKafkaSASLPassword, "pw-from-env")
	f := NewFlags("test")
	var buf bytes.Buffer
	sec := f.KafkaSecurity(slog.New(slog.NewJSONHandler(&buf, nil)))
	f.SetOutput(&buf)
	f.PrintDefaults()
	if f.Lookup("kafka-sasl-password") != nil {
		t.Error("the password has a flag")
	}
	if err := f.Parse([]string{"-kafka-sasl-username", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	opts, err := sec()
	if err != nil {
		t.Fatal(err)
	}
	if len(opts) != 2 {
		t.Errorf("%d options, want TLS and SASL", len(opts))
	}
	out := buf.String()
	if strings.Contains(out, "pw-from-env") {
		t.Fatalf("the password leaked:\n%s", out)
	}
	if !strings.Contains(out, `"sasl_username":"from-flag"`) || !strings.Contains(out, "(env KAFKA_TLS_CA_FILE)") {
		t.Errorf("usage and report:\n%s", out)
	}

	t.Setenv(EnvKafkaSASLMechanism, "OAUTHBEARER")
	f = NewFlags("test")
	sec = f.KafkaSecurity(nil)
	if err := f.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sec(); err == nil || !strings.Contains(err.Error(), "unknown mechanism") {
		t.Errorf("unknown mechanism: error %v", err)
	}
}

// Not parallel: it sets the environment.
func TestKafkaSecurityFromEnv(t *testing.T) {
	t.Setenv(EnvKafkaTLS, "true")
	t.Setenv(EnvKafkaSASLMechanism, "PLAIN")
	t.Setenv(EnvKafkaSASLUsername, "u")
	t.Setenv(EnvKafkaSASLPasswordFile, "/run/secrets/kafka")
	c, err := KafkaSecurityFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	want := KafkaSecurityConfig{TLS: true, SASLMechanism: "PLAIN", SASLUsername: "u", SASLPasswordFile: "/run/secrets/kafka"}
	if c != want {
		t.Errorf("got %v, want %v", c, want)
	}
	t.Setenv(EnvKafkaTLSInsecureSkipVerify, "sure")
	if _, err := KafkaSecurityFromEnv(); err == nil || !strings.Contains(err.Error(), EnvKafkaTLSInsecureSkipVerify) {
		t.Errorf("malformed bool: error %v", err)
	}
}
