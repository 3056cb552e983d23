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
