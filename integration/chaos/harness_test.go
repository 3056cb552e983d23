//go:build chaos

package chaos

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/answerback/answerback/deploy/local/procs"
)

// proc is one service running as a separate OS process.
type proc struct{ procs.Proc }

func newProcess(name, bin string, env []string, log string) *proc {
	return &proc{procs.Proc{Name: name, Bin: bin, Env: env, Log: log, RestartOnFailure: true}}
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	if err := p.Start(); err != nil {
		t.Errorf("start %s: %v", p.Name, err)
	}
}

func (p *proc) kill() { p.Kill() }
func (p *proc) stop() { p.Stop() }

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// buildServices builds the three service binaries once.
func buildServices(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "answerback-chaos-bin")
		if err != nil {
			buildErr = err
			return
		}
		binDir, buildErr = procs.Build(filepath.Join("..", ".."), dir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// startBalancer puts a round-robin balancer that retries on the next gateway
// in front of backends (the suite's requests carry an Idempotency-Key).
func startBalancer(t *testing.T, backends []string) string {
	t.Helper()
	b, err := procs.StartBalancer(backends)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b.URL()
}
