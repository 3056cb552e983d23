package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/answerback/answerback/deploy/local/procs"
	"github.com/answerback/answerback/libs/auth"
	"github.com/answerback/answerback/libs/pipeline/topics"
	"github.com/answerback/answerback/libs/testenv"
	"github.com/answerback/answerback/libs/testenv/ports"
)

// hardenedUID is the user the services' images run as (distroless's nonroot).
const hardenedUID = 65532

// sandboxScript runs its arguments as a container with readOnlyRootFilesystem,
// runAsNonRoot, no capabilities and allowPrivilegeEscalation: false would: in
// a private mount namespace (unshare) whose root file system and writable
// memory file systems are bind-remounted read-only — only for this process
// tree — as user and group 65532 with no supplementary groups, no
// capabilities (inheritable, ambient or bounding) and no_new_privs
// (setpriv). unshare and setpriv exec, so the service is the process started.
const sandboxScript = `set -e
for m in / /tmp /dev/shm /run /var/tmp; do
  if mountpoint -q "$m"; then mount -o remount,bind,ro "$m"; fi
done
exec setpriv --reuid=65532 --regid=65532 --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"`

// hardenedCommand is bin with args, sandboxed; env is its whole environment.
func hardenedCommand(env []string, bin string, args ...string) *exec.Cmd {
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "--", "sh", "-c", sandboxScript, "sandbox", bin}, args...)...)
	cmd.Env = env
	return cmd
}

// requireSandbox checks that this machine can sandbox a process: root, with
// unshare, setpriv and mountpoint (util-linux). The probe must come out as
// user 65532, unable to write to /tmp or the working folder.
func requireSandbox(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "running services as a non-root user on a read-only file system needs root here (mount namespaces, setpriv)")
	}
	for _, tool := range []string{"unshare", "setpriv", "mountpoint"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, "%s (util-linux) is not installed: %v", tool, err)
		}
	}
	probe := hardenedCommand([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, "/bin/sh", "-c",
		`id -u; grep ^CapEff /proc/self/status; for f in /tmp/hardened-probe ./hardened-probe; do if touch "$f" 2>/dev/null; then echo "wrote $f"; fi; done`)
	out, err := probe.CombinedOutput()
	if err != nil {
		testenv.Unavailable(t, "cannot sandbox a process (unshare --mount, mount -o remount,bind,ro, setpriv): %v\n%s", err, out)
	}
	want := fmt.Sprintf("%d\nCapEff:\t0000000000000000\n", hardenedUID)
	if string(out) != want {
		t.Fatalf("the sandbox is not what it claims: got %q, want %q (user 65532, no capabilities, nothing writable)", out, want)
	}
}

// TestServicesRunHardened runs gateway, aggregator, projector and salesdaily
// as their images run them — separate processes as user 65532 with no
// capabilities, no way to gain privileges, a read-only root file system, an
// environment of nothing but their settings — on the real broker and
// database, and takes a command through all of them: the catalog and an
// order answered synchronously with the derived reply, the submitted order
// counted by salesdaily, every service's metrics served, and every service
// stopping cleanly (exit 0) on SIGTERM.
func TestServicesRunHardened(t *testing.T) {
	t.Parallel()
	requireSandbox(t)
	k := testenv.RealKafka(t)
	runHardened(t, brokerAccess{seeds: k.Seeds, prefix: k.Prefix + ".", instance: k.Prefix, admin: k.Admin(t)})
}

// brokerAccess is how the services reach Kafka in runHardened.
type brokerAccess struct {
	seeds    []string
	prefix   string   // TOPIC_PREFIX
	instance string   // makes INSTANCE_IDs unique on a shared broker
	env      []string // more settings for every service (Kafka security)
	// salesdailyEnv are more settings for salesdaily.
	salesdailyEnv []string
	admin         *kadm.Client // sees every topic
}

