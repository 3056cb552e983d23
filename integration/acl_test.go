package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.yaml.in/yaml/v3"

	"github.com/answerback/answerback/deploy/local/kafkalocal"
	"github.com/answerback/answerback/libs/pipeline/dlq"
	"github.com/answerback/answerback/libs/testenv"
	"github.com/answerback/answerback/libs/testenv/ports"
)

// exampleKafka is the production example's Strimzi cluster, whose KafkaUsers
// grant the services and the operators what they may do.
var exampleKafka = filepath.Join("..", "deploy", "k8s", "examples", "kafka-cluster.yaml")

// kafkaUser is the part of a Strimzi KafkaUser this test applies.
type kafkaUser struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Authentication struct {
			Type string `yaml:"type"`
		} `yaml:"authentication"`
		Authorization struct {
			Type string `yaml:"type"`
			ACLs []struct {
				Resource struct {
					Type        string `yaml:"type"`
					Name        string `yaml:"name"`
					PatternType string `yaml:"patternType"`
				} `yaml:"resource"`
				Operations []string `yaml:"operations"`
				Host       string   `yaml:"host"`
			} `yaml:"acls"`
		} `yaml:"authorization"`
	} `yaml:"spec"`
}

// exampleUsers reads the KafkaUsers of the production example.
func exampleUsers(t *testing.T) map[string]kafkaUser {
	t.Helper()
	b, err := os.ReadFile(exampleKafka)
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]kafkaUser{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var u kafkaUser
		if err := dec.Decode(&u); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", exampleKafka, err)
		}
		if u.Kind == "KafkaUser" {
			users[u.Metadata.Name] = u
		}
	}
	return users
}

// aclsOf turns a KafkaUser's simple authorization into Kafka ACLs for
// User:<name>, as Strimzi's User Operator does.
func aclsOf(t *testing.T, u kafkaUser) []*kadm.ACLBuilder {
	t.Helper()
	if u.Spec.Authorization.Type != "simple" {
		t.Fatalf("KafkaUser %s: authorization %q, want simple", u.Metadata.Name, u.Spec.Authorization.Type)
	}
	var out []*kadm.ACLBuilder
	for _, acl := range u.Spec.Authorization.ACLs {
		host := acl.Host
		if host == "" {
			host = "*"
		}
		b := kadm.NewACLs().Allow("User:" + u.Metadata.Name).AllowHosts(host)
		switch r := acl.Resource; r.Type {
		case "topic":
			b = b.Topics(r.Name)
		case "group":
			b = b.Groups(r.Name)
		case "transactionalId":
			b = b.TransactionalIDs(r.Name)
		case "cluster":
			b = b.Clusters()
		default:
			t.Fatalf("KafkaUser %s: resource type %q", u.Metadata.Name, r.Type)
		}
		pattern := kadm.ACLPatternLiteral
		if acl.Resource.PatternType == "prefix" {
			pattern = kadm.ACLPatternPrefixed
		}
		var ops []kadm.ACLOperation
		for _, op := range acl.Operations {
			parsed, err := kmsg.ParseACLOperation(op)
			if err != nil {
				t.Fatalf("KafkaUser %s: operation %q: %v", u.Metadata.Name, op, err)
			}
			ops = append(ops, parsed)
		}
		out = append(out, b.ResourcePatternType(pattern).Operations(ops...))
	}
	return out
}

