// Command containerinfra is the Docker-engine twin of deploy/local/cmd/localinfra:
// it starts and stops the infrastructure the project's tests, benchmarks and
// development runs use — one Apache Kafka broker (KRaft, single node) and one
// PostgreSQL server — as containers, through testcontainers-go.
//
//	containerinfra up        [--env-file F] [--kafka-image I] [--pg-image I] [--kafka-port P] [--pg-port P]
//	containerinfra down
//	containerinfra available
//
// "up" starts both containers and leaves them running after it exits. It
// writes exactly these lines to the env file (shell syntax) and prints them:
//
//	KAFKA_BROKERS=<host:port>
//	DATABASE_URL=postgres://...?sslmode=disable
//	ANSWERBACK_INFRA=docker
//
// Both containers carry the label dev.answerback.infra=<kafka|postgres> and are
// named answerback-kafka and answerback-postgres; "up" refuses to start while
// any container with that label exists. Ports are chosen by Docker unless
// --kafka-port or --pg-port pin the host side. Kafka uses the apache/kafka
// image through the generic container API (testcontainers' kafka module only
// drives confluentinc images); PostgreSQL uses the postgres module (user,
// password and database "postgres").
//
// Containers outlive the command because the program disables testcontainers'
// Ryuk reaper: main sets TESTCONTAINERS_RYUK_DISABLED=true (testcontainers'
// documented setting, read once, before any container is created), so nothing
// removes them when the process ends. "down" is therefore the only cleanup: it
// lists every container, running or not, labelled dev.answerback.infra through
// the Docker API client testcontainers provides, stops it and removes it with
// its anonymous volumes.
//
// "available" exits 0 when a Docker engine answers a ping within a few seconds
// and 1 otherwise, printing one line saying which. Every command fails with
// "no Docker engine reachable: ...; use deploy/local/cmd/localinfra instead"
// when there is no engine.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/go-connections/nat"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/modules/postgres"
	"github.com/testcontainers/testcontainers-go/wait"
)

const (
	// labelKey marks every container this command creates; its value names the service.
	labelKey = "dev.answerback.infra"

	defaultKafkaImage = "apache/kafka:4.1.1"
	defaultPGImage    = "postgres:17-alpine"

	kafkaName = "answerback-kafka"
	pgName    = "answerback-postgres"

	// kafkaPort is the client listener published to the host; the broker and
	// controller listeners stay inside the container.
	kafkaPort       = nat.Port("9092/tcp")
	pgPort          = nat.Port("5432/tcp")
	kafkaStarter    = "/tmp/answerback-kafka-start.sh"
	pgUser          = "postgres"
	pgPassword      = "postgres"
	pgDatabase      = "postgres"
	probeTimeout    = 5 * time.Second
	kafkaReadyAfter = 3 * time.Minute
	cleanupTimeout  = time.Minute
)

func main() {
	// Must happen before testcontainers reads its configuration (once, on
	// first use): with Ryuk off the containers survive this process.
	if err := os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true"); err != nil {
		fmt.Fprintln(os.Stderr, "containerinfra:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // the flag package has printed the usage
		}
		fmt.Fprintln(os.Stderr, "containerinfra:", err)
		os.Exit(1)
	}
}

// options holds the parsed command line.
type options struct {
	cmd        string
	envFile    string
	kafkaImage string
	pgImage    string
	kafkaPort  int // 0: Docker picks the host port
	pgPort     int
}

func parseArgs(args []string) (options, error) {
	if len(args) == 0 {
		return options{}, errors.New("usage: containerinfra up|down|available [flags]")
	}
	o := options{cmd: args[0]}
	switch o.cmd {
	case "up", "down", "available":
	default:
		return options{}, fmt.Errorf("unknown command %q: want up, down or available", o.cmd)
	}
	fs := flag.NewFlagSet("containerinfra "+o.cmd, flag.ContinueOnError)
	fs.StringVar(&o.envFile, "env-file", "", "write KAFKA_BROKERS, DATABASE_URL and ANSWERBACK_INFRA here (shell syntax)")
	fs.StringVar(&o.kafkaImage, "kafka-image", defaultKafkaImage, "Apache Kafka image (apache/kafka or a compatible build)")
	fs.StringVar(&o.pgImage, "pg-image", defaultPGImage, "PostgreSQL image")
	fs.IntVar(&o.kafkaPort, "kafka-port", 0, "host port for the broker (0: chosen by Docker)")
	fs.IntVar(&o.pgPort, "pg-port", 0, "host port for PostgreSQL (0: chosen by Docker)")
	if err := fs.Parse(args[1:]); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for name, p := range map[string]int{"kafka-port": o.kafkaPort, "pg-port": o.pgPort} {
		if p < 0 || p > 65535 {
			return options{}, fmt.Errorf("--%s %d: want 0..65535", name, p)
		}
	}
	if o.kafkaPort != 0 && o.kafkaPort == o.pgPort {
		return options{}, fmt.Errorf("--kafka-port and --pg-port are both %d", o.kafkaPort)
	}
	if o.kafkaImage == "" || o.pgImage == "" {
		return options{}, errors.New("--kafka-image and --pg-image must not be empty")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := parseArgs(args)
	if err != nil {
		return err
	}
	cli, err := connect(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()

	switch o.cmd {
	case "available":
		vctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		v, err := cli.ServerVersion(vctx)
		if err != nil {
			return noEngine(err)
		}
		fmt.Fprintf(stdout, "Docker engine reachable at %s (server %s, API %s)\n", cli.DaemonHost(), v.Version, v.APIVersion)
		return nil
	case "down":
		return down(ctx, cli, stdout)
	default:
		return up(ctx, cli, o, stdout)
	}
}

// noEngine wraps a failure to reach Docker in the message every command uses.
func noEngine(err error) error {
	msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
	return fmt.Errorf("no Docker engine reachable: %s; use deploy/local/cmd/localinfra instead", msg)
}

// connect returns testcontainers' Docker client once the engine answers a ping.
// testcontainers panics when it finds no Docker host at all; that becomes an error.
func connect(ctx context.Context) (cli *testcontainers.DockerClient, err error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			cli, err = nil, noEngine(fmt.Errorf("%v", r))
		}
	}()
	c, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return nil, noEngine(err)
	}
	if _, err := c.Ping(ctx); err != nil {
		_ = c.Close()
		return nil, noEngine(err)
	}
	return c, nil
}

