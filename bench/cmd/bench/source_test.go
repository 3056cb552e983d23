package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/answerback/answerback/libs/testenv"
)

// TestSourceState: the report names the commit it measured, and says when
// the product's code had uncommitted changes.
func TestSourceState(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testenv.Unavailable(t, "git is not installed: the report's commit is read with git")
	}
	root := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("git", append([]string{"-C", root, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	if err := os.MkdirAll(filepath.Join(root, "libs"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(root, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("libs/a.go", "package a\n")
	git("add", ".")
	git("commit", "-q", "-m", "first")
	head := git("rev-parse", "--short=12", "HEAD")
	if got := sourceState(context.Background(), root); got != head {
		t.Errorf("clean checkout: %q, want %q", got, head)
	}
	write("README.md", "docs only\n") // outside the product's code: not named
	write("libs/a.go", "package a // changed\n")
	if got, want := sourceState(context.Background(), root), head+" and uncommitted changes to libs/a.go"; got != want {
		t.Errorf("changed checkout: %q, want %q", got, want)
	}
}
