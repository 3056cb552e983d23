package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/answerback/answerback/libs/auth"
	"github.com/answerback/answerback/libs/pipeline/service"
	aggapp "github.com/answerback/answerback/services/aggregator/app"
	"github.com/answerback/answerback/services/gateway/server"
	projapp "github.com/answerback/answerback/services/projector/app"
	salesapp "github.com/answerback/answerback/services/salesdaily/app"
)

// runPipeline runs the aggregator, the projector, salesdaily, the gateways
// and the load balancer until ctx ends, then stops them in order: the load
// balancer and gateways first (draining in-flight requests), then the
// pipeline behind them. Each service runs as its binary does — its own
// settings, database pool and Kafka clients — through service.Launch.
func runPipeline(ctx context.Context, cfg config, brokers []string, dsn string, log *slog.Logger) error {
	if err := aggapp.EnsureTopics(ctx, brokers, "", 6); err != nil {
		return fmt.Errorf("topics: %w", err)
	}

	// Tokens: signed with the development key kept in the data folder; the
	// welcome text prints one, `abctl token` mints more. The gateways trust
	// its public key as they would an issuer's (AUTH_JWKS_FILE).
	devKey, err := auth.LoadOrCreateDevKey(cfg.dataDir)
	if err != nil {
		return fmt.Errorf("development key: %w", err)
	}
	jwks := filepath.Join(cfg.dataDir, "dev-jwks.json")
	if _, err := devKey.WriteJWKS(jwks); err != nil {
		return fmt.Errorf("development key: %w", err)
	}
	token, err := devKey.Mint("developer", demoTenant, auth.AllScopes, devTokenTTL)
	if err != nil {
		return err
	}
	common := []string{"-kafka-brokers=" + strings.Join(brokers, ","), "-topic-prefix="}
	withDatabase := append(slices.Clip(common), "-database-url="+dsn)

	backend, stopBackend := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackend()
	var backendWG sync.WaitGroup
	errs := make(chan error, 8)
	launch := func(ctx context.Context, wg *sync.WaitGroup, name string, b service.Binary, args []string) {
		wg.Add(1)
		go func() { // owned by runPipeline: waited for below
			defer wg.Done()
			if err := service.Launch(ctx, b, args, service.InProcess{Log: log.With("service", b.Name)}); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	launch(backend, &backendWG, "aggregator", aggapp.Binary(aggapp.Embedded{}), append(slices.Clip(common), "-instance-id=devstack-aggregator"))
	launch(backend, &backendWG, "projector", projapp.Binary(projapp.Embedded{}), withDatabase)
	launch(backend, &backendWG, "salesdaily", salesapp.Binary(salesapp.Embedded{}), withDatabase) // the example downstream service

	front, stopFront := context.WithCancel(ctx)
	defer stopFront()
	var frontWG sync.WaitGroup
	var backends []*url.URL
	for i, addr := range cfg.gatewayAddrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("gateway %d: %w", i+1, err)
		}
		backends = append(backends, &url.URL{Scheme: "http", Host: ln.Addr().String()})
		args := append(slices.Clip(withDatabase), fmt.Sprintf("-instance-id=devstack-gw%d", i+1),
			"-auth-jwks-file="+jwks, "-auth-issuer="+auth.DevIssuer, "-auth-audience="+auth.DevAudience)
		launch(front, &frontWG, fmt.Sprintf("gateway %d", i+1), server.Binary(server.Embedded{Listener: ln}), args)
	}
	lbLn, err := net.Listen("tcp", cfg.httpAddr)
	if err != nil {
		return fmt.Errorf("load balancer: %w", err)
	}
	lb := &http.Server{Handler: roundRobin(backends), ReadHeaderTimeout: 5 * time.Second}
	frontWG.Add(1)
	go func() { // owned by runPipeline: Shutdown below ends it
		defer frontWG.Done()
		if err := lb.Serve(lbLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("load balancer: %w", err)
		}
	}()

	base := "http://" + lbLn.Addr().String()
	if err := seedCatalog(ctx, base, token, log); err != nil {
		log.Warn("catalog not seeded", "err", err)
	}
	printWelcome(cfg.out, base, backends, brokers, dsn, token)
	if cfg.ready != nil {
		cfg.ready <- base
	}

	select {
	case <-ctx.Done():
	case err = <-errs:
		log.Error("a component failed; stopping", "err", err)
	}
	log.Info("stopping: load balancer and gateways drain first")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	_ = lb.Shutdown(shutdownCtx)
	stopFront()
	frontWG.Wait()
	stopBackend()
	backendWG.Wait()
	log.Info("pipeline stopped")
	return err
}

