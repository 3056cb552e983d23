package procs

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestProcStartKillRestart: a process starts, logs, is killed and starts again.
func TestProcStartKillRestart(t *testing.T) {
	t.Parallel()
	script := filepath.Join(t.TempDir(), "run.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho started $X\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := &Proc{Name: "sleeper", Bin: script, Env: []string{"X=1"}, Log: filepath.Join(t.TempDir(), "out.log")}
	for i := range 2 {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		pid := p.Pid()
		if pid == 0 {
			t.Fatal("no pid")
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			out, _ := os.ReadFile(p.Log)
			if u, err := UsageOf(pid); err == nil && u.PeakRSS > 0 && strings.Count(string(out), "started 1") == i+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no usage readable from /proc, or no output with the environment passed")
			}
			time.Sleep(20 * time.Millisecond)
		}
		p.Kill()
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			t.Fatalf("process %d still exists after Kill", pid)
		}
	}
}

// TestBalancerRoundRobinSkipsDeadBackend: requests alternate between live
// backends, and a backend that refuses connections is skipped.
func TestBalancerRoundRobinSkipsDeadBackend(t *testing.T) {
	t.Parallel()
	serve := func(name string) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			_, _ = io.WriteString(w, name+":"+string(body))
		})}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		return ln.Addr().String()
	}
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	b, err := StartBalancer([]string{serve("a"), deadAddr, serve("b")})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	seen := map[string]int{}
	for range 6 {
		resp, err := http.Post(b.URL()+"/x", "text/plain", strings.NewReader("hi"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen[string(body)]++
	}
	if seen["a:hi"] == 0 || seen["b:hi"] == 0 || seen["a:hi"]+seen["b:hi"] != 6 {
		t.Fatalf("answers %v: want both live backends, the body passed on, none lost", seen)
	}
}

// A process that fails on its own is started again when RestartOnFailure is
// set, as a supervisor would; after Stop it is not.
func TestRestartOnFailure(t *testing.T) {
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	script := filepath.Join(dir, "fail.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho run >> "+runs+"\nsleep 0.1\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := &Proc{Name: "fail", Bin: script, Log: filepath.Join(dir, "log"), RestartOnFailure: true}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		b, _ := os.ReadFile(runs)
		return strings.Count(string(b), "run")
	}
	deadline := time.Now().Add(10 * time.Second)
	for count() < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := count(); n < 3 {
		t.Fatalf("started %d times in 10s; want at least 3 (restarted after each failure)", n)
	}
	p.Stop()
	after := count()
	time.Sleep(time.Second)
	if n := count(); n > after+1 { // one restart may have been under way when Stop came
		t.Errorf("started %d more times after Stop", n-after)
	}
}

// TestChildrenAndCmdline: a child process is listed under its parent with
// its command line, and its CPU time is readable.
func TestChildrenAndCmdline(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	kids, err := Children(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(kids, cmd.Process.Pid) {
		t.Fatalf("children of %d: %v, want %d among them", os.Getpid(), kids, cmd.Process.Pid)
	}
	if line, err := Cmdline(cmd.Process.Pid); err != nil || line != "sleep 30" {
		t.Fatalf("Cmdline = %q, %v; want \"sleep 30\"", line, err)
	}
	if _, err := UsageOf(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
}

// TestProcRestartsAfterAFailureAndCountsIt: a process that exits with an
// error on its own is started again and counted; one killed is not.
func TestProcRestartsAfterAFailureAndCountsIt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	marker := filepath.Join(dir, "failed-once")
	script := filepath.Join(dir, "run.sh")
	// Fails the first time (exit 1), then stays up.
	body := "#!/bin/sh\nif [ ! -e " + marker + " ]; then touch " + marker + "; exit 1; fi\nexec sleep 60\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	p := &Proc{Name: "flaky", Bin: script, Log: filepath.Join(dir, "out.log"), RestartOnFailure: true}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.Restarts() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d restarts after the first run failed, want 1", p.Restarts())
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.Kill()
	time.Sleep(500 * time.Millisecond) // past the restart delay
	if n := p.Restarts(); n != 1 {
		t.Errorf("%d restarts after Kill, want still 1: a killed process is not restarted", n)
	}
}
