package validate

import (
	"debug/elf"
	"maps"
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

// dockerfile is the repository's one Dockerfile, which builds every
// deployable service's image, the build argument SERVICE naming it.
type dockerfile struct {
	stages []dockerfileStage
}

// dockerfileStage is one stage: FROM base [AS name] and its instructions,
// continuation lines joined and comments dropped.
type dockerfileStage struct {
	base, name   string
	instructions []string
}

// readDockerfile reads and splits the Dockerfile at the repository's root.
func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l := strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	var df dockerfile
	for _, ins := range strings.Split(strings.ReplaceAll(strings.Join(lines, "\n"), "\\\n", " "), "\n") {
		f := strings.Fields(ins)
		if !strings.EqualFold(f[0], "FROM") {
			if len(df.stages) > 0 { // the global ARGs before the first FROM aside
				st := &df.stages[len(df.stages)-1]
				st.instructions = append(st.instructions, ins)
			}
			continue
		}
		f = slices.DeleteFunc(f[1:], func(s string) bool { return strings.HasPrefix(s, "--") })
		st := dockerfileStage{base: f[0]}
		if len(f) == 3 && strings.EqualFold(f[1], "AS") {
			st.name = strings.ToLower(f[2])
		}
		df.stages = append(df.stages, st)
	}
	if len(df.stages) == 0 {
		t.Fatal("the Dockerfile has no stage")
	}
	return df
}

var dockerfileVar = regexp.MustCompile(`\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)`)

// expand substitutes ${NAME}, ${NAME:-default} and $NAME as the Dockerfile
// does in FROM, LABEL, ENV and COPY.
func expand(s string, vars map[string]string) string {
	return dockerfileVar.ReplaceAllStringFunc(s, func(m string) string {
		sm := dockerfileVar.FindStringSubmatch(m)
		if v := vars[sm[1]+sm[3]]; v != "" {
			return v
		}
		return sm[2]
	})
}

// image returns what a build with SERVICE=svc makes: the image its stages
// start from and those stages, from that image's to the last; a stage whose
// FROM names an earlier stage continues it.
func (df dockerfile) image(svc string) (base string, chain []dockerfileStage) {
	vars := map[string]string{"SERVICE": svc}
	for i := len(df.stages) - 1; ; {
		chain = append([]dockerfileStage{df.stages[i]}, chain...)
		base = strings.ToLower(expand(df.stages[i].base, vars))
		j := slices.IndexFunc(df.stages[:i], func(s dockerfileStage) bool { return s.name == base })
		if j < 0 {
			return base, chain
		}
		i = j
	}
}

// stage returns the stage named name.
func (df dockerfile) stage(t *testing.T, name string) dockerfileStage {
	t.Helper()
	i := slices.IndexFunc(df.stages, func(s dockerfileStage) bool { return s.name == name })
	if i < 0 {
		t.Fatalf("the Dockerfile has no stage %q", name)
	}
	return df.stages[i]
}

// instructions returns the instructions of the stages with the keyword
// (RUN, COPY, ...), in order, without it.
func instructions(stages []dockerfileStage, keyword string) []string {
	var out []string
	for _, s := range stages {
		for _, ins := range s.instructions {
			if f := strings.Fields(ins); strings.EqualFold(f[0], keyword) {
				out = append(out, strings.TrimSpace(ins[len(f[0]):]))
			}
		}
	}
	return out
}

// runsFromBuild returns the binary a chain of stages runs: its ENTRYPOINT,
// and the file of the build stage copied there ("" when none is).
func runsFromBuild(chain []dockerfileStage) (entrypoint, built string) {
	entry := instructions(chain, "ENTRYPOINT")
	if len(entry) == 0 {
		return "", ""
	}
	if m := regexp.MustCompile(`^\["([^"]+)"`).FindStringSubmatch(entry[len(entry)-1]); m != nil {
		entrypoint = m[1]
	}
	for _, c := range instructions(chain, "COPY") {
		f := strings.Fields(c)
		if slices.Contains(f, "--from=build") && len(f) >= 3 && f[len(f)-1] == entrypoint {
			built = f[len(f)-2]
		}
	}
	return entrypoint, built
}