// labelled lists every container (running or not) carrying labelKey.
func labelled(ctx context.Context, cli *testcontainers.DockerClient) ([]container.Summary, error) {
	return cli.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", labelKey)),
	})
}

func containerName(c container.Summary) string {
	if len(c.Names) > 0 {
		return strings.TrimPrefix(c.Names[0], "/")
	}
	return c.ID[:min(12, len(c.ID))]
}

func up(ctx context.Context, cli *testcontainers.DockerClient, o options, stdout io.Writer) error {
	existing, err := labelled(ctx, cli)
	if err != nil {
		return fmt.Errorf("listing containers: %w", err)
	}
	if len(existing) > 0 {
		names := make([]string, len(existing))
		for i, c := range existing {
			names[i] = containerName(c)
		}
		return fmt.Errorf("containers labelled %s already exist (%s): run containerinfra down first",
			labelKey, strings.Join(names, ", "))
	}

	start := time.Now()
	kafkaCtr, err := startKafka(ctx, o)
	if err != nil {
		terminate(ctx, kafkaCtr)
		return fmt.Errorf("starting Kafka (%s): %w", o.kafkaImage, err)
	}
	broker, err := kafkaCtr.PortEndpoint(ctx, kafkaPort, "")
	if err != nil {
		terminate(ctx, kafkaCtr)
		return fmt.Errorf("kafka endpoint: %w", err)
	}
	fmt.Fprintf(stdout, "Apache Kafka (container %s, KRaft, 1 node) at %s — %s (%s)\n",
		o.kafkaImage, broker, kafkaName, time.Since(start).Round(time.Millisecond))

	pgStart := time.Now()
	pgCtr, err := startPostgres(ctx, o)
	if err != nil {
		terminate(ctx, pgCtr)
		terminate(ctx, kafkaCtr)
		return fmt.Errorf("starting PostgreSQL (%s): %w", o.pgImage, err)
	}
	dsn, err := pgCtr.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		terminate(ctx, pgCtr)
		terminate(ctx, kafkaCtr)
		return fmt.Errorf("PostgreSQL endpoint: %w", err)
	}
	pgAddr, _ := pgCtr.PortEndpoint(ctx, pgPort, "")
	fmt.Fprintf(stdout, "PostgreSQL (container %s) at %s — %s (%s)\n",
		o.pgImage, pgAddr, pgName, time.Since(pgStart).Round(time.Millisecond))

	env := renderEnv([]string{broker}, dsn)
	if o.envFile != "" {
		if err := os.WriteFile(o.envFile, []byte(env), 0o644); err != nil {
			return fmt.Errorf("%w (containers left running; containerinfra down removes them)", err)
		}
	}
	fmt.Fprint(stdout, env)
	return nil
}

// renderEnv is the env file's content: the localinfra format, with
// ANSWERBACK_INFRA=docker in place of localinfra's data folder.
func renderEnv(brokers []string, dsn string) string {
	return fmt.Sprintf("KAFKA_BROKERS=%s\nDATABASE_URL=%s\nANSWERBACK_INFRA=docker\n", strings.Join(brokers, ","), dsn)
}

// terminate removes a container a failed "up" created; with Ryuk disabled
// nothing else would. It ignores nil containers.
func terminate(ctx context.Context, c testcontainers.Container) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := testcontainers.TerminateContainer(c, testcontainers.StopContext(ctx)); err != nil {
		fmt.Fprintln(os.Stderr, "containerinfra: cleanup:", err)
	}
}

// hostPort pins the host side of port when host is non-zero.
func hostPort(port nat.Port, host int) testcontainers.CustomizeRequestOption {
	return func(req *testcontainers.GenericContainerRequest) error {
		if host == 0 {
			return nil
		}
		req.HostConfigModifier = func(hc *container.HostConfig) {
			hc.PortBindings = nat.PortMap{port: {{HostPort: strconv.Itoa(host)}}}
		}
		return nil
	}
}

