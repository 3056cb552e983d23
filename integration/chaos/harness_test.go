//go:build chaos

package chaos

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// proc is one service running as a separate OS process.
type proc struct {
	name string
	bin  string
	env  []string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	out, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(p.bin)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() { // reaps the process
		_ = cmd.Wait()
		out.Close()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

// signal sends sig and waits until the process is gone (SIGKILL after 20s).
func (p *proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (p *proc) kill() { p.signal(syscall.SIGKILL) }
func (p *proc) stop() { p.signal(syscall.SIGTERM) }

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// buildServices builds the three service binaries once.
func buildServices(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "answerback-chaos-bin")
		if buildErr != nil {
			return
		}
		for _, svc := range []string{"gateway", "aggregator", "projector"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, svc), "../../services/"+svc).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %w\n%s", svc, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// balancer is the load balancer in front of the gateways: round robin, and
// a request whose gateway cannot be reached is tried on the next one (the
// requests of this suite carry an Idempotency-Key, so that is safe).
type balancer struct {
	backends []string
	next     atomic.Uint64
	client   *http.Client
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	start := b.next.Add(1)
	var lastErr error
	for i := range uint64(len(b.backends)) {
		backend := b.backends[(start+i)%uint64(len(b.backends))]
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, "http://"+backend+r.URL.RequestURI(), bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := b.client.Do(req)
		if err != nil {
			lastErr = err
			if r.Context().Err() != nil {
				return
			}
			continue
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
	w.Header().Set("Retry-After", "1")
	http.Error(w, fmt.Sprint("no gateway reachable: ", lastErr), http.StatusBadGateway)
}

func startBalancer(t *testing.T, backends []string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: &balancer{backends: backends, client: &http.Client{Timeout: 30 * time.Second}}, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }() // ends at Shutdown in cleanup
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String()
}
