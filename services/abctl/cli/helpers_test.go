package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/answerback/answerback/libs/testenv"
)

// result is one abctl run.
type result struct {
	code        int
	out, errOut string
}

// abctl runs the command line args in this process, with stdin in.
func abctl(t testing.TB, in string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code := Main(ctx, args, strings.NewReader(in), &out, &errOut)
	return result{code: code, out: out.String(), errOut: errOut.String()}
}

// target returns the global flags that point abctl at k and, when pg is
// not nil, at its database.
func target(k *testenv.Kafka, pg *testenv.Postgres) []string {
	args := []string{"--brokers", strings.Join(k.Seeds, ","), "--topic-prefix", k.Prefix + ".", "--timeout", "20s"}
	if pg != nil {
		args = append(args, "--database-url", pg.DSN)
	}
	return args
}

// jsonOf runs abctl with --json, wants exit code want, and decodes stdout into v.
func jsonOf(t testing.TB, want int, v any, args ...string) result {
	t.Helper()
	r := abctl(t, "", append(args, "--json")...)
	if r.code != want {
		t.Fatalf("abctl %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, want, r.out, r.errOut)
	}
	if err := json.Unmarshal([]byte(r.out), v); err != nil {
		t.Fatalf("abctl %s --json: output is not JSON: %v\n%s", strings.Join(args, " "), err, r.out)
	}
	return r
}

// leaves returns the runnable commands of the tree, as argument paths.
func leaves(c *cobra.Command, path []string) [][]string {
	var out [][]string
	if c.Runnable() && c.Name() != "help" {
		out = append(out, path)
	}
	for _, sub := range c.Commands() {
		if sub.Name() == "help" || sub.Name() == "completion" {
			continue
		}
		out = append(out, leaves(sub, append(append([]string(nil), path...), sub.Name()))...)
	}
	return out
}
