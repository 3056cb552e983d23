package kafkalocal

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Options describe a local Kafka cluster. The zero value of every field but
// Dir has a sensible default.
type Options struct {
	// Dir holds the cluster: one folder per node with its data, config and logs.
	// A later start with the same Dir reuses the formatted storage and its data.
	Dir string
	// CacheDir holds the broker jars (shared by every cluster); default Dir/../cache.
	CacheDir string
	// Version is the Apache Kafka release; default DefaultVersion.
	Version string
	// Nodes is 1 (default) or 3.
	Nodes int
	// Port is the client port of node 1; node i listens on Port+i-1 for clients
	// and Port+100+i-1 for the controller quorum. Default 9092.
	Port int
	// HeapMB caps each broker's Java heap; default 512.
	HeapMB int
	// Detach starts brokers in their own session so they outlive this process;
	// they are found again through pid files: by a later Start (which reuses
	// running nodes) and by StopDir.
	Detach bool
	// Properties are server.properties lines ("key=value") added after the
	// defaults; a key given again overrides its default (the last one wins).
	Properties []string
	// StartTimeout bounds the wait for the cluster to answer metadata; default 90s.
	StartTimeout time.Duration
	// FullJIT runs the broker with the JVM's default tiered JIT (C1, then C2
	// for hot code), as production runs it. Off (the default), the JIT stops
	// at C1 (-XX:TieredStopAtLevel=1): a broker that starts faster and
	// compiles less, for tests.
	FullJIT bool
	// JMXPort, when set, has node i serve JMX (RMI, without authentication
	// or TLS) on 127.0.0.1 at JMXPort+i-1, for RequestCounts; Start then
	// also fetches Kafka's tools (EnsureTools). 0: no JMX port.
	JMXPort int
}

func (o *Options) setDefaults() {
	if o.CacheDir == "" {
		o.CacheDir = filepath.Join(filepath.Dir(o.Dir), "cache")
	}
	if o.Version == "" {
		o.Version = DefaultVersion
	}
	if o.Nodes == 0 {
		o.Nodes = 1
	}
	if o.Port == 0 {
		o.Port = 9092
	}
	if o.HeapMB == 0 {
		o.HeapMB = 512
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 90 * time.Second
	}
}

func (o *Options) validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("option Dir is required"))
	}
	if o.Nodes != 1 && o.Nodes != 3 {
		errs = append(errs, fmt.Errorf("option Nodes must be 1 or 3, not %d", o.Nodes))
	}
	if o.Port <= 0 || o.Port+100+o.Nodes > 65535 {
		errs = append(errs, fmt.Errorf("option Port %d out of range", o.Port))
	}
	if o.JMXPort < 0 || o.JMXPort+o.Nodes > 65535 {
		errs = append(errs, fmt.Errorf("option JMXPort %d out of range", o.JMXPort))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kafkalocal: %w", err)
	}
	return nil
}

// Cluster is a running local Kafka cluster. Its methods are not safe for
// concurrent use.
type Cluster struct {
	opts    Options
	libs    string
	tools   string // Kafka's tools (JmxTool), when Options.JMXPort is set
	nodes   []*Node
	logFile *os.File
}

// Node is one combined broker/controller process.
type Node struct {
	ID             int
	Port           int
	ControllerPort int
	JMXPort        int // 0: none
	Dir            string
	cmd            *exec.Cmd
	exited         chan struct{}
	pid            int
}

// Addr is the node's client address.
func (n *Node) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.Port)) }

// Pid is the node's process ID while it runs (0 before Start).
func (n *Node) Pid() int { return n.pid }

// LogDir is the folder the node's server.log and stdout land in.
func (n *Node) LogDir() string { return filepath.Join(n.Dir, "logs") }

func (n *Node) dataDir() string    { return filepath.Join(n.Dir, "data") }
func (n *Node) configPath() string { return filepath.Join(n.Dir, "server.properties") }
func (n *Node) pidPath() string    { return filepath.Join(n.Dir, "kafka.pid") }