// answersHealthcheck matches a main.go whose binary answers `<binary>
// healthcheck`.
var answersHealthcheck = regexp.MustCompile(`\b(service\.Main|HealthcheckOrExit)\(`)

// TestDockerfiles: the Dockerfile builds every deployable service's image,
// SERVICE choosing it: a build stage that builds services/$SERVICE statically
// and a runtime stage on distroless that runs it as a non-root user, with a
// health check where the service has one, variables it reads and the ports
// they name exposed.
func TestDockerfiles(t *testing.T) {
	df := readDockerfile(t)
	build := strings.Join(instructions([]dockerfileStage{df.stage(t, "build")}, "RUN"), "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "go build"} {
		if !strings.Contains(build, want) {
			t.Errorf("the build stage does not contain %q", want)
		}
	}
	for _, s := range df.stages {
		if svc, ok := strings.CutPrefix(s.name, "answerback-"); ok && svc != "unset" && !slices.Contains(deployable, svc) {
			t.Errorf("stage %s: %q is not a deployable service", s.name, svc)
		}
	}
	// Without SERVICE the build still reaches the build stage, which says
	// what is missing (TestDockerfilesBuildStaticBinaries).
	if base, chain := df.image(""); !slices.ContainsFunc(instructions(chain, "COPY"), func(c string) bool { return strings.Contains(c, "--from=build") }) {
		t.Errorf("without SERVICE the image is %s, which runs no build stage to say SERVICE is missing", base)
	}

	for _, svc := range deployable {
		base, chain := df.image(svc)
		if !slices.ContainsFunc(chain, func(s dockerfileStage) bool { return s.name == "answerback-"+svc }) {
			t.Errorf("%s: SERVICE=%s makes no image of it (stage answerback-%s): from %s", svc, svc, svc, base)
			continue
		}
		if !strings.Contains(expand(build, map[string]string{"SERVICE": svc}), "./services/"+svc) {
			t.Errorf("%s: the build stage does not build ./services/%s", svc, svc)
		}
		if !strings.Contains(base, "distroless/static") && base != "scratch" {
			t.Errorf("%s: runs on %s, want distroless static or scratch", svc, base)
		}
		if user := instructions(chain, "USER"); len(user) == 0 || strings.HasPrefix(user[len(user)-1], "root") || strings.HasPrefix(user[len(user)-1], "0") {
			t.Errorf("%s: no non-root USER", svc)
		}
		entry, built := runsFromBuild(chain)
		if entry == "" || built == "" {
			t.Errorf("%s: the image does not run what the build stage made (ENTRYPOINT %q, copied from the build stage: %q)", svc, entry, built)
		}

		labels := map[string]string{}
		for _, l := range instructions(chain, "LABEL") {
			for _, m := range regexp.MustCompile(`(\S+)="([^"]*)"`).FindAllStringSubmatch(l, -1) {
				labels[m[1]] = expand(m[2], map[string]string{"SERVICE": svc})
			}
		}
		if title := labels["org.opencontainers.image.title"]; title != "answerback-"+svc {
			t.Errorf("%s: title %q, want answerback-%s", svc, title, svc)
		}
		if d := labels["org.opencontainers.image.description"]; !strings.Contains(d, svc) {
			t.Errorf("%s: description %q does not name it", svc, d)
		}

		// A service checks its own health: distroless has no shell, so the
		// check runs the binary, `<binary> healthcheck` (service.Main, or
		// service.HealthcheckOrExit itself); a command such as abctl has none.
		main, err := os.ReadFile(filepath.Join(root, "services", svc, "main.go"))
		if err != nil {
			t.Fatal(err)
		}
		var health string
		if h := instructions(chain, "HEALTHCHECK"); len(h) > 0 {
			health = h[len(h)-1]
		}
		if want := `CMD ["` + entry + `", "healthcheck"]`; answersHealthcheck.Match(main) {
			if !strings.HasSuffix(health, want) {
				t.Errorf("%s: HEALTHCHECK %q, want %s", svc, health, want)
			}
		} else if health != "" && health != "NONE" {
			t.Errorf("%s: HEALTHCHECK %q, but it has no healthcheck command", svc, health)
		}

		// Every variable the image sets is one the service reads, and the
		// ports of its addresses are the ports it exposes.
		addrPorts := map[string]bool{}
		for _, e := range instructions(chain, "ENV") {
			for _, kv := range strings.Fields(e) {
				name, value, _ := strings.Cut(kv, "=")
				if !reads(t, svc, name) {
					t.Errorf("%s: the image sets %s, which it does not read", svc, name)
				}
				if strings.HasSuffix(name, "_ADDR") {
					addrPorts[portOf(value, "")] = true
				}
			}
		}
		exposed := map[string]bool{}
		for _, e := range instructions(chain, "EXPOSE") {
			for _, p := range strings.Fields(e) {
				exposed[strings.TrimSuffix(p, "/tcp")] = true
			}
		}
		if !maps.Equal(addrPorts, exposed) {
			t.Errorf("%s: exposes %v, the ports of its addresses are %v", svc, slices.Sorted(maps.Keys(exposed)), slices.Sorted(maps.Keys(addrPorts)))
		}
	}
}

