package kafkalocal

import (
	"strings"
	"testing"
)

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		opts Options
		want string // substring of the error; "" means valid
	}{
		{Options{Dir: "/tmp/x"}, ""},
		{Options{Dir: "/tmp/x", Nodes: 3}, ""},
		{Options{}, "Dir is required"},
		{Options{Dir: "/tmp/x", Nodes: 2}, "Nodes must be 1 or 3"},
		{Options{Dir: "/tmp/x", Port: 65500}, "out of range"},
	}
	for _, c := range cases {
		c.opts.setDefaults()
		err := c.opts.validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", c.opts, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: error %v, want one containing %q", c.opts, err, c.want)
		}
	}
}

func TestVotersNameEveryNode(t *testing.T) {
	t.Parallel()
	c := &Cluster{}
	for i := 1; i <= 3; i++ {
		c.nodes = append(c.nodes, &Node{ID: i, ControllerPort: 9192 + i})
	}
	if got, want := c.voters(), "1@127.0.0.1:9193,2@127.0.0.1:9194,3@127.0.0.1:9195"; got != want {
		t.Fatalf("voters = %q, want %q", got, want)
	}
}

// TestParseRequestCounts: JmxTool's tab-separated report of the request
// meters is summed by API over versions; the time line is skipped, and so
// are the meters that count a Fetch again by who sent it.
func TestParseRequestCounts(t *testing.T) {
	t.Parallel()
	out := "time\t1733600000000\n" +
		"kafka.network:type=RequestMetrics,name=RequestsPerSec,request=Produce,version=11:Count\t120\n" +
		"kafka.network:type=RequestMetrics,name=RequestsPerSec,request=Produce,version=12:Count\t30\n" +
		"kafka.network:type=RequestMetrics,name=RequestsPerSec,request=Fetch,version=17:Count\t7.0\n" +
		"kafka.network:type=RequestMetrics,name=RequestsPerSec,request=FetchConsumer,version=17:Count\t6\n" +
		"kafka.network:type=RequestMetrics,name=RequestsPerSec,request=FetchFollower,version=17:Count\t1\n" +
		"kafka.network:type=RequestMetrics,name=RequestsPerSec,request=EndTxn,version=5:Count\t0\n"
	got, err := parseRequestCounts([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"Produce": 150, "Fetch": 7, "EndTxn": 0}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for api, n := range want {
		if got[api] != n {
			t.Errorf("%s: %v, want %v", api, got[api], n)
		}
	}
	for _, bad := range []string{"", "time\t1\n", "kafka.network:type=RequestMetrics,name=RequestsPerSec:Count\t1\n",
		"kafka.network:type=RequestMetrics,name=RequestsPerSec,request=Fetch,version=1:Count\tmany\n"} {
		if _, err := parseRequestCounts([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestBrokerJVMFlags: a broker stops its JIT at C1 unless Options.FullJIT,
// and opens JMX on loopback only when asked; tools always run on C1.
func TestBrokerJVMFlags(t *testing.T) {
	t.Parallel()
	n := &Node{ID: 1, Dir: "/tmp/n1", JMXPort: 9999}
	for _, full := range []bool{false, true} {
		c := &Cluster{opts: Options{HeapMB: 512, FullJIT: full}}
		broker := strings.Join(c.javaArgs(n, brokerMain, "server.properties"), " ")
		if got := strings.Contains(broker, c1Only); got == full {
			t.Errorf("FullJIT=%v: broker args %q", full, broker)
		}
		if !strings.Contains(broker, "-Dcom.sun.management.jmxremote.port=9999") || !strings.Contains(broker, "jmxremote.host=127.0.0.1") {
			t.Errorf("broker args without loopback JMX: %q", broker)
		}
		if tool := strings.Join(c.javaArgs(n, "kafka.tools.StorageTool"), " "); !strings.Contains(tool, c1Only) || strings.Contains(tool, "jmxremote") {
			t.Errorf("tool args %q", tool)
		}
	}
}
