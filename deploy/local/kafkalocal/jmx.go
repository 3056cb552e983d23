package kafkalocal

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// jmxFlags open a JVM's JMX agent on 127.0.0.1:port (registry and RMI
// server on the same port), without authentication or TLS: for tools on
// this machine only.
func jmxFlags(port int) []string {
	p := strconv.Itoa(port)
	return []string{
		"-Dcom.sun.management.jmxremote",
		"-Dcom.sun.management.jmxremote.port=" + p,
		"-Dcom.sun.management.jmxremote.rmi.port=" + p,
		"-Dcom.sun.management.jmxremote.host=127.0.0.1",
		"-Dcom.sun.management.jmxremote.authenticate=false",
		"-Dcom.sun.management.jmxremote.ssl=false",
		"-Djava.rmi.server.hostname=127.0.0.1",
	}
}

// requestMeters are the brokers' meters of requests served, one per API
// and version (request=<API>,version=<v>).
const requestMeters = "kafka.network:type=RequestMetrics,name=RequestsPerSec,*"

// fetchSplits are meters that count a Fetch a second time, by who sent it
// (a consumer or a follower replica): left out of the counts by API.
var fetchSplits = map[string]bool{"FetchConsumer": true, "FetchFollower": true}

// RequestCounts returns how many requests the cluster's brokers have served
// since they started, by API name ("Produce", "Fetch", "EndTxn"…), summed
// over nodes and API versions (each request once: a Fetch is not counted
// again as FetchConsumer or FetchFollower): the Count of each broker's
// kafka.network:type=RequestMetrics,name=RequestsPerSec meters, read over
// JMX with Kafka's JmxTool. It needs Options.JMXPort. Each call starts a JVM
// per node: about a second of CPU, outside the brokers.
func (c *Cluster) RequestCounts(ctx context.Context) (map[string]float64, error) {
	if c.tools == "" {
		return nil, errors.New("kafkalocal: RequestCounts needs Options.JMXPort")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	sum := map[string]float64{}
	for _, n := range c.nodes {
		url := fmt.Sprintf("service:jmx:rmi:///jndi/rmi://127.0.0.1:%d/jmxrmi", n.JMXPort)
		cmd := exec.CommandContext(ctx, "java", c1Only, "-XX:+UseSerialGC", "-Xmx64m", "-Djava.awt.headless=true",
			"-cp", filepath.Join(c.tools, "*"), "org.apache.kafka.tools.JmxTool",
			"--jmx-url", url, "--object-name", requestMeters, "--attributes", "Count",
			"--one-time", "true", "--report-format", "tsv")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("kafkalocal: JmxTool on node %d (%s): %w\n%s", n.ID, url, err, lastLines(stderr.String(), 10))
		}
		counts, err := parseRequestCounts(out)
		if err != nil {
			return nil, fmt.Errorf("kafkalocal: JmxTool on node %d: %w\n%s", n.ID, err, lastLines(stderr.String(), 10))
		}
		for api, v := range counts {
			sum[api] += v
		}
	}
	return sum, nil
}

// parseRequestCounts reads JmxTool's tab-separated report of the request
// meters' Count attributes — a "time" line, then lines such as
//
//	kafka.network:type=RequestMetrics,name=RequestsPerSec,request=Produce,version=11:Count	1234
//
// — and sums the counts by request (API) over versions, fetchSplits left
// out.
func parseRequestCounts(out []byte) (map[string]float64, error) {
	counts := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), "\t")
		if !ok || key == "time" {
			continue
		}
		name, ok := strings.CutSuffix(key, ":Count")
		if !ok {
			return nil, fmt.Errorf("unexpected attribute in %q", key)
		}
		_, props, _ := strings.Cut(name, ":")
		api := ""
		for _, prop := range strings.Split(props, ",") {
			if v, ok := strings.CutPrefix(prop, "request="); ok {
				api = v
			}
		}
		if api == "" {
			return nil, fmt.Errorf("no request= in %q", key)
		}
		if fetchSplits[api] {
			continue
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("count of %q: %w", key, err)
		}
		counts[api] += n
	}
	if len(counts) == 0 {
		return nil, errors.New("no request meter in JmxTool's output")
	}
	return counts, sc.Err()
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
