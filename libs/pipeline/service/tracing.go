package service

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/answerback/answerback/libs/pipeline/tracing"
)

// Tracing starts OpenTelemetry tracing for the named service (on when
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set;
// see tracing.Setup) and returns the function that flushes its last spans
// and stops it. Unusable settings exit 2.
func Tracing(ctx context.Context, name string, log *slog.Logger) (stop func()) {
	shutdown, err := tracing.Setup(ctx, name)
	if err != nil {
		log.Error("tracing settings unusable", "err", err)
		os.Exit(2)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			log.Warn("spans not flushed", "err", err)
		}
	}
}
