package validate

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// modulePath is the prefix of every package of the project.
const modulePath = "github.com/answerback/answerback/"

// runPackages are the one package of each service that another may import:
// the package that runs it. Only the composition root (devstack) may.
var runPackages = map[string]bool{
	"services/aggregator/app": true,
	"services/projector/app":  true,
	"services/salesdaily/app": true,
	"services/gateway/server": true,
}

// TestImportRules holds the layout's rules over every module of the
// workspace, tests included (go list -deps -test): services never import
// services — except the composition root, services/devstack, which may
// import each service's run package and nothing else of it; libraries import
// neither services nor deploy; the generic pipeline (libs/pipeline) knows
// no domain (libs/domain).
func TestImportRules(t *testing.T) {
	t.Parallel()
	var violations []string
	for _, dir := range workspaceModules(t, root) {
		cmd := exec.Command("go", "list", "-deps", "-test", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...")
		cmd.Dir = filepath.Join(root, dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list in %s: %v\n%s", dir, err, stderr.String())
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			from := project(fields[0])
			if from == "" {
				continue
			}
			for _, imp := range fields[1:] {
				if to := project(imp); to != "" {
					if why := importRule(from, to); why != "" {
						violations = append(violations, from+" imports "+to+": "+why)
					}
				}
			}
		}
	}
	slices.Sort(violations)
	for _, v := range slices.Compact(violations) {
		t.Error(v)
	}
}

// TestImportRuleCatchesEachKind: the rules reject what they must and allow
// what they must.
func TestImportRuleCatchesEachKind(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		from, to string
		broken   bool
	}{
		{"services/abctl/cli", "services/gateway/server", true},
		{"services/devstack", "services/gateway/server", false},
		{"services/devstack", "services/gateway/auth", true},
		{"services/gateway", "services/gateway/server", false},
		{"libs/testenv", "deploy/local/procs", true},
		{"libs/projector", "services/projector/app", true},
		{"libs/pipeline/aggregate", "libs/domain/orders", true},
		{"libs/domain/orders", "libs/pipeline/aggregate", false},
		{"bench/cmd/bench", "deploy/local/procs", false},
	} {
		if got := importRule(c.from, c.to) != ""; got != c.broken {
			t.Errorf("%s → %s: broken %v, want %v", c.from, c.to, got, c.broken)
		}
	}
}

// importRule says which rule an import from → to (paths inside the project)
// breaks, or "".
func importRule(from, to string) string {
	fromTop, toTop := area(from), area(to)
	switch {
	case strings.HasPrefix(from, "services/") && strings.HasPrefix(to, "services/") && fromTop != toTop:
		if fromTop == "services/devstack" && runPackages[to] {
			return ""
		}
		if fromTop == "services/devstack" {
			return "the composition root may import a service's run package only"
		}
		return "a service imports another service (share it through libs/)"
	case strings.HasPrefix(from, "libs/") && (strings.HasPrefix(to, "services/") || strings.HasPrefix(to, "deploy/")):
		return "a library imports a service or deploy"
	case strings.HasPrefix(from, "libs/pipeline") && strings.HasPrefix(to, "libs/domain"):
		return "the generic pipeline imports the domain"
	}
	return ""
}

// area is the first two elements of a project path: "services/gateway",
// "libs/pipeline".
func area(p string) string {
	parts := strings.SplitN(p, "/", 3)
	if len(parts) < 2 {
		return p
	}
	return parts[0] + "/" + parts[1]
}

// project is an import path inside the project, without the module path
// and any test suffix ("p [p.test]", "p.test", "p_test"), or "" for others.
func project(importPath string) string {
	if !strings.HasPrefix(importPath, modulePath) {
		return ""
	}
	p := strings.TrimPrefix(importPath, modulePath)
	p = strings.TrimSuffix(p, ".test")
	return strings.TrimSuffix(p, "_test")
}

// workspaceModules are the module folders go.work uses.
func workspaceModules(t *testing.T, root string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	mods := regexp.MustCompile(`(?m)^\s+\./(\S+)\s*$`).FindAllStringSubmatch(string(b), -1)
	if len(mods) == 0 {
		t.Fatal("go.work lists no module")
	}
	var out []string
	for _, m := range mods {
		out = append(out, m[1])
	}
	return out
}
