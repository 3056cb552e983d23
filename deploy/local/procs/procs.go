// Package procs runs Answerback's services as separate OS processes on this
// machine, as the chaos suite and the benchmarks need them: it builds the
// service binaries, starts, kills and stops them, reads their CPU time and
// memory, and puts a round-robin load balancer in front of the gateways.
package procs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Services are the binaries Build makes.
var Services = []string{"gateway", "aggregator", "projector"}

// Build compiles the services of the module tree at root (the repository's
// root folder) into dir and returns dir.
func Build(root, dir string) (string, error) {
	for _, svc := range Services {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, svc), "./services/"+svc)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %w\n%s", svc, err, out)
		}
	}
	return dir, nil
}

// Proc is one service process. Start it again after it stopped to restart it.
type Proc struct {
	Name string
	Bin  string
	Env  []string // added to this process's environment
	Log  string   // file that receives its standard output and error
	// RestartOnFailure starts the process again, as a supervisor
	// (Kubernetes, systemd) does, when it exits with an error on its own —
	// not after Kill or Stop.
	RestartOnFailure bool

	// restarts counts the starts RestartOnFailure made.
	restarts atomic.Int64

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	stopping bool // Kill or Stop was called since the last Start
}

// Start starts the process; its output is appended to Log.
func (p *Proc) Start() error {
	out, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.Bin)
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done, p.stopping = cmd, done, false
	p.mu.Unlock()
	go func() { // reaps the process, and restarts it when asked to
		err := cmd.Wait()
		out.Close()
		p.mu.Lock()
		restart := p.RestartOnFailure && err != nil && !p.stopping
		p.mu.Unlock()
		close(done)
		if restart {
			time.Sleep(200 * time.Millisecond)
			p.mu.Lock()
			stopped := p.stopping // Kill or Stop while it was down
			p.mu.Unlock()
			if !stopped {
				p.restarts.Add(1)
				_ = p.Start() // a start that fails leaves it stopped, as a crash loop would
			}
		}
	}()
	return nil
}

// Restarts is how many times RestartOnFailure started the process again
// after it exited with an error on its own.
func (p *Proc) Restarts() int64 { return p.restarts.Load() }

// Pid is the running process's ID, 0 when it never started.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Kill sends SIGKILL and waits until the process is gone.
func (p *Proc) Kill() { p.signal(syscall.SIGKILL) }

// Stop sends SIGTERM and waits until the process is gone (SIGKILL after 20s).
func (p *Proc) Stop() { p.signal(syscall.SIGTERM) }

func (p *Proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.stopping = true
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