// Start resolves the jars (mvn, first time only), formats storage when the
// folder is new, starts every node and waits until the cluster answers
// metadata with all its brokers. On error, whatever was started is stopped.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(filepath.Join(opts.Dir, "launcher.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	libs, err := EnsureJars(ctx, opts.CacheDir, opts.Version, logFile)
	if err != nil {
		logFile.Close()
		return nil, err
	}
	c := &Cluster{opts: opts, libs: libs, logFile: logFile}
	if opts.JMXPort > 0 {
		if c.tools, err = EnsureTools(ctx, opts.CacheDir, opts.Version, logFile); err != nil {
			logFile.Close()
			return nil, err
		}
	}
	for i := 1; i <= opts.Nodes; i++ {
		n := &Node{
			ID:             i,
			Port:           opts.Port + i - 1,
			ControllerPort: opts.Port + 100 + i - 1,
			Dir:            filepath.Join(opts.Dir, "node"+strconv.Itoa(i)),
		}
		if opts.JMXPort > 0 {
			n.JMXPort = opts.JMXPort + i - 1
		}
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		if err := c.prepare(ctx, n); err != nil {
			_ = c.Stop()
			return nil, err
		}
	}
	for _, n := range c.nodes {
		if err := c.startNode(n); err != nil {
			_ = c.Stop()
			return nil, err
		}
	}
	if err := c.WaitReady(ctx, opts.Nodes); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

// Seeds are the client addresses of every node.
func (c *Cluster) Seeds() []string {
	s := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		s[i] = n.Addr()
	}
	return s
}

// Nodes returns the cluster's nodes, node 1 first.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Version is the Apache Kafka release running.
func (c *Cluster) Version() string { return c.opts.Version }

func (c *Cluster) voters() string {
	v := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		v[i] = fmt.Sprintf("%d@127.0.0.1:%d", n.ID, n.ControllerPort)
	}
	return strings.Join(v, ",")
}

func (c *Cluster) prepare(ctx context.Context, n *Node) error {
	for _, d := range []string{n.dataDir(), n.LogDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	rf := 1
	minISR := 1
	if len(c.nodes) == 3 {
		rf, minISR = 3, 2
	}
	props := []string{
		"process.roles=broker,controller",
		"node.id=" + strconv.Itoa(n.ID),
		"controller.quorum.voters=" + c.voters(),
		fmt.Sprintf("listeners=PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d", n.Port, n.ControllerPort),
		fmt.Sprintf("advertised.listeners=PLAINTEXT://127.0.0.1:%d", n.Port),
		"controller.listener.names=CONTROLLER",
		"inter.broker.listener.name=PLAINTEXT",
		"listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
		"log.dirs=" + n.dataDir(),
		"num.partitions=1",
		fmt.Sprintf("default.replication.factor=%d", rf),
		fmt.Sprintf("min.insync.replicas=%d", minISR),
		fmt.Sprintf("offsets.topic.replication.factor=%d", rf),
		"offsets.topic.num.partitions=10",
		fmt.Sprintf("transaction.state.log.replication.factor=%d", rf),
		fmt.Sprintf("transaction.state.log.min.isr=%d", minISR),
		"transaction.state.log.num.partitions=10",
		"group.initial.rebalance.delay.ms=0",
		"auto.create.topics.enable=false",
		"delete.topic.enable=true",
		// Tests create many short-lived groups and topics; keep the broker small and quick.
		"log.segment.bytes=16777216",
		"log.retention.check.interval.ms=60000",
		"group.consumer.min.session.timeout.ms=6000",
		"group.min.session.timeout.ms=1000",
		"transaction.abort.timed.out.transaction.cleanup.interval.ms=5000",
		"transaction.remove.expired.transaction.cleanup.interval.ms=60000",
		"unclean.leader.election.enable=false",
		// A transactional produce that arrives while the previous transaction's
		// markers are still being written is retried on the broker after this
		// backoff (KAFKA-18654, transactions v2). The default, 20ms, adds 20ms
		// to every transaction that follows another one closely — to each
		// round trip of an aggregator under load; 1ms keeps it at the markers' pace.
		"add.partitions.to.txn.retry.backoff.ms=1",
		// Notice a dead node within seconds, not the default 9s/30s: local
		// clusters exist for fault tests.
		"broker.session.timeout.ms=3000",
		"broker.heartbeat.interval.ms=500",
		"replica.lag.time.max.ms=5000",
	}
	props = append(props, c.opts.Properties...)
	if err := os.WriteFile(n.configPath(), []byte(strings.Join(props, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.Dir, "log4j2.yaml"), log4jConfig, 0o644); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(n.dataDir(), "meta.properties")); err == nil {
		return nil // formatted before: reuse storage and data
	}
	clusterID, err := c.clusterID()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "java", c.javaArgs(n, "kafka.tools.StorageTool", "format",
		"--cluster-id", clusterID, "--config", n.configPath(), "--ignore-formatted")...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("kafkalocal: formatting node %d storage: %w\n%s", n.ID, err, out)
	}
	return nil
}

