package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/answerback/answerback/deploy/local/pglocal"
	"github.com/answerback/answerback/deploy/local/procs"
)

// The systems built into the bench binary do not run in the bench process,
// beside the load generator, but each in a child process of its own: the
// bench binary again, started with childCommand. So each one's CPU time is
// its own, and the load generator's is the bench process's.

// childCommand, as the first argument, makes the bench binary serve what a
// childSpec (the second argument, JSON) names until SIGTERM or SIGINT.
const childCommand = "serve-system"

// childSystems are the systems built into the bench binary, by key; each
// runs in a child process (startChildSystem).
var childSystems = map[string]childSystem{
	"eosfloor":          {start: startEOSFloor, onBroker: true},
	"eosfloor-embedded": {start: startEOSFloorEmbedded}, // counts its kfake's requests itself
	"transport":         {start: startTransportFloor, onBroker: true},
	"monolith":          {start: startMonolithFloor},
	"watermill":         {start: startWatermillPeer, onBroker: true},
}

// childSystem is a system built into the bench binary.
type childSystem struct {
	start func(context.Context, *env, *slog.Logger) (*system, error)
	// onBroker: it runs on the run's Apache Kafka broker (env.onBroker).
	onBroker bool
}

// childSpec is what a child process serves: a system of childSystems on the
// run's infrastructure, or a load balancer.
type childSpec struct {
	System string `json:"system,omitempty"` // a key of childSystems
	// Balance, instead of a system: a round-robin load balancer over these
	// backends (host:port).
	Balance      []string `json:"balance,omitempty"`
	Dir          string   `json:"dir,omitempty"`
	Brokers      []string `json:"brokers,omitempty"`
	KafkaVersion string   `json:"kafkaVersion,omitempty"`
	PGDir        string   `json:"pgDir,omitempty"` // the run's PostgreSQL, running: found again there
	PGPort       int      `json:"pgPort,omitempty"`
}

// childHello is the one line a child prints on its standard output once it
// serves.
type childHello struct {
	Name  string `json:"name"`
	URL   string `json:"url"`
	Token string `json:"token,omitempty"`
	// Admin is the base URL of the child's own endpoints: POST
	// /orders/{id} creates an order (system.createOrder), GET
	// /broker-requests reads the system's broker requests when
	// BrokerRequests.
	Admin          string   `json:"admin,omitempty"`
	BrokerRequests bool     `json:"brokerRequests,omitempty"`
	PGDatabase     string   `json:"pgDatabase,omitempty"`
	StageBrokers   []string `json:"stageBrokers,omitempty"` // the system's stageSource, if any
	StageReplies   []string `json:"stageReplies,omitempty"`
}

