package testenv

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is a database of the test's own on the server named by DATABASE_URL.
type Postgres struct {
	// DSN connects to the test's database.
	DSN string
	// Database is its name.
	Database string
	// Pool is a connection pool on it, closed when the test ends.
	Pool *pgxpool.Pool
}

var postgresProbe probe

// NewPostgres creates a fresh database for the test and drops it when the
// test ends. When DATABASE_URL is unset or the server does not answer, the
// test is skipped — or fails under CI=true.
func NewPostgres(t testing.TB) *Postgres {
	t.Helper()
	admin := strings.TrimSpace(os.Getenv(EnvDatabaseURL))
	if admin == "" {
		Unavailable(t, "PostgreSQL: %s is not set", EnvDatabaseURL)
	}
	err := postgresProbe.do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	})
	if err != nil {
		Unavailable(t, "PostgreSQL at %s does not answer: %v", redact(admin), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	defer conn.Close(ctx)
	name := strings.ReplaceAll(UniqueName("test"), "-", "_")
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("postgres: create database %s: %v", name, err)
	}
	dsn, err := withDatabase(admin, name)
	if err != nil {
		t.Fatalf("postgres: %s: %v", EnvDatabaseURL, err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatalf("postgres: pool: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Logf("postgres: drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("postgres: drop %s: %v", name, err)
		}
	})
	return &Postgres{DSN: dsn, Database: name, Pool: pool}
}

// withDatabase returns dsn (URL or key=value form) pointing at database db.
func withDatabase(dsn, db string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", err
		}
		u.Path = "/" + db
		return u.String(), nil
	}
	return dsn + " dbname=" + db, nil
}

// redact hides the password of a URL-form DSN, for messages.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
