package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// Every command answers --help with its usage and exit code 0.
func TestEveryCommandHasHelp(t *testing.T) {
	all := leaves((&App{}).root(), nil)
	if len(all) == 0 {
		t.Fatalf("found %d commands: %v", len(all), all)
	}
	for _, path := range all {
		r := abctl(t, "", append(path, "--help")...)
		if r.code != ExitOK || !strings.Contains(r.out, "Usage:") {
			t.Errorf("abctl %s --help: exit %d\n%s%s", strings.Join(path, " "), r.code, r.out, r.errOut)
		}
	}
}

// Bad usage exits 2, and under --json the error is JSON too.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"no-such-command"}, {"topics", "ensure", "--partitions", "0"}, {"topics", "ensure", "--no-such-flag"}} {
		r := abctl(t, "", append(args, "--json")...)
		if r.code != ExitUsage {
			t.Errorf("abctl %s: exit %d, want %d (%s)", strings.Join(args, " "), r.code, ExitUsage, r.errOut)
		}
		var e struct {
			Error    string `json:"error"`
			ExitCode int    `json:"exitCode"`
		}
		if err := json.Unmarshal([]byte(r.out), &e); err != nil || e.Error == "" || e.ExitCode != ExitUsage {
			t.Errorf("abctl %s --json: want a JSON error, got %q (%v)", strings.Join(args, " "), r.out, err)
		}
	}
}