// kafkaEnv configures a single combined broker+controller node of the apache/kafka
// image. PLAINTEXT (9092) is published to the host; its advertised address
// is only known once Docker has mapped the port, so the start script sets it.
func kafkaEnv(clusterID string) map[string]string {
	return map[string]string{
		"CLUSTER_ID":                                     clusterID,
		"KAFKA_NODE_ID":                                  "1",
		"KAFKA_PROCESS_ROLES":                            "broker,controller",
		"KAFKA_LISTENERS":                                "PLAINTEXT://0.0.0.0:9092,BROKER://0.0.0.0:19092,CONTROLLER://0.0.0.0:9093",
		"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":           "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
		"KAFKA_INTER_BROKER_LISTENER_NAME":               "BROKER",
		"KAFKA_CONTROLLER_LISTENER_NAMES":                "CONTROLLER",
		"KAFKA_CONTROLLER_QUORUM_VOTERS":                 "1@localhost:9093",
		"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "1",
		"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
		"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "1",
		"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":         "0",
	}
}

// kafkaStartScript exports the advertised listeners (the host-side address
// for PLAINTEXT, the container's hostname for BROKER) and hands over to the
// image's own launcher.
func kafkaStartScript(advertised string) string {
	return "#!/bin/sh\n" +
		`export KAFKA_ADVERTISED_LISTENERS="PLAINTEXT://` + advertised + `,BROKER://$(hostname):19092"` + "\n" +
		"exec /etc/kafka/docker/run\n"
}

// newClusterID returns a random KRaft cluster id (16 bytes, base64url, no padding).
func newClusterID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func startKafka(ctx context.Context, o options) (testcontainers.Container, error) {
	clusterID, err := newClusterID()
	if err != nil {
		return nil, err
	}
	ctr, err := testcontainers.Run(ctx, o.kafkaImage,
		testcontainers.WithName(kafkaName),
		testcontainers.WithLabels(map[string]string{labelKey: "kafka"}),
		testcontainers.WithExposedPorts(string(kafkaPort)),
		hostPort(kafkaPort, o.kafkaPort),
		testcontainers.WithEnv(kafkaEnv(clusterID)),
		// Wait for the start script, copied in once the port is mapped, then run it.
		testcontainers.WithEntrypoint("sh"),
		testcontainers.WithCmd("-c", "while [ ! -f "+kafkaStarter+" ]; do sleep 0.1; done; exec sh "+kafkaStarter),
		testcontainers.WithLifecycleHooks(testcontainers.ContainerLifecycleHooks{
			PostStarts: []testcontainers.ContainerHook{
				func(ctx context.Context, c testcontainers.Container) error {
					if err := wait.ForMappedPort(kafkaPort).WaitUntilReady(ctx, c); err != nil {
						return fmt.Errorf("wait for mapped port: %w", err)
					}
					advertised, err := c.PortEndpoint(ctx, kafkaPort, "")
					if err != nil {
						return fmt.Errorf("port endpoint: %w", err)
					}
					if err := c.CopyToContainer(ctx, []byte(kafkaStartScript(advertised)), kafkaStarter, 0o755); err != nil {
						return fmt.Errorf("copy start script: %w", err)
					}
					return wait.ForLog("Kafka Server started").
						WithStartupTimeout(kafkaReadyAfter).
						WaitUntilReady(ctx, c)
				},
			},
		}),
	)
	if ctr == nil {
		return nil, err // a nil *DockerContainer must not become a non-nil interface
	}
	return ctr, err
}

func startPostgres(ctx context.Context, o options) (*postgres.PostgresContainer, error) {
	return postgres.Run(ctx, o.pgImage,
		testcontainers.WithName(pgName),
		testcontainers.WithLabels(map[string]string{labelKey: "postgres"}),
		hostPort(pgPort, o.pgPort),
		postgres.WithUsername(pgUser),
		postgres.WithPassword(pgPassword),
		postgres.WithDatabase(pgDatabase),
		postgres.BasicWaitStrategies(),
	)
}

func down(ctx context.Context, cli *testcontainers.DockerClient, stdout io.Writer) error {
	found, err := labelled(ctx, cli)
	if err != nil {
		return fmt.Errorf("listing containers: %w", err)
	}
	if len(found) == 0 {
		fmt.Fprintf(stdout, "no containers labelled %s\n", labelKey)
		return nil
	}
	var errs []error
	for _, c := range found {
		name := containerName(c)
		timeout := 10
		if err := cli.ContainerStop(ctx, c.ID, container.StopOptions{Timeout: &timeout}); err != nil {
			errs = append(errs, fmt.Errorf("stopping %s: %w", name, err))
		}
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", name, err))
			continue
		}
		fmt.Fprintf(stdout, "removed %s (%s=%s, %s)\n", name, labelKey, c.Labels[labelKey], c.Image)
	}
	return errors.Join(errs...)
}
