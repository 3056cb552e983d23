// Command sendcommands sends commands to Answerback from Go, without HTTP,
// and prints the reply each gets: the order after the command, with the
// catalog items still valid for it — what the read side derived once the
// command's events were projected.
//
// It uses the request/reply client (libs/pipeline/requestreply) the gateway
// uses: a reply topic of its own, the reply router, and the recorded
// outcome (projector.OutcomeStore) when a reply is lost.
//
// Run it against a running pipeline (`make run` starts one):
//
//	KAFKA_BROKERS=127.0.0.1:9092 DATABASE_URL=postgres://... go run ./sendcommands
//
// Settings: KAFKA_BROKERS, TOPIC_PREFIX, DATABASE_URL, TENANT (default
// "demo"), ORDER (default a new ID).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/answerback/answerback/libs/domain/catalog"
	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/requestreply"
	"github.com/answerback/answerback/libs/pipeline/topics"
	"github.com/answerback/answerback/libs/projector"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg := settings{
		brokers: strings.Split(envOr("KAFKA_BROKERS", "127.0.0.1:9092"), ","),
		prefix:  os.Getenv("TOPIC_PREFIX"),
		dsn:     os.Getenv("DATABASE_URL"),
		tenant:  envOr("TENANT", "demo"),
		order:   envOr("ORDER", "example-"+uuid.NewString()[:8]),
	}
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "sendcommands:", err)
		os.Exit(1)
	}
}

type settings struct {
	brokers          []string
	prefix, dsn      string
	tenant, order    string
	logger           *slog.Logger
	instance         string // the client's instance ID (default: a new one)
	waitForEachReply time.Duration
}

// run sends a catalog item, an order for it and an item added to the order,
// printing each reply to out.
func run(ctx context.Context, cfg settings, out io.Writer) error {
	if cfg.instance == "" {
		cfg.instance = "sendcommands-" + uuid.NewString()[:8]
	}
	if cfg.waitForEachReply == 0 {
		cfg.waitForEachReply = 10 * time.Second
	}
	pool, err := pgxpool.New(ctx, cfg.dsn)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	defer pool.Close()
	client, err := requestreply.Open(ctx, requestreply.Config{
		Brokers: cfg.brokers, TopicPrefix: cfg.prefix, InstanceID: cfg.instance,
		Outcomes: projector.OutcomeStore{DB: pool}, Logger: cfg.logger,
	})
	if err != nil {
		return err
	}
	runCtx, stopRouting := context.WithCancel(ctx)
	routed := make(chan error, 1)
	go func() { routed <- client.Run(runCtx) }() // the reply router: ended below
	defer func() {
		stopRouting()
		if err := <-routed; err != nil {
			fmt.Fprintln(os.Stderr, "sendcommands: reply router:", err)
		}
		_ = client.Close(context.WithoutCancel(ctx), true) // deletes the reply topic
	}()

	send := func(domain, aggregateID, commandType string, data any) error {
		body, _ := json.Marshal(data)
		res, err := client.Send(ctx, requestreply.Request{
			Topic: topics.For(cfg.prefix, domain).Commands,
			Wait:  cfg.waitForEachReply,
			Command: envelope.Command{
				Meta: envelope.Meta{AggregateID: aggregateID, Tenant: cfg.tenant, ExpectedVersion: envelope.NoVersion},
				Type: commandType, Data: body,
			},
		})
		switch {
		case errors.Is(err, requestreply.ErrPending):
			fmt.Fprintf(out, "%s %s: pending (command %s is in the pipeline)\n", commandType, aggregateID, res.CommandID)
			return nil
		case err != nil:
			return fmt.Errorf("%s %s: %w", commandType, aggregateID, err)
		}
		fmt.Fprintf(out, "%s %s: %s at version %d: %s\n", commandType, aggregateID, res.Reply.Outcome, res.Reply.Version, res.Reply.Body)
		return nil
	}
	if err := send(catalog.Name, "example-pear", catalog.CommandUpsert,
		catalog.Upsert{Name: "Pear", UnitPrice: 90, Stock: 100, MaxPerOrder: 10, Active: true}); err != nil {
		return err
	}
	if err := send(orders.Name, cfg.order, orders.CommandCreate, orders.Create{CustomerID: "example"}); err != nil {
		return err
	}
	return send(orders.Name, cfg.order, orders.CommandAddItem, orders.AddItem{SKU: "example-pear", Quantity: 3})
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
