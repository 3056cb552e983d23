package validate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// chart is the Helm chart of the services.
var chart = filepath.Join(root, "deploy", "k8s", "answerback")

// helm returns the helm binary: $HELM (make test installs a pinned one by
// go install), else helm on PATH. Without one the test is skipped, and under
// CI=true it fails.
func helm(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	if h, err := exec.LookPath("helm"); err == nil {
		return h
	}
	msg := "helm is not installed: set HELM or put it on PATH (make test installs it with go install)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// object is a rendered Kubernetes object, as generic YAML.
type object map[string]any

func (o object) kind() string { return str(o["kind"]) }
func (o object) name() string { return str(dig(o, "metadata", "name")) }

// render runs helm template with the values files and returns its objects.
func render(t *testing.T, values ...string) []object {
	t.Helper()
	args := []string{"template", "answerback", chart}
	for _, v := range values {
		args = append(args, "-f", v)
	}
	cmd := exec.Command(helm(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var objs []object
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var o map[string]any // not object: yaml.v3 would decode nested maps as object too
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("helm template output: %v", err)
		}
		if o != nil {
			objs = append(objs, o)
		}
	}
	return objs
}

// TestHelmLint: the chart lints clean, with its defaults and the production example.
func TestHelmLint(t *testing.T) {
	for _, values := range [][]string{nil, {filepath.Join(root, "deploy", "k8s", "examples", "values-production.yaml")}} {
		args := []string{"lint", "--strict", chart}
		for _, v := range values {
			args = append(args, "-f", v)
		}
		if out, err := exec.Command(helm(t), args...).CombinedOutput(); err != nil {
			t.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestHelmManifests renders the chart (defaults and the production example)
// and holds every workload to the services: images of services that exist,
// variables they read with the required ones set (directly, from a
// ConfigMap or a Secret reference), container ports that are the ports the
// services listen on, probes on paths they serve, and the disruption
// budgets, autoscaler and topics a production deployment needs.
func TestHelmManifests(t *testing.T) {
	for name, values := range map[string][]string{
		"defaults":   nil,
		"production": {filepath.Join(root, "deploy", "k8s", "examples", "values-production.yaml")},
	} {
		t.Run(name, func(t *testing.T) {
			objs := render(t, values...)
			configMaps := map[string]map[string]any{}
			for _, o := range objs {
				if o.kind() == "ConfigMap" {
					data, _ := o["data"].(map[string]any)
					configMaps[o.name()] = data
				}
			}
			kinds := map[string][]object{}
			for _, o := range objs {
				kinds[o.kind()] = append(kinds[o.kind()], o)
			}
			workloads := map[string]string{} // Deployment name → service
			for _, d := range kinds["Deployment"] {
				for _, c := range list(dig(d, "spec", "template", "spec", "containers")) {
					svc := checkContainer(t, d.name(), object(c.(map[string]any)), configMaps)
					workloads[d.name()] = svc
				}
				checkPodSecurity(t, d)
			}
			have := map[string]bool{}
			for _, svc := range workloads {
				have[svc] = true
			}
			for _, svc := range []string{"gateway", "aggregator", "projector"} {
				if !have[svc] {
					t.Errorf("no Deployment of %s", svc)
				}
			}
			checkBudgets(t, kinds, workloads)
		})
	}
}

// checkContainer checks one container and returns the service it runs.
func checkContainer(t *testing.T, deployment string, c object, configMaps map[string]map[string]any) string {
	t.Helper()
	where := "Deployment " + deployment + " container " + str(c["name"])
	m := regexp.MustCompile(`answerback-([a-z]+)(:|@|$)`).FindStringSubmatch(str(c["image"]))
	if m == nil {
		t.Errorf("%s: image %q is not answerback-<service>", where, c["image"])
		return ""
	}
	svc := m[1]
	if _, err := os.Stat(filepath.Join(root, "services", svc, "main.go")); err != nil {
		t.Errorf("%s: image of %q, which is not a service", where, svc)
		return svc
	}
	set := map[string]bool{}
	values := map[string]string{}
	for _, e := range list(c["env"]) {
		e := e.(map[string]any)
		set[str(e["name"])] = true
		values[str(e["name"])] = str(e["value"])
	}
	for _, from := range list(c["envFrom"]) {
		from := from.(map[string]any)
		if ref := dig(from, "configMapRef", "name"); ref != nil {
			data, ok := configMaps[str(ref)]
			if !ok {
				t.Errorf("%s: envFrom ConfigMap %s is not rendered", where, ref)
			}
			for k, v := range data {
				set[str(from["prefix"])+k] = true
				values[str(from["prefix"])+k] = str(v)
			}
		}
		if dig(from, "secretRef") != nil {
			t.Errorf("%s: envFrom a whole Secret: name each variable (secretKeyRef), so that what is set is known", where)
		}
	}
	checkEnv(t, where, svc, set)

	ports := map[string]int{} // name → containerPort
	var numbers []int
	for _, p := range list(c["ports"]) {
		p := p.(map[string]any)
		n, _ := strconv.Atoi(str(p["containerPort"]))
		ports[str(p["name"])] = n
		numbers = append(numbers, n)
	}
	// Which paths each listening port serves.
	serves := map[int][]string{}
	if svc == "gateway" {
		serves[atoi(portOf(values["HTTP_ADDR"], "8080"))] = []string{"/healthz", "/readyz"}
	}
	if addr := values["METRICS_ADDR"]; addr != "" {
		serves[atoi(portOf(addr, ""))] = append(serves[atoi(portOf(addr, ""))], "/healthz", "/metrics")
	}
	for port := range serves {
		if !slices.Contains(numbers, port) {
			t.Errorf("%s: listens on %d, which is not a containerPort (%v)", where, port, numbers)
		}
	}
	for _, probe := range []string{"readinessProbe", "livenessProbe", "startupProbe"} {
		p, ok := c[probe].(map[string]any)
		if !ok {
			if probe == "livenessProbe" {
				t.Errorf("%s: no livenessProbe", where)
			}
			continue
		}
		get, ok := p["httpGet"].(map[string]any)
		if !ok {
			t.Errorf("%s: %s is not an httpGet", where, probe)
			continue
		}
		port, err := strconv.Atoi(str(get["port"]))
		if err != nil {
			port = ports[str(get["port"])]
		}
		if !slices.Contains(serves[port], str(get["path"])) {
			t.Errorf("%s: %s GET %s on port %v, which the service does not serve there (%v)", where, probe, get["path"], get["port"], serves)
		}
	}
	if svc == "gateway" {
		if _, ok := c["readinessProbe"]; !ok {
			t.Errorf("%s: no readinessProbe", where)
		}
	}
	return svc
}

// checkPodSecurity: non-root, read-only root file system, no privileges.
func checkPodSecurity(t *testing.T, d object) {
	t.Helper()
	pod := dig(d, "spec", "template", "spec")
	for _, c := range list(dig(pod, "containers")) {
		sc := dig(c, "securityContext")
		if str(dig(sc, "readOnlyRootFilesystem")) != "true" || str(dig(sc, "allowPrivilegeEscalation")) != "false" {
			t.Errorf("Deployment %s: want readOnlyRootFilesystem true and allowPrivilegeEscalation false", d.name())
		}
		if !slices.Contains(list(dig(sc, "capabilities", "drop")), any("ALL")) {
			t.Errorf("Deployment %s: want capabilities drop ALL", d.name())
		}
		nonRoot := str(dig(sc, "runAsNonRoot")) == "true" || str(dig(pod, "securityContext", "runAsNonRoot")) == "true"
		if !nonRoot {
			t.Errorf("Deployment %s: want runAsNonRoot", d.name())
		}
	}
	if n, _ := strconv.Atoi(str(dig(pod, "terminationGracePeriodSeconds"))); n < 30 {
		t.Errorf("Deployment %s: terminationGracePeriodSeconds %d, want at least 30 to drain", d.name(), n)
	}
}

// checkBudgets: a PodDisruptionBudget per scaled service, an autoscaler on
// the gateway.
func checkBudgets(t *testing.T, kinds map[string][]object, workloads map[string]string) {
	t.Helper()
	budgeted := map[string]bool{}
	for _, pdb := range kinds["PodDisruptionBudget"] {
		sel, _ := dig(pdb, "spec", "selector", "matchLabels").(map[string]any)
		for _, d := range kinds["Deployment"] {
			labels, _ := dig(d, "spec", "template", "metadata", "labels").(map[string]any)
			if matches(sel, labels) {
				budgeted[workloads[d.name()]] = true
			}
		}
	}
	for _, svc := range []string{"gateway", "aggregator", "projector"} {
		if !budgeted[svc] {
			t.Errorf("no PodDisruptionBudget selects the %s pods", svc)
		}
	}
	scaled := false
	for _, hpa := range kinds["HorizontalPodAutoscaler"] {
		ref := dig(hpa, "spec", "scaleTargetRef")
		if str(dig(ref, "kind")) == "Deployment" && workloads[str(dig(ref, "name"))] == "gateway" {
			scaled = true
		}
	}
	if !scaled {
		t.Error("no HorizontalPodAutoscaler scales the gateway Deployment")
	}
}

func matches(selector, labels map[string]any) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func dig(v any, path ...string) any {
	for _, p := range path {
		var m map[string]any
		switch x := v.(type) {
		case object:
			m = x
		case map[string]any:
			m = x
		default:
			return nil
		}
		v = m[p]
	}
	return v
}

func list(v any) []any { l, _ := v.([]any); return l }

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// TestHelmTenantWall: with database.gateway set (the production example),
// the gateways connect with their own role's URL, a hook Job grants that
// role as the owner before every install and upgrade with an abctl command
// that exists, and nothing else changes role; half the setting is refused.
func TestHelmTenantWall(t *testing.T) {
	objs := render(t, filepath.Join(root, "deploy", "k8s", "examples", "values-production.yaml"))
	secretOf := func(c any) string {
		for _, e := range list(dig(c, "env")) {
			if str(dig(e, "name")) == "DATABASE_URL" {
				return str(dig(e, "valueFrom", "secretKeyRef", "name"))
			}
		}
		return ""
	}
	var grants int
	for _, o := range objs {
		switch o.kind() {
		case "Deployment":
			for _, c := range list(dig(o, "spec", "template", "spec", "containers")) {
				want := "answerback-app"
				if strings.HasSuffix(o.name(), "-gateway") {
					want = "answerback-gateway-db"
				}
				if got := secretOf(c); got != "" && got != want {
					t.Errorf("Deployment %s: DATABASE_URL from %s, want %s", o.name(), got, want)
				}
			}
		case "Job":
			c := list(dig(o, "spec", "template", "spec", "containers"))[0]
			var args []string
			for _, a := range list(dig(c, "args")) {
				args = append(args, str(a))
			}
			if len(args) < 4 || !slices.Equal(args[:4], []string{"db", "grant-gateway", "--role", "answerback_gateway"}) {
				continue
			}
			grants++
			if hook := str(dig(o, "metadata", "annotations", "helm.sh/hook")); hook != "pre-install,pre-upgrade" {
				t.Errorf("Job %s: hook %q, want pre-install,pre-upgrade", o.name(), hook)
			}
			if got := secretOf(c); got != "answerback-app" {
				t.Errorf("Job %s: DATABASE_URL from %s, want the owner's answerback-app", o.name(), got)
			}
			bin := filepath.Join(t.TempDir(), "abctl")
			if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(root, "services", "abctl")).CombinedOutput(); err != nil {
				t.Fatalf("go build abctl: %v\n%s", err, out)
			}
			if out, err := exec.Command(bin, append(args[:2:2], "--help")...).CombinedOutput(); err != nil {
				t.Errorf("abctl %s: %v\n%s", strings.Join(args[:2], " "), err, out)
			}
		}
	}
	if grants != 1 {
		t.Errorf("%d Jobs grant the gateways' role, want 1", grants)
	}
	half := filepath.Join(t.TempDir(), "half.yaml")
	if err := os.WriteFile(half, []byte("database:\n  gateway:\n    role: answerback_gateway\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(helm(t), "template", "answerback", chart, "-f", half).CombinedOutput(); err == nil || !strings.Contains(string(out), "tenant wall") {
		t.Errorf("a role without its URL's Secret rendered: %v\n%s", err, out)
	}
}
