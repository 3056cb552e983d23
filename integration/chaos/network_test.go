//go:build chaos

package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// netProxy is an in-process TCP proxy on loopback (Shopify's toxiproxy)
// between the services and a server, whose connections a fault can slow
// down, cut or black-hole.
type netProxy struct {
	t     *testing.T
	name  string
	proxy *toxiproxy.Proxy
}

// startProxy proxies upstream on a free loopback port until the test ends.
func startProxy(t *testing.T, name, upstream string) *netProxy {
	t.Helper()
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(server, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &netProxy{t: t, name: name, proxy: p}
}

// Addr is the proxy's address, for the services to dial instead of the server's.
func (x *netProxy) Addr() string { return x.proxy.Listen }

// add puts a toxic on the proxy's connections in both directions: its
// attributes as JSON.
func (x *netProxy) add(kind, attributes string) {
	for _, stream := range []string{"upstream", "downstream"} {
		spec := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, kind+"-"+stream, kind, stream, attributes)
		if _, err := x.proxy.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
			x.t.Errorf("injecting %s on %s: %v", kind, x.name, err)
		}
	}
}

// clear takes every toxic off.
func (x *netProxy) clear() { x.proxy.Toxics.ResetToxics(context.Background()) }

// pgFault is a network fault between every service and PostgreSQL, checked
// to have taken effect by check, run against a fresh connection through the
// proxy while the fault is on.
func (s *stack) pgFault(name, kind, attributes string, check func(elapsed time.Duration, err error) error) fault {
	return fault{name: name, inject: func() {
		s.pgProxy.add(kind, attributes)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		began := time.Now()
		conn, err := pgx.Connect(ctx, "postgres://postgres@"+s.pgProxy.Addr()+"/postgres?sslmode=disable")
		if err == nil {
			err = conn.QueryRow(ctx, "SELECT 1").Scan(new(int))
			conn.Close(context.Background())
		}
		if bad := check(time.Since(began), err); bad != nil {
			s.t.Errorf("fault %q not in effect: %v", name, bad)
		}
	}, recover: s.pgProxy.clear}
}

// networkFaults are the faults between the services and PostgreSQL: slow,
// cut, and black-holed connections.
func (s *stack) networkFaults() []fault {
	return []fault{
		s.pgFault("50 ms of latency to PostgreSQL (every service)", "latency", `{"latency":50}`, func(elapsed time.Duration, err error) error {
			if err != nil || elapsed < 100*time.Millisecond { // the handshake and the query cross it several times
				return fmt.Errorf("a query took %s (%w)", elapsed, err)
			}
			return nil
		}),
		s.pgFault("PostgreSQL connections cut (reset by peer)", "reset_peer", `{"timeout":0}`, func(_ time.Duration, err error) error {
			if err == nil {
				return errors.New("a query went through")
			}
			return nil
		}),
		s.pgFault("PostgreSQL black-holed (packets dropped, connections left open)", "timeout", `{"timeout":0}`, func(_ time.Duration, err error) error {
			if !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("a query ended with %w, want no answer until its deadline", err)
			}
			return nil
		}),
	}
}

// proxiedDSN is dsn with its host and port replaced by addr.
func proxiedDSN(dsn, addr string, port int) string {
	return strings.Replace(dsn, "127.0.0.1:"+strconv.Itoa(port), addr, 1)
}

// stallPostgres stops (SIGSTOP) or resumes (SIGCONT) the PostgreSQL server
// and every backend it forked, checked: each is in the state sig leaves it.
func (s *stack) stallPostgres(sig syscall.Signal) {
	root := s.pg.Pid()
	if root == 0 {
		s.t.Errorf("PostgreSQL is not running: no process to %s", sig)
		return
	}
	pids := append([]int{root}, children(root)...)
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			s.t.Errorf("%s to PostgreSQL process %d: %v", sig, pid, err)
		}
	}
	if sig != syscall.SIGSTOP {
		return
	}
	time.Sleep(100 * time.Millisecond)
	for _, pid := range pids {
		if state := processState(pid); state != "" && state != "T" {
			s.t.Errorf("fault not in effect: PostgreSQL process %d in state %s after SIGSTOP", pid, state)
		}
	}
}

// children are the processes whose parent is pid.
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after its ")".
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// processState is pid's state letter from /proc ("" when it is gone).
func processState(pid int) string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) == 0 {
		return ""
	}
	return fields[0]
}
