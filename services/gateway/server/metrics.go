package server

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a command request, as counted by answerback_gateway_commands_total.
const (
	commandApplied     = "applied"     // the reply (or the recorded outcome) applied it
	commandRejected    = "rejected"    // the reply (or the recorded outcome) rejected it
	commandAccepted    = "accepted"    // 202 at once: the client asked for respond-async
	commandTimeout     = "timeout"     // 202 after the wait: no reply and no recorded outcome
	commandUnavailable = "unavailable" // 503: Kafka did not take it, or the key store did not answer
	commandFailed      = "failed"      // 500
	commandAbandoned   = "abandoned"   // the client went away while waiting
)

// durationBuckets cover a request from 1 ms to about 33 s, the longest
// reply wait (MaxWait) and then some.
var durationBuckets = prometheus.ExponentialBuckets(0.001, 2, 16)

var (
	httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "answerback_http_requests_total",
		Help: "HTTP requests answered by the gateway, by route pattern, method and status.",
	}, []string{"route", "method", "status"})
	httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "answerback_http_request_duration_seconds",
		Help:    "Time to answer an HTTP request (a live view: its whole stream), by route pattern and method.",
		Buckets: durationBuckets,
	}, []string{"route", "method"})
	commandRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "answerback_gateway_commands_total",
		Help: "Command requests by outcome (applied, rejected, accepted, timeout, unavailable, failed, abandoned).",
	}, []string{"outcome"})
)

// gateways are the gateways of this process (one in production, several in
// tests), whose live views and reply counters the function metrics add up.
var gateways = struct {
	sync.Mutex
	live map[*Gateway]struct{}
}{live: map[*Gateway]struct{}{}}

func init() {
	prometheus.MustRegister(httpRequests, httpDuration, commandRequests,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "answerback_gateway_live_views",
			Help: "Live views (GET /v1/orders/{id}/stream) being streamed.",
		}, sumGateways(func(g *Gateway) int64 { return int64(g.hub.Subscribers()) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "answerback_gateway_replies_late_total",
			Help: "Replies that came after their request stopped waiting, dropped.",
		}, sumGateways(func(g *Gateway) int64 { return g.rr.Stats().Late })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "answerback_gateway_replies_unknown_total",
			Help: "Replies for commands this gateway never waited on, dropped.",
		}, sumGateways(func(g *Gateway) int64 { return g.rr.Stats().Unknown })),
	)
}

// track adds g to the gateways the function metrics read; untrack removes it.
func track(g *Gateway) {
	gateways.Lock()
	defer gateways.Unlock()
	gateways.live[g] = struct{}{}
}

func untrack(g *Gateway) {
	gateways.Lock()
	defer gateways.Unlock()
	delete(gateways.live, g)
}

// sumGateways returns a function metric's value: f summed over the tracked gateways.
func sumGateways(f func(*Gateway) int64) func() float64 {
	return func() float64 {
		gateways.Lock()
		defer gateways.Unlock()
		var n int64
		for g := range gateways.live {
			n += f(g)
		}
		return float64(n)
	}
}

// instrument counts and times every request under its chi route pattern
// ("unmatched" when none matched), never its raw path, so that IDs in
// paths do not become label values.
func instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		began := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		route := "unmatched"
		if rctx := chi.RouteContext(r.Context()); rctx != nil && rctx.RoutePattern() != "" {
			route = rctx.RoutePattern()
		}
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK // nothing written: net/http answers 200
		}
		method := r.Method
		switch method {
		case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		default:
			method = "other" // any token is a method: keep the label bounded
		}
		httpRequests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
		httpDuration.WithLabelValues(route, method).Observe(time.Since(began).Seconds())
	})
}

func countCommand(outcome string) { commandRequests.WithLabelValues(outcome).Inc() }