// TestExampleACLsSuffice holds the production example's Kafka users to what
// the services and abctl do: on a broker that authenticates with
// SCRAM-SHA-512 and authorizes with Kafka's StandardAuthorizer (nothing
// allowed unless an ACL says so), with exactly the ACLs of the example's
// KafkaUsers, the services — sandboxed as in TestServicesRunHardened, with
// the password in a mounted file as the chart gives it — create their topics,
// take a command end to end and stop cleanly as answerback-services, and
// every abctl command works as answerback-ops: status, topics ensure, dlq
// list, redrive and purge, replies list and gc, replay and rebuild.
func TestExampleACLsSuffice(t *testing.T) {
	t.Parallel()
	requireSandbox(t)
	for _, tool := range []string{"java", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, "a Kafka broker with SASL and ACLs: %s not on PATH", tool)
		}
	}
	users := exampleUsers(t)
	services, ops := users["answerback-services"], users["answerback-ops"]
	for name, u := range map[string]kafkaUser{"answerback-services": services, "answerback-ops": ops} {
		if u.Spec.Authentication.Type != "scram-sha-512" {
			t.Fatalf("KafkaUser %s: authentication %q, want scram-sha-512", name, u.Spec.Authentication.Type)
		}
	}

	// One broker: the plaintext listener is the test's own (its anonymous
	// principal is a super user), the SASL listener the services'.
	ctx := testenv.Context(t, 5*time.Minute)
	cache := os.Getenv(EnvKafkaJarsCache)
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "answerback-kafka-cache")
	}
	port := testenv.FreeKafkaPorts(t, 1)
	saslPort, err := ports.Free()
	if err != nil {
		t.Fatal(err)
	}
	broker, err := kafkalocal.Start(ctx, kafkalocal.Options{Dir: t.TempDir(), CacheDir: cache, Port: port, Properties: []string{
		fmt.Sprintf("listeners=PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d,SASL_PLAINTEXT://127.0.0.1:%d", port, port+100, saslPort),
		fmt.Sprintf("advertised.listeners=PLAINTEXT://127.0.0.1:%d,SASL_PLAINTEXT://127.0.0.1:%d", port, saslPort),
		"listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
		"sasl.enabled.mechanisms=SCRAM-SHA-512",
		"listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;",
		"authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
		"allow.everyone.if.no.acl.found=false",
		"super.users=User:ANONYMOUS",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = broker.Stop() })
	superClient, err := kgo.NewClient(kgo.SeedBrokers(broker.Seeds()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(superClient.Close)
	admin := kadm.NewClient(superClient)

	// The users with their passwords and ACLs, as the User Operator makes them.
	passwords := map[string]string{"answerback-services": "services-" + testenv.UniqueName("pw"), "answerback-ops": "ops-" + testenv.UniqueName("pw")}
	var upserts []kadm.UpsertSCRAM
	for user, pw := range passwords {
		upserts = append(upserts, kadm.UpsertSCRAM{User: user, Mechanism: kadm.ScramSha512, Iterations: 4096, Password: pw})
	}
	altered, err := admin.AlterUserSCRAMs(ctx, nil, upserts)
	if err == nil {
		err = altered.Error()
	}
	if err != nil {
		t.Fatalf("SCRAM users: %v", err)
	}
	for _, u := range []kafkaUser{services, ops} {
		for _, b := range aclsOf(t, u) {
			results, err := admin.CreateACLs(ctx, b)
			if err != nil {
				t.Fatalf("ACLs of %s: %v", u.Metadata.Name, err)
			}
			for _, r := range results {
				if r.Err != nil {
					t.Fatalf("ACL of %s on %s %s: %v", u.Metadata.Name, r.Type, r.Name, r.Err)
				}
			}
		}
	}
	// The SCRAM credentials reach the broker's cache through the metadata
	// log: wait until a login works.
	saslSeeds := []string{fmt.Sprintf("127.0.0.1:%d", saslPort)}
	waitLogin(t, saslSeeds, "answerback-ops", passwords["answerback-ops"])

	// Passwords as the chart mounts them: files the services' user can read.
	dir := hardenedDir(t)
	passwordFile := func(user string) string {
		f := filepath.Join(dir, user+".password")
		if err := os.WriteFile(f, []byte(passwords[user]+"\n"), 0o644); err != nil { //nolint:gosec // read by the sandboxed services' user in a test
			t.Fatal(err)
		}
		return f
	}
	saslEnv := func(user string) []string {
		return []string{"KAFKA_SASL_MECHANISM=SCRAM-SHA-512", "KAFKA_SASL_USERNAME=" + user, "KAFKA_SASL_PASSWORD_FILE=" + passwordFile(user)}
	}
	pg := runHardened(t, brokerAccess{
		seeds: saslSeeds, prefix: "", instance: "acl", env: saslEnv("answerback-services"),
		salesdailyEnv: []string{"DLQ_TOPIC=sales-daily.dlq"}, // as values-production.yaml
		admin:         admin,
	})

	// abctl as the operators' user.
	abctl := filepath.Join(dir, "abctl")
	if out, err := exec.Command("go", "build", "-o", abctl, "../services/abctl").CombinedOutput(); err != nil {
		t.Fatalf("go build abctl: %v\n%s", err, out)
	}
	// What operators meet: a dead letter (as the projector would write it)
	// and the reply topic of a gateway that crashed.
	deadLetter := dlq.Record("orders.dlq", "projector",
		&kgo.Record{Topic: "orders.events", Partition: 0, Offset: 0, Key: []byte("acme/o-bad"), Value: []byte("not an event")}, errors.New("not an event"))
	if err := superClient.ProduceSync(ctx, deadLetter).FirstErr(); err != nil {
		t.Fatal(err)
	}
	const crashed = "replies.crashed-gateway"
	if _, err := admin.CreateTopic(ctx, 1, 1, nil, crashed); err != nil {
		t.Fatal(err)
	}
	opsEnv := append([]string{"PATH=/usr/bin:/bin", "KAFKA_BROKERS=" + saslSeeds[0], "DATABASE_URL=" + pg.DSN, "LOG_LEVEL=warn"}, saslEnv("answerback-ops")...)
	for _, args := range [][]string{
		{"status", "--json"},
		{"topics", "ensure", "--partitions", "3", "--json"},
		{"dlq", "list", "--json"},
		{"dlq", "redrive", "--all", "--json"},
		{"dlq", "purge", "--all", "--yes", "--json"},
		{"replies", "list", "--json"},
		{"replies", "gc", "--stale-after", "1s", "--json"},
		{"replay", "--partition", "0,1,2", "--from-offset", "0", "--json"},
		{"rebuild", "--json"},
	} {
		out, err := hardenedCommand(opsEnv, abctl, args...).CombinedOutput()
		t.Logf("abctl %s: %s", strings.Join(args, " "), strings.Join(strings.Fields(string(out)), " "))
		if err != nil {
			t.Errorf("abctl %s as answerback-ops: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	listed, err := admin.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if listed.Has(crashed) {
		t.Errorf("abctl replies gc as answerback-ops left %s", crashed)
	}
}

// waitLogin waits until user can log in with SCRAM-SHA-512 at seeds.
func waitLogin(t *testing.T, seeds []string, user, password string) {
	t.Helper()
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha512Mechanism()))
		if err != nil {
			t.Fatal(err)
		}
		ctx := testenv.Context(t, 5*time.Second)
		_, last = kadm.NewClient(cl).ListBrokers(ctx)
		cl.Close()
		if last == nil {
			return
		}
	}
	t.Fatalf("%s cannot log in: %v", user, last)
}