// clusterID returns the cluster's ID, made once and kept in Dir/cluster-id.
func (c *Cluster) clusterID() (string, error) {
	path := filepath.Join(c.opts.Dir, "cluster-id")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	// Like Kafka's own Uuid.randomUuid: 16 random bytes, URL-safe base64,
	// never starting with '-' (command-line parsers would take it for a flag).
	var id string
	for id == "" || id[0] == '-' {
		var raw [16]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return "", err
		}
		id = base64.RawURLEncoding.EncodeToString(raw[:])
	}
	return id, os.WriteFile(path, []byte(id+"\n"), 0o644)
}

// c1Only stops the JIT at C1: a JVM that starts faster and compiles less.
// C2 pays off only after a warm-up, for minutes on a small machine.
const c1Only = "-XX:TieredStopAtLevel=1"

// JITFlags are the JVM flags that choose the brokers' JIT: none for the
// JVM's default tiered compilation (Options.FullJIT).
func (c *Cluster) JITFlags() []string {
	if c.opts.FullJIT {
		return nil
	}
	return []string{c1Only}
}

// javaArgs runs main of the broker's jars on node n's heap and logging; a
// broker (kafka.Kafka) gets the JIT Options.FullJIT chooses and n's JMX
// port, any other main (a short-lived tool) C1 only.
func (c *Cluster) javaArgs(n *Node, main string, args ...string) []string {
	a := []string{
		fmt.Sprintf("-Xms%dm", c.opts.HeapMB/2), fmt.Sprintf("-Xmx%dm", c.opts.HeapMB),
		"-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
	}
	if main != brokerMain {
		a = append(a, c1Only)
	} else {
		a = append(a, c.JITFlags()...)
		if n.JMXPort > 0 {
			a = append(a, jmxFlags(n.JMXPort)...)
		}
	}
	a = append(a,
		"-Djava.awt.headless=true",
		"-Dkafka.logs.dir="+n.LogDir(),
		"-Dlog4j2.configurationFile="+filepath.Join(n.Dir, "log4j2.yaml"),
		"-cp", filepath.Join(c.libs, "*"),
		main,
	)
	return append(a, args...)
}

// brokerMain is the broker's main class.
const brokerMain = "kafka.Kafka"