// serveChild is the child process's main: it starts what spec names, says
// hello on out, and serves until SIGTERM or SIGINT, then stops it.
func serveChild(rawSpec string, out io.Writer, log *slog.Logger) error {
	var spec childSpec
	if err := json.Unmarshal([]byte(rawSpec), &spec); err != nil {
		return fmt.Errorf("%s: bad spec: %w", childCommand, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(spec.Balance) > 0 {
		lb, err := procs.StartBalancer(spec.Balance)
		if err != nil {
			return err
		}
		defer lb.Close()
		if err := json.NewEncoder(out).Encode(childHello{Name: "balancer", URL: lb.URL()}); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}
	cs, ok := childSystems[spec.System]
	if !ok {
		return fmt.Errorf("%s: unknown system %q", childCommand, spec.System)
	}
	pg, err := pglocal.Start(ctx, pglocal.Options{Dir: spec.PGDir, Port: spec.PGPort, Durable: true}) // runs: found again
	if err != nil {
		return err
	}
	e := &env{dir: spec.Dir, pg: pg, pgDir: spec.PGDir, brokers: spec.Brokers, kafkaVersion: spec.KafkaVersion}
	sys, err := cs.start(ctx, e, log)
	if err != nil {
		return err
	}
	defer sys.stop()
	hello := childHello{Name: sys.name, URL: sys.url, Token: sys.token, BrokerRequests: sys.brokerRequests != nil, PGDatabase: sys.pgDatabase}
	if hello.PGDatabase == "" && len(e.databases) == 1 {
		hello.PGDatabase = e.databases[0]
	}
	if sys.stageSource != nil {
		hello.StageBrokers, hello.StageReplies = sys.stageSource.brokers, sys.stageSource.replyTopics
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := sys.createOrder(r.Context(), r.PathValue("id")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /broker-requests", func(w http.ResponseWriter, r *http.Request) {
		if sys.brokerRequests == nil {
			http.NotFound(w, r)
			return
		}
		counts, err := sys.brokerRequests(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(counts)
	})
	var shutdown func()
	if hello.Admin, shutdown, err = serveLocal(mux); err != nil {
		return err
	}
	defer shutdown()
	if err := json.NewEncoder(out).Encode(hello); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("stopping", "system", sys.name)
	return nil
}

// child is a running child process.
type child struct {
	pid    int
	hello  childHello
	stop   func() // SIGTERM, then SIGKILL after 30 s; waits until it has exited
	exited chan struct{}
}

// childStartTimeout bounds a child's start: a system seeds its catalog
// before it says hello.
const childStartTimeout = 5 * time.Minute

// startChild runs the bench binary again as a child serving spec, and waits
// for its hello. Its standard error is the bench's; it gets SIGTERM when the
// bench process dies.
func startChild(ctx context.Context, spec childSpec) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	raw, _ := json.Marshal(spec)
	cmd := exec.Command(exe, childCommand, string(raw))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting a child for %s: %w", childName(spec), err)
	}
	c := &child{pid: cmd.Process.Pid, exited: make(chan struct{})}
	hellos := make(chan childHello, 1)
	var waitErr error
	go func() { // owned by the child: ends when it exits
		defer close(c.exited)
		r := bufio.NewReader(stdout)
		if line, err := r.ReadBytes('\n'); err == nil {
			var h childHello
			if json.Unmarshal(line, &h) == nil {
				hellos <- h
			}
		}
		_, _ = io.Copy(io.Discard, r) // whatever else it prints, until it exits
		waitErr = cmd.Wait()
	}()
	c.stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-c.exited
		}
	}
	select {
	case c.hello = <-hellos:
		return c, nil
	case <-c.exited:
		return nil, fmt.Errorf("the child for %s exited before it served: %w", childName(spec), waitErr)
	case <-ctx.Done():
		c.stop()
		return nil, ctx.Err()
	case <-time.After(childStartTimeout):
		c.stop()
		return nil, fmt.Errorf("the child for %s did not serve within %s", childName(spec), childStartTimeout)
	}
}

// childName names what spec serves, for errors.
func childName(spec childSpec) string {
	if spec.System != "" {
		return spec.System
	}
	return fmt.Sprintf("a load balancer over %v", spec.Balance)
}

// startChildSystem runs the system of childSystems named key in a child
// process on e, and returns it as a system of the bench process: its
// process counts as component key, the PostgreSQL backends serving its
// database as "postgres", and the broker as "kafka" when it runs on it.
func startChildSystem(ctx context.Context, e *env, key string) (*system, error) {
	c, err := startChild(ctx, childSpec{System: key, Dir: e.dir, Brokers: e.brokers, KafkaVersion: e.kafkaVersion, PGDir: e.pgDir, PGPort: e.pg.Port()})
	if err != nil {
		return nil, err
	}
	h := c.hello
	sys := &system{name: h.Name, url: h.URL, token: h.Token, stop: c.stop, pgDatabase: h.PGDatabase, pgPid: e.pg.Pid}
	sys.pids = func() map[string]int { return map[string]int{key: c.pid} }
	sys.createOrder = func(ctx context.Context, id string) error {
		return post(ctx, h.Admin+"/orders/"+url.PathEscape(id), "", nil, http.StatusNoContent)
	}
	if h.BrokerRequests {
		sys.brokerRequests = func(ctx context.Context) (map[string]float64, error) {
			var counts map[string]float64
			return counts, getJSON(ctx, h.Admin+"/broker-requests", &counts)
		}
	}
	if len(h.StageBrokers) > 0 {
		sys.stageSource = &stageSource{brokers: h.StageBrokers, replyTopics: h.StageReplies}
	}
	if childSystems[key].onBroker {
		e.onBroker(sys)
	}
	return sys, nil
}

// getJSON decodes the JSON body of a GET of url, which must answer 200.
func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return errors.Join(fmt.Errorf("GET %s", url), err)
	}
	return nil
}