// roundRobin is the load balancer in front of the gateways: each request
// goes to the next gateway in turn.
func roundRobin(backends []*url.URL) http.Handler {
	var next atomic.Uint64
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			target := backends[next.Add(1)%uint64(len(backends))]
			r.SetURL(target)
			r.SetXForwarded()
		},
		FlushInterval: -1,
	}
}

// demoCatalog is what a fresh `make run` starts with.
var demoCatalog = []struct {
	SKU  string
	Item map[string]any
}{
	{"apple", map[string]any{"name": "Apple", "unitPrice": 120, "stock": 500, "maxPerOrder": 20, "active": true}},
	{"pear", map[string]any{"name": "Pear", "unitPrice": 90, "stock": 30, "maxPerOrder": 5, "active": true}},
	{"banana", map[string]any{"name": "Banana", "unitPrice": 50, "stock": 200, "maxPerOrder": 12, "active": true}},
	{"cherry", map[string]any{"name": "Cherries (250 g)", "unitPrice": 450, "stock": 40, "maxPerOrder": 4, "active": true}},
	{"durian", map[string]any{"name": "Durian", "unitPrice": 1500, "stock": 3, "maxPerOrder": 1, "active": false}},
}

// demoTenant is the tenant of make run's printed token and seeded catalog.
const demoTenant = "demo"

// devTokenTTL is how long the printed token lasts; `abctl token` mints more.
const devTokenTTL = 24 * time.Hour

// seedCatalog upserts the demo catalog through the pipeline when the demo
// tenant's catalog is empty.
func seedCatalog(ctx context.Context, base, token string, log *slog.Logger) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/catalog", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil || len(list.Items) > 0 {
		return err
	}
	for _, it := range demoCatalog {
		body, _ := json.Marshal(it.Item)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, base+"/v1/catalog/"+it.SKU, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("seeding %s: status %d", it.SKU, resp.StatusCode)
		}
	}
	log.Info("catalog seeded", "items", len(demoCatalog))
	return nil
}

func printWelcome(w io.Writer, base string, gateways []*url.URL, brokers []string, dsn, token string) {
	gws := make([]string, len(gateways))
	for i, g := range gateways {
		gws[i] = g.Host
	}
	fmt.Fprintf(w, `
Answerback is running.
  web console    %s/#token=%s
  load balancer  %s   (round robin over the gateways %s)
  Kafka          %s
  PostgreSQL     %s

Every /v1 request needs a bearer token. This one is for the tenant %q with
every scope, valid for %s (mint others with: go run ./services/abctl token --tenant T --scopes orders:read):
  export TOKEN=%s

Try it (each reply says which gateway served it in the Answerback-Gateway header):
  curl -si -X POST %s/v1/orders -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"id":"order-1","customerId":"alice"}'
  curl -si -X POST %s/v1/orders/order-1/items -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"sku":"pear","quantity":2}'
  curl -s %s/v1/orders/order-1 -H "Authorization: Bearer $TOKEN"

Downstream, the example service salesdaily keeps daily sales per tenant and SKU from the events:
  psql '%s' -c "SELECT * FROM daily_sales WHERE tenant = 'demo'"

Press Ctrl-C to stop.
`, base, token, base, strings.Join(gws, ", "), strings.Join(brokers, ","), dsn, demoTenant, devTokenTTL, token, base, base, base, dsn)
}