func (c *Cluster) startNode(n *Node) error {
	if pid := readPid(n.pidPath()); pid > 0 && processAlive(pid) {
		if c.opts.Detach {
			n.pid = pid // started detached before: reuse it
			return nil
		}
		return fmt.Errorf("kafkalocal: node %d already runs as pid %d (see %s)", n.ID, pid, n.pidPath())
	}
	if err := portFree(n.Port); err != nil {
		return err
	}
	if err := portFree(n.ControllerPort); err != nil {
		return err
	}
	if n.JMXPort > 0 {
		if err := portFree(n.JMXPort); err != nil {
			return err
		}
	}
	out, err := os.OpenFile(filepath.Join(n.LogDir(), "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command("java", c.javaArgs(n, brokerMain, n.configPath())...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: c.opts.Detach, Setpgid: !c.opts.Detach}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("kafkalocal: starting node %d: %w", n.ID, err)
	}
	n.cmd, n.pid = cmd, cmd.Process.Pid
	n.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { // owned by the node: ends when the process does
		_ = cmd.Wait()
		close(exited)
	}(cmd, n.exited)
	return os.WriteFile(n.pidPath(), []byte(strconv.Itoa(n.pid)+"\n"), 0o644)
}

// WaitReady waits until the cluster answers metadata listing want brokers and
// can take a leader for a new topic partition.
func (c *Cluster) WaitReady(ctx context.Context, want int) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Seeds()...), kgo.RetryTimeout(time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var last error
	for {
		for _, n := range c.nodes {
			select {
			case <-n.exited:
				if n.cmd != nil {
					return fmt.Errorf("kafkalocal: node %d exited during start; see %s", n.ID, n.LogDir())
				}
			default:
			}
		}
		reqCtx, reqCancel := context.WithTimeout(ctx, 2*time.Second)
		brokers, err := adm.ListBrokers(reqCtx)
		reqCancel()
		if err == nil && len(brokers) >= want {
			return nil
		}
		if err != nil {
			last = err
		} else {
			last = fmt.Errorf("%d of %d brokers registered", len(brokers), want)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafkalocal: cluster at %v not ready after %s (%w); logs in %s", c.Seeds(), c.opts.StartTimeout, last, c.opts.Dir)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Kill sends SIGKILL to node id (1-based) and waits until it has exited.
func (c *Cluster) Kill(id int) error {
	n := c.nodes[id-1]
	return signalAndWait(n, syscall.SIGKILL, 30*time.Second)
}

// Restart starts nodes ids again after Kill or StopNode — all of them
// before waiting, since a cluster that lost its quorum needs them together —
// and waits until the cluster lists all its brokers.
func (c *Cluster) Restart(ctx context.Context, ids ...int) error {
	for _, id := range ids {
		if err := c.startNode(c.nodes[id-1]); err != nil {
			return err
		}
	}
	return c.WaitReady(ctx, len(c.nodes))
}

// StopNode stops node id cleanly (SIGTERM, then SIGKILL after 60s).
func (c *Cluster) StopNode(id int) error {
	return signalAndWait(c.nodes[id-1], syscall.SIGTERM, 60*time.Second)
}

// Stop stops every node cleanly and removes the pid files; data is kept.
// All nodes get SIGTERM at once: stopped one by one, the last node of a
// three-node cluster has no controller quorum left to confirm its controlled
// shutdown and would hang. A node still running after 20s gets SIGKILL.
func (c *Cluster) Stop() error {
	errs := make(chan error, len(c.nodes))
	for _, n := range c.nodes {
		go func(n *Node) { errs <- signalAndWait(n, syscall.SIGTERM, 20*time.Second) }(n)
	}
	var all []error
	for range c.nodes {
		all = append(all, <-errs)
	}
	if c.logFile != nil {
		c.logFile.Close()
	}
	return errors.Join(all...)
}

// StopDir stops the detached nodes of the cluster in dir (as started with
// Options.Detach), found through their pid files. Nodes not running are skipped.
func StopDir(dir string) error {
	matches, _ := filepath.Glob(filepath.Join(dir, "node*", "kafka.pid"))
	c := &Cluster{}
	for _, m := range matches {
		c.nodes = append(c.nodes, &Node{Dir: filepath.Dir(m), pid: readPid(m)})
	}
	return c.Stop()
}

// signalAndWait signals the node's process and waits for it to go, escalating
// to SIGKILL at the timeout.
func signalAndWait(n *Node, sig syscall.Signal, timeout time.Duration) error {
	if n.pid <= 0 {
		return nil // never started by us: leave its pid file alone
	}
	defer os.Remove(n.pidPath())
	if n.exited != nil {
		select {
		case <-n.exited:
			return nil // already gone; its pid may belong to someone else by now
		default:
		}
	} else if !processAlive(n.pid) {
		return nil
	}
	_ = syscall.Kill(n.pid, sig)
	gone := func() bool {
		if n.exited != nil {
			select {
			case <-n.exited:
				return true
			default:
				return false
			}
		}
		return !processAlive(n.pid)
	}
	deadline := time.Now().Add(timeout)
	for !gone() {
		if time.Now().After(deadline) {
			if sig == syscall.SIGKILL {
				return fmt.Errorf("kafkalocal: node pid %d did not exit after SIGKILL", n.pid)
			}
			_ = syscall.Kill(n.pid, syscall.SIGKILL)
			sig, deadline = syscall.SIGKILL, time.Now().Add(10*time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) == 0 || fields[0] != "Z"
}

func portFree(port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("kafkalocal: port %d is taken (another broker or service runs there): %w", port, err)
	}
	return l.Close()
}
