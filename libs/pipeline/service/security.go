package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// SASL mechanisms KafkaSecurityConfig accepts.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Environment variables of the Kafka connection's security, read by
// Flags.KafkaSecurity and KafkaSecurityFromEnv.
const (
	EnvKafkaTLS                   = "KAFKA_TLS"
	EnvKafkaTLSCAFile             = "KAFKA_TLS_CA_FILE"
	EnvKafkaTLSCertFile           = "KAFKA_TLS_CERT_FILE"
	EnvKafkaTLSKeyFile            = "KAFKA_TLS_KEY_FILE"
	EnvKafkaTLSServerName         = "KAFKA_TLS_SERVER_NAME"
	EnvKafkaTLSInsecureSkipVerify = "KAFKA_TLS_INSECURE_SKIP_VERIFY"
	EnvKafkaSASLMechanism         = "KAFKA_SASL_MECHANISM"
	EnvKafkaSASLUsername          = "KAFKA_SASL_USERNAME"
	EnvKafkaSASLPassword          = "KAFKA_SASL_PASSWORD"
	EnvKafkaSASLPasswordFile      = "KAFKA_SASL_PASSWORD_FILE"
)

// KafkaSecurityConfig is how a Kafka client proves who it is and protects the
// connection: TLS (server verification, optionally a client certificate) and
// SASL (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512). The zero value is a plain
// connection without authentication.
//
// The password never leaves the value through logging or formatting: LogValue,
// String and GoString redact it, and it is not marshalled to JSON.
type KafkaSecurityConfig struct {
	// TLS dials the brokers with TLS. Any of the other TLS settings implies it.
	TLS bool
	// TLSCAFile is a PEM file of the certificate authorities the brokers'
	// certificates are verified against; empty: the system's roots.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are the PEM client certificate and its key,
	// for brokers that authenticate clients by certificate (mutual TLS).
	TLSCertFile string
	TLSKeyFile  string
	// TLSServerName is the name the brokers' certificates must carry; empty:
	// the host of each broker dialed.
	TLSServerName string
	// TLSInsecureSkipVerify accepts any broker certificate. For tests only:
	// it leaves the connection open to whoever sits between client and broker.
	TLSInsecureSkipVerify bool

	// SASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (any case);
	// empty: no SASL.
	SASLMechanism string
	// SASLUsername and SASLPassword are the SASL credentials. The password may
	// come from SASLPasswordFile instead (not both).
	SASLUsername string
	SASLPassword string `json:"-"`
	// SASLPasswordFile holds the password (a trailing newline is dropped), as
	// mounted secrets are. It is read again at every authentication, so a
	// rotated secret is picked up by new connections.
	SASLPasswordFile string
}

// TLSEnabled reports whether the brokers are dialed with TLS: TLS is set, or
// any other TLS setting is.
func (c KafkaSecurityConfig) TLSEnabled() bool {
	return c.TLS || c.TLSCAFile != "" || c.TLSCertFile != "" || c.TLSKeyFile != "" || c.TLSServerName != "" || c.TLSInsecureSkipVerify
}

// Mechanism is the SASL mechanism in canonical upper case, "" for none.
func (c KafkaSecurityConfig) Mechanism() string {
	return strings.ToUpper(strings.TrimSpace(c.SASLMechanism))
}

// Options returns the franz-go client options of the configuration (none for
// the zero value), or an error saying what is wrong with it: an unknown SASL
// mechanism, missing or doubly given credentials, an unreadable or invalid
// certificate, password or key file.
func (c KafkaSecurityConfig) Options() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	tlsCfg, err := c.TLSConfig()
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsCfg))
	}
	mech, err := c.saslMechanism()
	if err != nil {
		return nil, err
	}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	return opts, nil
}

