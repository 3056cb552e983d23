// Package cli is abctl's command tree. Each command lives in a file of its
// own and adds itself to the tree with register; the shared plumbing —
// connections, --json or table output, exit codes, progress — lives here.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/service"
)

// Exit codes: what a script can tell apart.
const (
	ExitOK       = 0 // done
	ExitFailed   = 1 // the command failed (broker or database unreachable, an operation refused by them)
	ExitUsage    = 2 // bad flags or arguments
	ExitNotFound = 3 // what the command names does not exist (a view, a record, a topic)
	ExitRefused  = 4 // not done because it would be unsafe or was not confirmed (a live gateway's topic, purge without --yes)
	ExitPending  = 5 // done as far as it goes, but there is more: lag left, a rebuild interrupted (run it again)
)

// codedError carries an exit code with its error.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// withCode makes err exit with code.
func withCode(code int, err error) error { return &codedError{code: code, err: err} }

func usageErrorf(format string, args ...any) error {
	return withCode(ExitUsage, fmt.Errorf(format, args...))
}

// App is what every command shares: the global flags, the streams, and the
// connections, opened on first use and closed when the command ends.
type App struct {
	Brokers     string
	DatabaseURL string
	Prefix      string
	JSON        bool
	Timeout     time.Duration

	In       io.Reader
	Out, Err io.Writer

	kafka     *kgo.Client
	kafkaSec  []kgo.Opt // TLS and SASL options from the environment, once read
	kafkaRead bool
	pool      *pgxpool.Pool
}

// embeddedDatabaseURL is the database of `make run`, whose Kafka is the
// default broker 127.0.0.1:9092: next to it, abctl needs no configuration.
const embeddedDatabaseURL = "postgres://postgres@127.0.0.1:15433/postgres?sslmode=disable"

// registry of commands: each command's file adds its constructor in init.
var registry []func(*App) *cobra.Command

func register(newCommand func(*App) *cobra.Command) { registry = append(registry, newCommand) }

// Main runs abctl with args and returns the process's exit code.
func Main(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	app := &App{In: in, Out: out, Err: errOut}
	defer app.close()
	root := app.root()
	root.SetArgs(args)
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errOut)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code := ExitFailed
	var ce *codedError
	if errors.As(err, &ce) {
		code = ce.code
	} else if isUsage(err) {
		code = ExitUsage
	}
	if app.JSON || slices.Contains(args, "--json") { // also when the flags did not parse
		_ = json.NewEncoder(out).Encode(map[string]any{"error": err.Error(), "exitCode": code})
	}
	fmt.Fprintln(errOut, "abctl:", err)
	return code
}

