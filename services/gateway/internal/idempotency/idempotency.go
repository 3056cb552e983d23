// Package idempotency is the gateway's own state in PostgreSQL, shared by
// every instance (tables in libs/domain/database): idempotency keys — a
// request sent again under its key reaches its first command — and pending
// marks — commands answered 202, so that any instance tells "pending" from
// "unknown". Both are kept for Retention.
package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// Retention is how long idempotency keys and pending marks are kept.
const Retention = 48 * time.Hour

// Store reads and writes the keys and marks.
type Store struct {
	Pool   *pgxpool.Pool
	Logger *slog.Logger // default slog.Default()
}

func (s Store) log() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

// Prune forgets idempotency keys and pending marks past their retention.
func (s Store) Prune(ctx context.Context) {
	for _, table := range []string{"idempotency_keys", "pending_commands"} {
		if _, err := s.Pool.Exec(ctx, `DELETE FROM `+table+` WHERE created_at < now() - $1::interval`, Retention.String()); err != nil {
			s.log().Warn("pruning failed", "table", table, "err", err)
		}
	}
}

// ErrKeyReused reports an idempotency key sent again with another request.
var ErrKeyReused = errors.New("idempotency key reused with a different request")

// ValidKey accepts idempotency keys of 1 to 255 visible ASCII characters.
func ValidKey(k string) bool {
	if k == "" || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// Fingerprint identifies a request, so that a key reused for another one is refused.
func Fingerprint(method, path, ifMatch, aggregateID string, data []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n%s\n%s\n", method, path, ifMatch, aggregateID)
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

// DerivedID is the ID of an aggregate created under an idempotency key, so
// that a retried create reaches the same aggregate.
func DerivedID(tenant, key string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("answerback:"+tenant+"\x00"+key)).String()
}

// Reserve records (tenant, key) for commandID, or returns the command ID
// the key was first used for when the request is the same (print, its
// Fingerprint), or ErrKeyReused.
func (s Store) Reserve(ctx context.Context, tenant, key, print, commandID, aggregateID string) (string, error) {
	var first, firstPrint string
	var err error
	// A concurrent first use may commit after this statement's snapshot was
	// taken: the insert then conflicts but the select cannot see the row yet.
	// A new statement does; try again.
	for attempt := 0; attempt < 3; attempt++ {
		err = s.Pool.QueryRow(ctx, `
		WITH ins AS (
			INSERT INTO idempotency_keys (tenant, key, fingerprint, command_id, aggregate_id)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, key) DO NOTHING
			RETURNING command_id, fingerprint)
		SELECT command_id, fingerprint FROM ins
		UNION ALL
		SELECT command_id, fingerprint FROM idempotency_keys WHERE tenant = $1 AND key = $2 AND NOT EXISTS (SELECT 1 FROM ins)`,
			tenant, key, print, commandID, aggregateID).Scan(&first, &firstPrint)
		if !errors.Is(err, pgx.ErrNoRows) {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("idempotency key: %w", err)
	}
	if firstPrint != print {
		return "", ErrKeyReused
	}
	return first, nil
}

// MarkPending records that cmd was answered 202, for command status on any instance.
func (s Store) MarkPending(ctx context.Context, cmd envelope.Command) {
	if _, err := s.Pool.Exec(ctx, `
		INSERT INTO pending_commands (command_id, aggregate_id, tenant) VALUES ($1, $2, $3)
		ON CONFLICT (command_id) DO NOTHING`, cmd.CommandID, cmd.AggregateID, cmd.Tenant); err != nil {
		s.log().Warn("pending mark not recorded", append(cmd.LogAttrs(), "err", err)...)
	}
}

// IsPending reports whether tenant's commandID was answered 202 by any instance.
func (s Store) IsPending(ctx context.Context, tenant, commandID string) (bool, error) {
	var one int
	err := s.Pool.QueryRow(ctx, `SELECT 1 FROM pending_commands WHERE command_id = $1 AND tenant = $2`, commandID, tenant).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}
