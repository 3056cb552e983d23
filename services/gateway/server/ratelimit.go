package server

import (
	"net/http"
	"time"

	"github.com/go-chi/httprate"

	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// rateLimit lets each tenant make at most perSecond /v1 requests a second
// on this gateway (a sliding window, httprate); the next ones are answered
// 429 with Retry-After. Limits are per gateway: behind a load balancer over
// n gateways, a tenant gets up to n times perSecond.
func rateLimit(perSecond int) func(http.Handler) http.Handler {
	return httprate.LimitBy(perSecond, time.Second,
		func(r *http.Request) (string, error) { return tenantOf(r), nil },
		httprate.WithLimitHandler(func(w http.ResponseWriter, _ *http.Request) {
			if w.Header().Get("Retry-After") == "" {
				w.Header().Set("Retry-After", "1")
			}
			writeProblem(w, &envelope.Problem{Type: "rate-limited", Title: "too many requests for this tenant; retry after Retry-After"})
		}))
}
