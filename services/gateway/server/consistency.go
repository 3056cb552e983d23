package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// keyRetention is how long idempotency keys and pending marks are kept.
const keyRetention = 48 * time.Hour

// pruneKeys forgets idempotency keys and pending marks past their retention.
func (g *Gateway) pruneKeys(ctx context.Context) {
	for _, table := range []string{"idempotency_keys", "pending_commands"} {
		if _, err := g.cfg.Pool.Exec(ctx, `DELETE FROM `+table+` WHERE created_at < now() - $1::interval`, keyRetention.String()); err != nil {
			g.log.Warn("pruning failed", "table", table, "err", err)
		}
	}
}

// preferences are what the client asked for in Prefer (RFC 7240).
type preferences struct {
	wait    time.Duration
	async   bool
	applied []string
}

// parsePrefer reads Prefer: respond-async and wait=<seconds> (capped by
// max); unknown preferences are ignored, as RFC 7240 says.
func parsePrefer(h http.Header, def, max time.Duration) preferences {
	p := preferences{wait: def}
	for _, line := range h.Values("Prefer") {
		for _, pref := range strings.Split(line, ",") {
			name, value, _ := strings.Cut(strings.TrimSpace(pref), "=")
			name = strings.ToLower(strings.TrimSpace(name))
			value = strings.Trim(strings.TrimSpace(value), `"`)
			switch name {
			case "respond-async":
				p.async = true
			case "wait":
				if secs, err := strconv.ParseFloat(value, 64); err == nil && secs >= 0 {
					p.wait = max // compared in seconds first: a huge wait would overflow a Duration
					if secs < max.Seconds() {
						p.wait = time.Duration(secs * float64(time.Second))
					}
					p.applied = append(p.applied, "wait="+strconv.FormatFloat(p.wait.Seconds(), 'f', -1, 64))
				}
			}
		}
	}
	if p.async {
		p.applied = append(p.applied, "respond-async")
	}
	return p
}

// parseIfMatch reads If-Match: "<version>" (weak or strong; a bare number is
// taken too). Absent or "*": NoVersion. Anything else is an error.
func parseIfMatch(h http.Header) (int64, error) {
	values := h.Values("If-Match")
	if len(values) == 0 {
		return envelope.NoVersion, nil
	}
	v := strings.TrimSpace(values[0])
	if len(values) > 1 || v == "" {
		return 0, fmt.Errorf(`If-Match %q: want one version, e.g. "3"`, strings.Join(values, ", "))
	}
	if v == "*" {
		return envelope.NoVersion, nil
	}
	v = strings.TrimPrefix(v, "W/")
	unquoted := v
	if strings.HasPrefix(v, `"`) {
		var err error
		if unquoted, err = strconv.Unquote(v); err != nil {
			return 0, fmt.Errorf(`If-Match %q: want a quoted version, e.g. "3"`, v)
		}
	}
	n, err := strconv.ParseInt(unquoted, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf(`If-Match %q: want a quoted version, e.g. "3"`, v)
	}
	return n, nil
}

// errKeyReused reports an idempotency key sent again with another request.
var errKeyReused = errors.New("idempotency key reused with a different request")

// validKey accepts idempotency keys of 1 to 255 visible ASCII characters.
func validKey(k string) bool {
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

// fingerprint identifies a request, so that a key reused for another one is refused.
func fingerprint(method, path, ifMatch, aggregateID string, data []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n%s\n%s\n", method, path, ifMatch, aggregateID)
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

// derivedID is the ID of an aggregate created under an idempotency key, so
// that a retried create reaches the same aggregate.
func derivedID(tenant, key string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("answerback:"+tenant+"\x00"+key)).String()
}

// reserveKey records (tenant, key) for commandID, or returns the command ID
// the key was first used for when the request is the same, or errKeyReused.
func (g *Gateway) reserveKey(ctx context.Context, tenant, key, print, commandID, aggregateID string) (string, error) {
	var first, firstPrint string
	var err error
	// A concurrent first use may commit after this statement's snapshot was
	// taken: the insert then conflicts but the select cannot see the row yet.
	// A new statement does; try again.
	for attempt := 0; attempt < 3; attempt++ {
		err = g.cfg.Pool.QueryRow(ctx, `
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
		return "", errKeyReused
	}
	return first, nil
}

// markPending records that cmd was answered 202, for command status on any instance.
func (g *Gateway) markPending(ctx context.Context, cmd envelope.Command) {
	if _, err := g.cfg.Pool.Exec(ctx, `
		INSERT INTO pending_commands (command_id, aggregate_id, tenant) VALUES ($1, $2, $3)
		ON CONFLICT (command_id) DO NOTHING`, cmd.CommandID, cmd.AggregateID, cmd.Tenant); err != nil {
		g.log.Warn("pending mark not recorded", append(cmd.LogAttrs(), "err", err)...)
	}
}

// isPending reports whether tenant's commandID was answered 202 by any instance.
func (g *Gateway) isPending(ctx context.Context, tenant, commandID string) (bool, error) {
	var one int
	err := g.cfg.Pool.QueryRow(ctx, `SELECT 1 FROM pending_commands WHERE command_id = $1 AND tenant = $2`, commandID, tenant).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}
