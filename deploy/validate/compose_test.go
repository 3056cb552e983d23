package validate

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// composeService is the part of a compose service these tests read.
type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Environment any      `yaml:"environment"` // a map or a list of NAME=value
	Ports       []any    `yaml:"ports"`
	Volumes     []any    `yaml:"volumes"`
	ReadOnly    bool     `yaml:"read_only"`
	CapDrop     []string `yaml:"cap_drop"`
}

// answerbackService names the service an image or Dockerfile builds, "" for
// infrastructure (Kafka, PostgreSQL, the load balancer).
func (s composeService) answerbackService() string {
	if s.Build != nil {
		if m := regexp.MustCompile(`^services/([a-z]+)/Dockerfile$`).FindStringSubmatch(s.Build.Dockerfile); m != nil {
			return m[1]
		}
	}
	if m := regexp.MustCompile(`answerback-([a-z]+)(:|$)`).FindStringSubmatch(s.Image); m != nil {
		return m[1]
	}
	return ""
}

func (s composeService) env(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	switch e := s.Environment.(type) {
	case nil:
	case map[string]any:
		for k, v := range e {
			out[k] = fmt.Sprint(v)
		}
	case []any:
		for _, item := range e {
			k, v, _ := strings.Cut(fmt.Sprint(item), "=")
			out[k] = v
		}
	default:
		t.Fatalf("environment of type %T", e)
	}
	return out
}

func loadCompose(t *testing.T) map[string]composeService {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return doc.Services
}

// TestComposeFile: docker-compose.yml runs what the README promises — two
// gateways behind a round-robin load balancer on 8080, two aggregators, two
// projectors and salesdaily — with variables the services read, images of
// services that exist, and hardened containers.
func TestComposeFile(t *testing.T) {
	services := loadCompose(t)
	count := map[string]int{}
	instanceIDs := map[string]map[string]bool{}
	gatewayPorts := map[string]string{} // compose service → HTTP port
	for name, s := range services {
		svc := s.answerbackService()
		if svc == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, "services", svc, "main.go")); err != nil {
			t.Errorf("%s: image of %q, which is not a service", name, svc)
			continue
		}
		count[svc]++
		env := s.env(t)
		set := map[string]bool{}
		for k := range env {
			set[k] = true
		}
		checkEnv(t, "docker-compose.yml service "+name, svc, set)
		if id := env["INSTANCE_ID"]; id != "" {
			if instanceIDs[svc] == nil {
				instanceIDs[svc] = map[string]bool{}
			}
			if instanceIDs[svc][id] {
				t.Errorf("%s: INSTANCE_ID %s is another %s's too", name, id, svc)
			}
			instanceIDs[svc][id] = true
		}
		if svc != "abctl" && (!s.ReadOnly || !slices.Contains(s.CapDrop, "ALL")) {
			t.Errorf("%s: want read_only: true and cap_drop: [ALL]", name)
		}
		if svc == "gateway" {
			gatewayPorts[name] = portOf(env["HTTP_ADDR"], "8080")
		}
	}
	for svc, want := range map[string]int{"gateway": 2, "aggregator": 2, "projector": 2, "salesdaily": 1} {
		if count[svc] != want {
			t.Errorf("%d %s services, want %d", count[svc], svc, want)
		}
	}

	// The load balancer: publishes 8080, round robin over every gateway.
	var lb *composeService
	for name, s := range services {
		if strings.HasPrefix(s.Image, "nginx") || strings.HasPrefix(s.Image, "haproxy") {
			s := s
			lb = &s
			if !slices.ContainsFunc(s.Ports, func(p any) bool { return strings.HasPrefix(fmt.Sprint(p), "8080:") }) {
				t.Errorf("%s publishes %v, want 8080", name, s.Ports)
			}
		}
	}
	if lb == nil {
		t.Fatal("no load balancer (nginx or HAProxy) in docker-compose.yml")
	}
	conf, err := os.ReadFile(filepath.Join(root, "deploy", "docker", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	upstream := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s*server\s+([a-z0-9-]+):(\d+)`).FindAllStringSubmatch(string(conf), -1) {
		upstream[m[1]] = m[2]
	}
	for gw, port := range gatewayPorts {
		if upstream[gw] != port {
			t.Errorf("nginx.conf sends to %s on port %q, want %s (its HTTP_ADDR)", gw, upstream[gw], port)
		}
	}
	for host := range upstream {
		if _, ok := gatewayPorts[host]; !ok {
			t.Errorf("nginx.conf sends to %s, which is not a gateway of docker-compose.yml", host)
		}
	}
	if regexp.MustCompile(`(?m)^\s*(least_conn|ip_hash|hash)\b`).Match(conf) {
		t.Error("nginx.conf balances other than round robin")
	}
}

// portOf is the port of a listen address such as ":8080", or def.
func portOf(addr, def string) string {
	if addr == "" {
		return def
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return def
	}
	return port
}