// TLSConfig returns the TLS configuration of the connection, nil when TLS is
// off.
func (c KafkaSecurityConfig) TLSConfig() (*tls.Config, error) {
	if !c.TLSEnabled() {
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.TLSServerName,
		InsecureSkipVerify: c.TLSInsecureSkipVerify, // opt-in, documented as for tests only
	}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka TLS: CA file (%s): %w", EnvKafkaTLSCAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka TLS: CA file %s (%s) holds no PEM certificate", c.TLSCAFile, EnvKafkaTLSCAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile == "":
		return nil, fmt.Errorf("kafka TLS: client certificate %s (%s) given without its key (%s)", c.TLSCertFile, EnvKafkaTLSCertFile, EnvKafkaTLSKeyFile)
	case c.TLSCertFile == "" && c.TLSKeyFile != "":
		return nil, fmt.Errorf("kafka TLS: client key %s (%s) given without its certificate (%s)", c.TLSKeyFile, EnvKafkaTLSKeyFile, EnvKafkaTLSCertFile)
	case c.TLSCertFile != "":
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka TLS: client certificate (%s, %s): %w", EnvKafkaTLSCertFile, EnvKafkaTLSKeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (c KafkaSecurityConfig) saslMechanism() (sasl.Mechanism, error) {
	mech := c.Mechanism()
	if mech == "" {
		if c.SASLUsername != "" || c.SASLPassword != "" || c.SASLPasswordFile != "" {
			return nil, fmt.Errorf("kafka SASL: credentials given but no mechanism: set %s to %s, %s or %s", EnvKafkaSASLMechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
		}
		return nil, nil
	}
	if mech != SASLPlain && mech != SASLScramSHA256 && mech != SASLScramSHA512 {
		return nil, fmt.Errorf("kafka SASL: unknown mechanism %q (%s): want %s, %s or %s", c.SASLMechanism, EnvKafkaSASLMechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
	}
	if c.SASLUsername == "" {
		return nil, fmt.Errorf("kafka SASL: mechanism %s needs a username (%s)", mech, EnvKafkaSASLUsername)
	}
	if c.SASLPassword != "" && c.SASLPasswordFile != "" {
		return nil, fmt.Errorf("kafka SASL: both a password (%s) and a password file (%s) given; set one", EnvKafkaSASLPassword, EnvKafkaSASLPasswordFile)
	}
	if c.SASLPassword == "" && c.SASLPasswordFile == "" {
		return nil, fmt.Errorf("kafka SASL: mechanism %s needs a password (%s or %s)", mech, EnvKafkaSASLPassword, EnvKafkaSASLPasswordFile)
	}
	password := func() (string, error) { return c.SASLPassword, nil }
	if c.SASLPasswordFile != "" {
		password = c.readPasswordFile
		if _, err := password(); err != nil { // fail at startup, not at the first connection
			return nil, err
		}
	}
	user := c.SASLUsername
	switch mech {
	case SASLPlain:
		return plain.Plain(func(context.Context) (plain.Auth, error) {
			p, err := password()
			return plain.Auth{User: user, Pass: p}, err
		}), nil
	case SASLScramSHA256:
		return scram.Sha256(func(context.Context) (scram.Auth, error) {
			p, err := password()
			return scram.Auth{User: user, Pass: p}, err
		}), nil
	default:
		return scram.Sha512(func(context.Context) (scram.Auth, error) {
			p, err := password()
			return scram.Auth{User: user, Pass: p}, err
		}), nil
	}
}

func (c KafkaSecurityConfig) readPasswordFile() (string, error) {
	raw, err := os.ReadFile(c.SASLPasswordFile)
	if err != nil {
		return "", fmt.Errorf("kafka SASL: password file (%s): %w", EnvKafkaSASLPasswordFile, err)
	}
	p := strings.TrimRight(string(raw), "\r\n")
	if p == "" {
		return "", fmt.Errorf("kafka SASL: password file %s (%s) is empty", c.SASLPasswordFile, EnvKafkaSASLPasswordFile)
	}
	return p, nil
}

const redacted = "[REDACTED]"

// LogValue describes the configuration for logs, without the password.
func (c KafkaSecurityConfig) LogValue() slog.Value {
	attrs := []slog.Attr{slog.Bool("tls", c.TLSEnabled())}
	add := func(key, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(key, v))
		}
	}
	add("tls_ca_file", c.TLSCAFile)
	add("tls_cert_file", c.TLSCertFile)
	add("tls_key_file", c.TLSKeyFile)
	add("tls_server_name", c.TLSServerName)
	if c.TLSInsecureSkipVerify {
		attrs = append(attrs, slog.Bool("tls_insecure_skip_verify", true))
	}
	add("sasl_mechanism", c.Mechanism())
	add("sasl_username", c.SASLUsername)
	if c.SASLPassword != "" {
		attrs = append(attrs, slog.String("sasl_password", redacted))
	}
	add("sasl_password_file", c.SASLPasswordFile)
	return slog.GroupValue(attrs...)
}

// String describes the configuration without the password.
func (c KafkaSecurityConfig) String() string {
	var b strings.Builder
	b.WriteString("{")
	for i, a := range c.LogValue().Group() {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(a.Key + "=" + a.Value.String())
	}
	b.WriteString("}")
	return b.String()
}

// GoString keeps %#v from printing the password.
func (c KafkaSecurityConfig) GoString() string { return "service.KafkaSecurityConfig" + c.String() }

// Warnings are what an operator should hear about a configuration that
// works: verification turned off, a password sent in the clear.
func (c KafkaSecurityConfig) Warnings() []string {
	var w []string
	if c.TLSInsecureSkipVerify {
		w = append(w, EnvKafkaTLSInsecureSkipVerify+" is set: broker certificates are not verified (for tests only)")
	}
	if c.Mechanism() == SASLPlain && !c.TLSEnabled() {
		w = append(w, "SASL PLAIN without TLS: the password crosses the network in the clear (set "+EnvKafkaTLS+")")
	}
	return w
}