// runBuildStage runs the build stage's RUN instructions here, one shell each
// as BuildKit would for linux on this machine's architecture, with
// SERVICE=svc: the cache mounts aside, in the repository's root (the stage's
// copy of it), writing to out instead of /out. It returns the failing step
// and its output, or "", nil, nil.
func runBuildStage(t *testing.T, build dockerfileStage, svc, out string) (string, []byte, error) {
	t.Helper()
	for _, run := range instructions([]dockerfileStage{build}, "RUN") {
		step := regexp.MustCompile(`--mount=\S+`).ReplaceAllString(run, "")
		if strings.Contains(strings.ReplaceAll(step, "/out/", ""), "/out") {
			t.Fatalf("the build stage writes to /out itself, not below it: %s", step)
		}
		step = strings.ReplaceAll(step, "/out/", out+"/")
		cmd := exec.Command("sh", "-c", step)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "SERVICE="+svc, "TARGETOS=linux", "TARGETARCH="+runtime.GOARCH)
		if b, err := cmd.CombinedOutput(); err != nil {
			return step, b, err
		}
	}
	return "", nil, nil
}

// TestDockerfilesBuildStaticBinaries runs the Dockerfile's build stage here
// for each deployable service: it must build, and build a static executable
// — no program interpreter, no shared libraries — because distroless/static
// has no libc; and the service's image must run what it made. Without
// SERVICE, or with one that names no service, the build stage must fail
// saying so before it builds anything.
func TestDockerfilesBuildStaticBinaries(t *testing.T) {
	df := readDockerfile(t)
	build := df.stage(t, "build")
	for _, svc := range deployable {
		t.Run(svc, func(t *testing.T) {
			_, chain := df.image(svc)
			_, built := runsFromBuild(chain)
			rel, ok := strings.CutPrefix(built, "/out/")
			if !ok {
				t.Fatalf("the image runs %q, which the build stage did not make below /out", built)
			}
			out := t.TempDir()
			if step, b, err := runBuildStage(t, build, svc, out); err != nil {
				t.Fatalf("%s: %v\n%s", step, err, b)
			}
			f, err := elf.Open(filepath.Join(out, rel))
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
		})
	}
	for _, svc := range []string{"", "nosuch"} {
		t.Run("SERVICE="+svc, func(t *testing.T) {
			out := t.TempDir()
			step, b, err := runBuildStage(t, build, svc, out)
			if err == nil {
				t.Fatal("the build stage succeeded")
			}
			if !strings.Contains(string(b), "SERVICE") {
				t.Errorf("the build stage fails without saying why SERVICE is wrong: %s: %v\n%s", step, err, b)
			}
			if made, _ := os.ReadDir(out); len(made) > 0 {
				t.Errorf("the build stage made %v before failing", made)
			}
		})
	}
}
