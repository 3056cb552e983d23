// Command abctl operates an Answerback deployment: status, topic setup,
// replays and view rebuilds, dead letters and the reply topics of departed
// gateways. Every command has --help; --json prints machine-readable output.
//
// Configuration (environment, flags override): KAFKA_BROKERS, DATABASE_URL, TOPIC_PREFIX.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/answerback/answerback/services/abctl/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