// Report logs the configuration (info, password redacted) and its warnings.
func (c KafkaSecurityConfig) Report(log *slog.Logger) {
	if log == nil {
		return
	}
	log.Info("kafka connection security", "kafka_security", c)
	for _, w := range c.Warnings() {
		log.Warn(w)
	}
}

// KafkaSecurityFromEnv reads the configuration from the KAFKA_TLS* and
// KAFKA_SASL_* environment variables, for programs without Flags.
func KafkaSecurityFromEnv() (KafkaSecurityConfig, error) {
	var errs []error
	boolEnv := func(name string) bool {
		v := strings.TrimSpace(os.Getenv(name))
		if v == "" {
			return false
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("invalid value %q for environment variable %s: want true or false", v, name))
		}
		return b
	}
	c := KafkaSecurityConfig{
		TLS:                   boolEnv(EnvKafkaTLS),
		TLSCAFile:             os.Getenv(EnvKafkaTLSCAFile),
		TLSCertFile:           os.Getenv(EnvKafkaTLSCertFile),
		TLSKeyFile:            os.Getenv(EnvKafkaTLSKeyFile),
		TLSServerName:         os.Getenv(EnvKafkaTLSServerName),
		TLSInsecureSkipVerify: boolEnv(EnvKafkaTLSInsecureSkipVerify),
		SASLMechanism:         os.Getenv(EnvKafkaSASLMechanism),
		SASLUsername:          os.Getenv(EnvKafkaSASLUsername),
		SASLPassword:          os.Getenv(EnvKafkaSASLPassword),
		SASLPasswordFile:      os.Getenv(EnvKafkaSASLPasswordFile),
	}
	return c, errors.Join(errs...)
}

// KafkaSecurity defines the flags of the Kafka connection's security, each
// defaulting to its environment variable: -kafka-tls, -kafka-tls-ca-file,
// -kafka-tls-cert-file, -kafka-tls-key-file, -kafka-tls-server-name,
// -kafka-tls-insecure-skip-verify, -kafka-sasl-mechanism,
// -kafka-sasl-username and -kafka-sasl-password-file. The password itself
// has no flag (a command line is visible to every user of the machine): it
// is KAFKA_SASL_PASSWORD or the file's content.
//
// Call the returned function after Parse: it reports the configuration to
// log (when not nil; password redacted, warnings for a weak setup) and
// returns the client options to append to every Kafka client's, or an error
// saying what is wrong.
func (f Flags) KafkaSecurity(log *slog.Logger) func() ([]kgo.Opt, error) {
	tlsOn := f.Bool("kafka-tls", EnvKafkaTLS, false, "dial Kafka with TLS (implied by any other -kafka-tls-* setting)")
	ca := f.String("kafka-tls-ca-file", EnvKafkaTLSCAFile, "", "PEM file of the CAs that sign the brokers' certificates (empty: the system's)")
	cert := f.String("kafka-tls-cert-file", EnvKafkaTLSCertFile, "", "PEM client certificate, for mutual TLS (with -kafka-tls-key-file)")
	key := f.String("kafka-tls-key-file", EnvKafkaTLSKeyFile, "", "PEM key of the client certificate")
	serverName := f.String("kafka-tls-server-name", EnvKafkaTLSServerName, "", "name the brokers' certificates must carry (empty: the host dialed)")
	insecure := f.Bool("kafka-tls-insecure-skip-verify", EnvKafkaTLSInsecureSkipVerify, false, "accept any broker certificate: FOR TESTS ONLY")
	mech := f.String("kafka-sasl-mechanism", EnvKafkaSASLMechanism, "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: no SASL)")
	user := f.String("kafka-sasl-username", EnvKafkaSASLUsername, "", "SASL username")
	pwFile := f.String("kafka-sasl-password-file", EnvKafkaSASLPasswordFile, "", "file holding the SASL password (or set KAFKA_SASL_PASSWORD)")
	return func() ([]kgo.Opt, error) {
		c := KafkaSecurityConfig{
			TLS: *tlsOn, TLSCAFile: *ca, TLSCertFile: *cert, TLSKeyFile: *key, TLSServerName: *serverName, TLSInsecureSkipVerify: *insecure,
			SASLMechanism: *mech, SASLUsername: *user, SASLPassword: os.Getenv(EnvKafkaSASLPassword), SASLPasswordFile: *pwFile,
		}
		opts, err := c.Options()
		if err != nil {
			return nil, err
		}
		c.Report(log)
		return opts, nil
	}
}
