package validate

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// root is the repository's root.
var root = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}()

// deployable are the services that ship as images.
var deployable = []string{"gateway", "aggregator", "projector", "salesdaily", "abctl"}

// required lists, per service, the variables a deployment must set: those
// whose defaults only fit make run (127.0.0.1) or that have none. A "|"
// joins alternatives.
var required = map[string][]string{
	"gateway":    {"KAFKA_BROKERS", "DATABASE_URL", "INSTANCE_ID", "AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_JWKS_FILE|AUTH_JWKS_URL"},
	"aggregator": {"KAFKA_BROKERS", "INSTANCE_ID"},
	"projector":  {"KAFKA_BROKERS", "DATABASE_URL"},
	"salesdaily": {"KAFKA_BROKERS", "DATABASE_URL"},
	"abctl":      {"KAFKA_BROKERS"},
}

// ambient are read by every service outside its flags: the log levels, the
// SASL password (never a flag, so that it never shows in a process list),
// and OpenTelemetry's standard variables.
func ambient(name string) bool {
	return strings.HasPrefix(name, "OTEL_") || slices.Contains([]string{"LOG_LEVEL", "KAFKA_LOG_LEVEL", "KAFKA_SASL_PASSWORD"}, name)
}

var envInHelp = regexp.MustCompile(`\(env ([A-Z0-9_]+)\)|\b(KAFKA_[A-Z0-9_]+|ANSWERBACK_[A-Z0-9_]+)\b`)

// readEnv returns, per deployable service, the environment variables it
// reads, from the binaries themselves: every flag's usage names its variable
// "(env NAME)", abctl's help names the Kafka security variables. The
// binaries are built once per test run.
var readEnv = sync.OnceValues(func() (map[string][]string, error) {
	dir, err := os.MkdirTemp("", "answerback-validate-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := map[string][]string{}
	for _, svc := range deployable {
		bin := filepath.Join(dir, svc)
		build := exec.Command("go", "build", "-o", bin, "./services/"+svc)
		build.Dir = root
		if b, err := build.CombinedOutput(); err != nil {
			return nil, &buildError{svc, string(b), err}
		}
		var help []byte
		for _, args := range helpArgs(svc) {
			b, _ := exec.Command(bin, args...).CombinedOutput() // -h exits 0 or 2 by flag package; the text is what counts
			help = append(help, b...)
		}
		seen := map[string]bool{}
		for _, m := range envInHelp.FindAllStringSubmatch(string(help), -1) {
			name := m[1] + m[2]
			if !seen[name] {
				seen[name] = true
				out[svc] = append(out[svc], name)
			}
		}
		slices.Sort(out[svc])
	}
	return out, nil
})

func helpArgs(svc string) [][]string {
	if svc == "abctl" {
		return [][]string{{"--help"}, {"token", "--help"}, {"devkey", "--help"}}
	}
	return [][]string{{"-h"}}
}

type buildError struct {
	svc, out string
	err      error
}

func (e *buildError) Error() string { return "building " + e.svc + ": " + e.err.Error() + "\n" + e.out }

// reads reports whether svc reads the variable name.
func reads(t *testing.T, svc, name string) bool {
	t.Helper()
	env, err := readEnv()
	if err != nil {
		t.Fatal(err)
	}
	return ambient(name) || slices.Contains(env[svc], name)
}

// checkEnv checks what a deployment of svc sets, where: every variable is
// one svc reads, and every required one is set.
func checkEnv(t *testing.T, where, svc string, set map[string]bool) {
	t.Helper()
	for name := range set {
		if !reads(t, svc, name) {
			t.Errorf("%s sets %s, which %s does not read", where, name, svc)
		}
	}
	for _, req := range required[svc] {
		if !slices.ContainsFunc(strings.Split(req, "|"), func(n string) bool { return set[n] }) {
			t.Errorf("%s does not set %s, which %s needs", where, req, svc)
		}
	}
}

// TestServicesReadTheirVariables: the source of truth the other tests use
// is sound — each service reads what its documentation promises.
func TestServicesReadTheirVariables(t *testing.T) {
	env, err := readEnv()
	if err != nil {
		t.Fatal(err)
	}
	for svc, names := range required {
		for _, req := range names {
			for _, n := range strings.Split(req, "|") {
				if !slices.Contains(env[svc], n) {
					t.Errorf("%s's help does not name %s (reads %v)", svc, n, env[svc])
				}
			}
		}
	}
}

// TestDockerfiles: every deployable service has a multi-stage Dockerfile
// that builds it statically and runs it as a non-root user on distroless.
func TestDockerfiles(t *testing.T) {
	for _, svc := range deployable {
		b, err := os.ReadFile(filepath.Join(root, "services", svc, "Dockerfile"))
		if err != nil {
			t.Errorf("%s: %v", svc, err)
			continue
		}
		df := string(b)
		froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1)
		if len(froms) < 2 {
			t.Errorf("%s: %d stages, want a build stage and a runtime stage", svc, len(froms))
			continue
		}
		final := froms[len(froms)-1][1]
		if !strings.Contains(final, "distroless/static") && final != "scratch" {
			t.Errorf("%s: runs on %s, want distroless static or scratch", svc, final)
		}
		for _, want := range []string{"CGO_ENABLED=0", "./services/" + svc} {
			if !strings.Contains(df, want) {
				t.Errorf("%s: the build does not contain %q", svc, want)
			}
		}
		// A service (not the abctl command) checks its own health: distroless
		// has no shell, so the check runs the binary (service.HealthcheckOrExit).
		if svc != "abctl" && !regexp.MustCompile(`(?m)^HEALTHCHECK\b.*\bCMD \["/`+svc+`", "healthcheck"\]`).MatchString(strings.ReplaceAll(df, "\\\n", " ")) {
			t.Errorf("%s: no HEALTHCHECK CMD [\"/%s\", \"healthcheck\"]", svc, svc)
		}
		if user := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(df, -1); len(user) == 0 || strings.HasPrefix(user[len(user)-1][1], "root") || user[len(user)-1][1] == "0" {
			t.Errorf("%s: no non-root USER", svc)
		}
	}
}

