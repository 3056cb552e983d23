package validate

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

var answerbackImage = regexp.MustCompile(`answerback-([a-z]+)(:|$)`)

// answerbackService names the service a compose service runs: the SERVICE
// its build passes to the Dockerfile, else the one its image is named after;
// "" for infrastructure (Kafka, PostgreSQL, the load balancer).
func answerbackService(s types.ServiceConfig) string {
	if s.Build != nil {
		if v := s.Build.Args["SERVICE"]; v != nil {
			return *v
		}
	}
	if m := answerbackImage.FindStringSubmatch(s.Image); m != nil {
		return m[1]
	}
	return ""
}

// loadCompose reads docker-compose.yml as docker compose does (compose-go:
// the Compose Specification's schema, anchors and merge keys, references
// between services and volumes checked), with every profile on and no
// variables from this machine's environment.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root), cli.WithProfiles([]string{"*"}), cli.WithEnv(nil), cli.WithResolvedPaths(false))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return project
}

// TestComposeFile: docker-compose.yml runs what the README promises — two
// gateways behind a round-robin load balancer on 8080, two aggregators, two
// projectors and salesdaily — built from the repository's Dockerfile, with
// variables the services read, the files they are told to read mounted,
// the topics and the key made before they start, and hardened containers.
func TestComposeFile(t *testing.T) {
	project := loadCompose(t)
	count := map[string]int{}
	instanceIDs := map[string]map[string]bool{}
	gatewayPorts := map[string]string{} // compose service → HTTP port
	for name, s := range project.Services {
		svc := answerbackService(s)
		if svc == "" {
			continue
		}
		where := "docker-compose.yml service " + name
		if _, err := os.Stat(filepath.Join(root, "services", svc, "main.go")); err != nil {
			t.Errorf("%s: image of %q, which is not a service", where, svc)
			continue
		}
		count[svc]++
		// Built from the Dockerfile at the root, in the root (the Go
		// workspace), SERVICE naming the service, into an image named after it.
		if s.Build == nil || filepath.Clean(s.Build.Context) != "." || filepath.Clean(s.Build.Dockerfile) != "Dockerfile" {
			t.Errorf("%s: want a build of the repository's Dockerfile in its root (the Go workspace), got %+v", where, s.Build)
		} else if v := s.Build.Args["SERVICE"]; v == nil || *v != svc {
			t.Errorf("%s: want the build argument SERVICE=%s, got %v", where, svc, s.Build.Args)
		} else if _, err := os.Stat(filepath.Join(root, s.Build.Dockerfile)); err != nil {
			t.Errorf("%s: %v", where, err)
		}
		if m := answerbackImage.FindStringSubmatch(s.Image); m == nil || m[1] != svc {
			t.Errorf("%s: image %q, want answerback-%s", where, s.Image, svc)
		}
		if !slices.Contains(deployable, svc) {
			t.Errorf("%s: %s is not a deployable service: the Dockerfile makes no image of it", where, svc)
		}
		env := map[string]string{}
		set := map[string]bool{}
		for k, v := range s.Environment {
			set[k] = true
			if v != nil {
				env[k] = *v
			}
		}
		checkEnv(t, where, svc, set)
		if id := env["INSTANCE_ID"]; id != "" {
			if instanceIDs[svc] == nil {
				instanceIDs[svc] = map[string]bool{}
			}
			if instanceIDs[svc][id] {
				t.Errorf("%s: INSTANCE_ID %s is another %s's too", where, id, svc)
			}
			instanceIDs[svc][id] = true
		}
		// Files a service is told to read are in a volume it mounts.
		for k, v := range env {
			if !strings.HasSuffix(k, "_FILE") || v == "" {
				continue
			}
			if !slices.ContainsFunc(s.Volumes, func(m types.ServiceVolumeConfig) bool { return strings.HasPrefix(v, m.Target+"/") }) {
				t.Errorf("%s: %s=%s, which no volume of it holds", where, k, v)
			}
		}
		if svc != "abctl" {
			if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
				t.Errorf("%s: want read_only: true, cap_drop: [ALL] and no-new-privileges", where)
			}
			// They create no topics of the domain: `topics` does, first.
			if d, ok := s.DependsOn["topics"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
				t.Errorf("%s: does not wait for the topics to be made (depends_on topics: service_completed_successfully)", where)
			}
		}
		if svc == "gateway" {
			gatewayPorts[name] = portOf(env["HTTP_ADDR"], "8080")
			if d, ok := s.DependsOn["devkey"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
				t.Errorf("%s: does not wait for the signing key's JWKS (depends_on devkey: service_completed_successfully)", where)
			}
		}
	}
	for svc, want := range map[string]int{"gateway": 2, "aggregator": 2, "projector": 2, "salesdaily": 1} {
		if count[svc] != want {
			t.Errorf("%d %s services, want %d", count[svc], svc, want)
		}
	}

	// The load balancer: publishes 8080, round robin over every gateway.
	lbs := 0
	for name, s := range project.Services {
		if !strings.HasPrefix(s.Image, "nginx") && !strings.HasPrefix(s.Image, "haproxy") {
			continue
		}
		lbs++
		for gw := range gatewayPorts {
			if d, ok := s.DependsOn[gw]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s: does not wait for %s to be healthy", name, gw)
			}
		}
		if !slices.ContainsFunc(s.Ports, func(p types.ServicePortConfig) bool { return p.Published == "8080" }) {
			t.Errorf("%s publishes %+v, want 8080", name, s.Ports)
		}
	}
	if lbs != 1 {
		t.Fatalf("%d load balancers (nginx or HAProxy) in docker-compose.yml, want 1", lbs)
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