// hardenedDir is a folder for binaries and files the services' user (65532)
// may read, removed when the test ends.
func hardenedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "answerback-hardened")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runHardened runs the services sandboxed on a database of the test's own
// and the broker of access, takes a command through them and stops them
// (see TestServicesRunHardened). It returns the database.
func runHardened(t *testing.T, access brokerAccess) *testenv.Postgres {
	t.Helper()
	pg := testenv.NewPostgres(t)

	// Binaries and the JWKS where the services' user may read them.
	dir := hardenedDir(t)
	if _, err := procs.Build("..", dir); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "salesdaily"), "../services/salesdaily").CombinedOutput(); err != nil {
		t.Fatalf("go build salesdaily: %v\n%s", err, out)
	}
	key, err := auth.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	gatewayAuth, err := key.WriteJWKS(filepath.Join(dir, "jwks.json"))
	if err != nil {
		t.Fatal(err)
	}

	prefix := access.prefix
	ports, err := ports.FreeN(5)
	if err != nil {
		t.Fatal(err)
	}
	gatewayAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	gatewayInstance := "hardened-gw-" + access.instance
	kafkaEnv := append([]string{"PATH=/usr/bin:/bin", "KAFKA_BROKERS=" + strings.Join(access.seeds, ","), "TOPIC_PREFIX=" + prefix, "LOG_LEVEL=warn"}, access.env...)
	services := []struct {
		name, metrics string
		env           []string
	}{
		// The projector first: it migrates the schema the gateway reads.
		{"projector", fmt.Sprintf("127.0.0.1:%d", ports[1]), []string{"DATABASE_URL=" + pg.DSN}},
		{"aggregator", fmt.Sprintf("127.0.0.1:%d", ports[2]), []string{"INSTANCE_ID=hardened-agg-" + access.instance, "PARTITIONS=3"}},
		{"gateway", fmt.Sprintf("127.0.0.1:%d", ports[3]), append([]string{"DATABASE_URL=" + pg.DSN, "HTTP_ADDR=" + gatewayAddr,
			"INSTANCE_ID=" + gatewayInstance, "REPLY_WAIT=30s"}, gatewayAuth...)},
		{"salesdaily", fmt.Sprintf("127.0.0.1:%d", ports[4]), append([]string{"DATABASE_URL=" + pg.DSN}, access.salesdailyEnv...)},
	}
	type running struct {
		name string
		cmd  *exec.Cmd
		done chan error
		log  string   // its standard output and error
		env  []string // its whole environment
	}
	var started []*running
	output := func(r *running) string { b, _ := os.ReadFile(r.log); return string(b) }
	for _, svc := range services {
		env := append(append([]string{}, kafkaEnv...), svc.env...)
		if svc.metrics != "" {
			env = append(env, "METRICS_ADDR="+svc.metrics)
		}
		cmd := hardenedCommand(env, filepath.Join(dir, svc.name))
		r := &running{name: svc.name, cmd: cmd, done: make(chan error, 1), log: filepath.Join(dir, svc.name+".log"), env: env}
		out, err := os.Create(r.log)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", svc.name, err)
		}
		_ = out.Close()                      // the child holds its own copy
		go func() { r.done <- cmd.Wait() }() // reaps the process; stopped below or at cleanup
		started = append(started, r)
	}
	stopped := false
	t.Cleanup(func() {
		if stopped {
			return
		}
		for _, r := range started {
			_ = r.cmd.Process.Kill()
			t.Logf("%s killed: %v", r.name, <-r.done)
		}
		if t.Failed() {
			for _, r := range started {
				t.Logf("--- %s\n%s", r.name, output(r))
			}
		}
	})

	// Each is what it should be: user 65532, no capabilities, / read-only —
	// once unshare and setpriv have exec'd it.
	for _, r := range started {
		exe := fmt.Sprintf("/proc/%d/exe", r.cmd.Process.Pid)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if target, _ := os.Readlink(exe); filepath.Base(target) == r.name {
				break
			}
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.cmd.Process.Pid))
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		for _, want := range []string{fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d", hardenedUID, hardenedUID, hardenedUID, hardenedUID), "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1"} {
			if !strings.Contains(string(status), want) {
				t.Errorf("%s: /proc status lacks %q", r.name, want)
			}
		}
		mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", r.cmd.Process.Pid))
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		if !rootReadOnly(string(mounts)) {
			t.Errorf("%s: its root file system is not mounted read-only", r.name)
		}
	}

	base := "http://" + gatewayAddr
	waitHTTP(t, base+"/readyz", 90*time.Second, started[2].done)
	s := &stack{t: t, pg: pg, prefix: prefix, gateways: []string{base}, key: key, procs: map[string]*component{}}
	s.token = s.mint(key, "hardened")
	s.seedCatalog(defaultCatalog)
	s.mustCall(0, http.StatusCreated, http.MethodPost, "/v1/orders", map[string]any{"id": "o", "customerId": "c"})
	reply := s.mustCall(0, http.StatusOK, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "apple", "quantity": 2}).json(t)
	if reply["version"] != float64(2) || len(reply["validItems"].([]any)) == 0 {
		t.Fatalf("reply to add-item: %v, want version 2 with valid items", reply)
	}
	s.mustCall(0, http.StatusOK, http.MethodPost, "/v1/orders/o/submit", nil)

	// salesdaily counted the submitted order.
	ctx := testenv.Context(t, time.Minute)
	var sold int64
	for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		err := pg.Pool.QueryRow(ctx, `SELECT coalesce(sum(quantity), 0) FROM daily_sales WHERE tenant = 'hardened' AND sku = 'apple'`).Scan(&sold)
		if err == nil && sold == 2 {
			break
		}
	}
	if sold != 2 {
		t.Errorf("salesdaily counted %d apples, want 2", sold)
	}
	for _, svc := range services {
		if svc.metrics == "" {
			continue
		}
		resp, err := http.Get("http://" + svc.metrics + "/metrics")
		if err != nil {
			t.Errorf("%s metrics: %v", svc.name, err)
			continue
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s metrics: %d", svc.name, resp.StatusCode)
		}
	}

	// The images' HEALTHCHECK: the binary, with the service's environment,
	// probes the running service — healthy now, unhealthy once it stopped.
	healthcheck := func(r *running) ([]byte, error) {
		return hardenedCommand(r.env, filepath.Join(dir, r.name), "healthcheck").CombinedOutput()
	}
	for _, r := range started {
		if out, err := healthcheck(r); err != nil {
			t.Errorf("%s healthcheck of the running service: %v\n%s", r.name, err, out)
		}
	}
	defer func() {
		for _, r := range started {
			if out, err := healthcheck(r); err == nil {
				t.Errorf("%s healthcheck after the service stopped: healthy\n%s", r.name, out)
			}
		}
	}()

	// A clean stop: SIGTERM, exit 0, the gateway's reply topic deleted on the way.
	stopped = true
	for i := len(started) - 1; i >= 0; i-- {
		r := started[i]
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("%s stopped with %v:\n%s", r.name, err, output(r))
			}
		case <-time.After(60 * time.Second):
			_ = r.cmd.Process.Kill()
			t.Logf("%s killed: %v", r.name, <-r.done)
			t.Errorf("%s did not stop within 60 s of SIGTERM:\n%s", r.name, output(r))
		}
	}
	listed, err := access.admin.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if listed.Has(topics.ReplyTopic(prefix, gatewayInstance)) {
		t.Errorf("the gateway's reply topic outlived its clean stop: %v", listed.Names())
	}
	return pg
}

// rootReadOnly reports whether mountinfo (a /proc/<pid>/mountinfo) mounts /
// read-only.
func rootReadOnly(mountinfo string) bool {
	for line := range strings.Lines(mountinfo) {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" {
			return strings.HasPrefix(f[5], "ro,") || f[5] == "ro"
		}
	}
	return false
}

// waitHTTP waits until url answers 2xx, or fails the test when bound passes
// or the process behind it exits (exited receives its end).
func waitHTTP(t *testing.T, url string, bound time.Duration, exited chan error) {
	t.Helper()
	var last error
	for deadline := time.Now().Add(bound); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		select {
		case err := <-exited:
			exited <- err // for the cleanup's reaping
			t.Fatalf("the service exited before %s answered: %v", url, err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				cancel()
				return
			}
			err = errors.New(resp.Status)
		}
		cancel()
		last = err
	}
	t.Fatalf("%s did not answer 2xx within %s: %v", url, bound, last)
}
