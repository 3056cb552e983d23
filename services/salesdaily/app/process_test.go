package app_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/answerback/answerback/libs/testenv"
	"github.com/answerback/answerback/services/salesdaily/app"
)

var build struct {
	once sync.Once
	bin  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.bin != "" {
		_ = os.RemoveAll(filepath.Dir(build.bin))
	}
	os.Exit(code)
}

// binary builds the salesdaily command once per test process.
func binary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "salesdaily")
		if err != nil {
			build.err = err
			return
		}
		build.bin = filepath.Join(dir, "salesdaily")
		out, err := exec.Command("go", "build", "-o", build.bin, "..").CombinedOutput()
		if err != nil {
			build.err = errors.New(string(out))
		}
	})
	if build.err != nil {
		t.Fatalf("go build: %v", build.err)
	}
	return build.bin
}

// process is the service running as an OS process; its log is kept.
type process struct {
	cmd *exec.Cmd
	log bytes.Buffer
}

func startProcess(t *testing.T, k *testenv.Kafka, pg *testenv.Postgres) *process {
	t.Helper()
	p := &process{cmd: exec.Command(binary(t))}
	p.cmd.Env = append(os.Environ(), "KAFKA_BROKERS="+strings.Join(k.Seeds, ","), "DATABASE_URL="+pg.DSN,
		"TOPIC_PREFIX="+k.Prefix+".", "LOG_LEVEL=info")
	p.cmd.Stderr = &p.log // the exec package's goroutine copying it ends with Wait
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("salesdaily log:\n%s", p.log.String())
		}
	})
	return p
}

// TestKilledProcessRestarts SIGKILLs the service while it works through the
// stream — with events applied in PostgreSQL whose offsets Kafka has not —
// starts it again, and checks daily_sales exactly; then stops it with
// SIGTERM and checks it exits cleanly.
func TestKilledProcessRestarts(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		ctx, pg, prefix, s, producer := newRun(t, k)
		produce(ctx, t, producer, true, s.committed)
		produce(ctx, t, producer, false, s.aborted)

		p := startProcess(t, k, pg)
		var applied int
		for applied < 20 {
			// Before Migrate has run, the table is missing: keep polling.
			_ = pg.Pool.QueryRow(ctx, `SELECT count(*) FROM consumer_versions`).Scan(&applied)
			if ctx.Err() != nil {
				t.Fatal("the service applied nothing before the deadline")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = p.cmd.Wait()
		_ = pg.Pool.QueryRow(ctx, `SELECT count(*) FROM consumer_versions`).Scan(&applied)
		offsets, err := k.Admin(t).FetchOffsets(ctx, app.Group(prefix))
		if err != nil {
			t.Fatal(err)
		}
		committed := 0
		offsets.Each(func(o kadm.OffsetResponse) { committed++ })
		t.Logf("SIGKILLed with %d aggregates applied and %d of %d partitions committed", applied, committed, 2*partitions)

		p = startProcess(t, k, pg)
		waitForSentinels(ctx, t, k, pg, "restarted")
		check(ctx, t, pg, "after SIGKILL and restart", s.want)

		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Wait(); err != nil {
			t.Errorf("after SIGTERM: %v", err)
		}
		if !strings.Contains(p.log.String(), app.Name+" stopped") {
			t.Errorf("no clean stop in the log")
		}
	})
}