// isUsage tells cobra's own argument and flag errors, which carry no type.
func isUsage(err error) bool {
	msg := err.Error()
	for _, s := range []string{"unknown command", "unknown flag", "unknown shorthand", "flag needs an argument", "invalid argument", "accepts ", "requires at least", "required flag"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func (a *App) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "abctl",
		Short: "Operate an Answerback deployment",
		Long: `abctl operates an Answerback deployment: its topics, consumer groups, view,
dead letters and the reply topics of gateways.

Kafka TLS and SASL come from the environment: KAFKA_TLS, KAFKA_TLS_CA_FILE,
KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE, KAFKA_TLS_SERVER_NAME,
KAFKA_TLS_INSECURE_SKIP_VERIFY (tests only), KAFKA_SASL_MECHANISM (PLAIN,
SCRAM-SHA-256, SCRAM-SHA-512), KAFKA_SASL_USERNAME, and KAFKA_SASL_PASSWORD
or KAFKA_SASL_PASSWORD_FILE. PostgreSQL TLS is set in the database URL
(sslmode=verify-full&sslrootcert=/path/to/ca.crt).

Exit codes: 0 done; 1 failed; 2 bad usage; 3 not found; 4 refused as unsafe
or unconfirmed; 5 done so far, more to do (run again).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.Brokers, "brokers", envOr("KAFKA_BROKERS", "127.0.0.1:9092"), "Kafka seed brokers, comma-separated (env KAFKA_BROKERS)")
	pf.StringVar(&a.DatabaseURL, "database-url", envOr("DATABASE_URL", embeddedDatabaseURL), "PostgreSQL connection string of the view (env DATABASE_URL)")
	pf.StringVar(&a.Prefix, "topic-prefix", os.Getenv("TOPIC_PREFIX"), "prefix of every topic and consumer group name (env TOPIC_PREFIX)")
	pf.BoolVar(&a.JSON, "json", false, "print JSON for scripts instead of tables")
	pf.DurationVar(&a.Timeout, "timeout", 30*time.Second, "how long to wait for the broker or database to answer one request")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withCode(ExitUsage, err) })
	for _, newCommand := range registry {
		root.AddCommand(newCommand(a))
	}
	return root
}

// Kafka returns the shared Kafka client.
func (a *App) Kafka() (*kgo.Client, error) {
	if a.kafka != nil {
		return a.kafka, nil
	}
	brokers := service.List(a.Brokers)
	if len(brokers) == 0 {
		return nil, usageErrorf("no Kafka brokers: set --brokers or KAFKA_BROKERS")
	}
	sec, err := a.kafkaSecurity()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.RequestTimeoutOverhead(a.Timeout)}, sec...)...)
	if err != nil {
		return nil, withCode(ExitUsage, fmt.Errorf("kafka: %w", err))
	}
	a.kafka = cl
	return cl, nil
}

// kafkaSecurity returns the TLS and SASL client options that the KAFKA_TLS*
// and KAFKA_SASL_* environment variables ask for (see
// service.KafkaSecurityConfig), logging their warnings once. Every Kafka
// client abctl makes carries them.
func (a *App) kafkaSecurity() ([]kgo.Opt, error) {
	if a.kafkaRead {
		return a.kafkaSec, nil
	}
	cfg, err := service.KafkaSecurityFromEnv()
	if err != nil {
		return nil, withCode(ExitUsage, err)
	}
	opts, err := cfg.Options()
	if err != nil {
		return nil, withCode(ExitUsage, err) // it says "kafka TLS" or "kafka SASL"
	}
	cfg.Report(a.logger())
	a.kafkaSec, a.kafkaRead = opts, true
	return opts, nil
}

// Admin returns an admin client over the shared Kafka client.
func (a *App) Admin() (*kadm.Client, error) {
	cl, err := a.Kafka()
	if err != nil {
		return nil, err
	}
	adm := kadm.NewClient(cl)
	adm.SetTimeoutMillis(int32(a.Timeout.Milliseconds()))
	return adm, nil
}

// Pool returns the shared PostgreSQL pool, checked with a ping.
func (a *App) Pool(ctx context.Context) (*pgxpool.Pool, error) {
	if a.pool != nil {
		return a.pool, nil
	}
	if a.DatabaseURL == "" {
		return nil, usageErrorf("no database: set --database-url or DATABASE_URL")
	}
	pool, err := pgxpool.New(ctx, a.DatabaseURL)
	if err != nil {
		return nil, withCode(ExitUsage, fmt.Errorf("database URL: %w", err))
	}
	pingCtx, cancel := context.WithTimeout(ctx, a.Timeout)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("database unreachable: %w", err)
	}
	a.pool = pool
	return pool, nil
}

func (a *App) close() {
	if a.kafka != nil {
		a.kafka.Close()
	}
	if a.pool != nil {
		a.pool.Close()
	}
}

// Print writes v as JSON under --json, else the table human draws.
func (a *App) Print(v any, human func(t *Table)) error {
	if a.JSON {
		enc := json.NewEncoder(a.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	t := &Table{w: tabwriter.NewWriter(a.Out, 0, 4, 2, ' ', 0)}
	human(t)
	return t.w.Flush()
}

// Table is aligned text output for people.
type Table struct{ w *tabwriter.Writer }

// Row writes one line of tab-separated cells.
func (t *Table) Row(cells ...any) {
	for i, c := range cells {
		if i > 0 {
			fmt.Fprint(t.w, "\t")
		}
		fmt.Fprint(t.w, c)
	}
	fmt.Fprintln(t.w)
}

// Line writes free text (a title, a note), outside the columns.
func (t *Table) Line(format string, args ...any) {
	_ = t.w.Flush()
	fmt.Fprintf(t.w, format+"\n", args...)
}

// logger writes warnings (records left out, retries) to stderr as text.
func (a *App) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(a.Err, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