// TestDockerfilesBuildStaticBinaries runs each Dockerfile's build step here
// as BuildKit would for linux on this machine's architecture (the cache
// mounts aside): it must build, and build a static executable — no program
// interpreter, no shared libraries — because distroless/static has no libc;
// and the runtime stage must run what the build stage made.
func TestDockerfilesBuildStaticBinaries(t *testing.T) {
	out := t.TempDir()
	for _, svc := range deployable {
		t.Run(svc, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(root, "services", svc, "Dockerfile"))
			if err != nil {
				t.Fatal(err)
			}
			df := strings.ReplaceAll(string(b), "\\\n", " ") // continuation lines
			run := regexp.MustCompile(`(?m)^RUN\s+(.*\bgo build\b.*)$`).FindStringSubmatch(df)
			if run == nil {
				t.Fatal("no RUN instruction with go build")
			}
			step := regexp.MustCompile(`--mount=\S+`).ReplaceAllString(run[1], "")
			built := regexp.MustCompile(`-o\s+(\S+)`).FindStringSubmatch(step)
			if built == nil {
				t.Fatalf("the build names no output (-o): %s", step)
			}
			bin := filepath.Join(out, svc)
			step = strings.Replace(step, built[0], "-o "+bin, 1)
			cmd := exec.Command("sh", "-c", step)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "TARGETOS=linux", "TARGETARCH="+runtime.GOARCH)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", step, err, b)
			}
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
					t.Errorf("the binary is dynamically linked (%v): it would not start on distroless/static", p.Type)
				}
			}
			if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
				t.Errorf("the binary needs shared libraries %v", libs)
			}
			copied := regexp.MustCompile(`(?m)^COPY\s+--from=build\s+` + regexp.QuoteMeta(built[1]) + `\s+(\S+)`).FindStringSubmatch(df)
			entry := regexp.MustCompile(`(?m)^ENTRYPOINT\s+\["([^"]+)"`).FindStringSubmatch(df)
			if copied == nil || entry == nil || copied[1] != entry[1] {
				t.Errorf("the runtime stage does not run the built %s (COPY %v, ENTRYPOINT %v)", built[1], copied, entry)
			}
		})
	}
}
