package integration

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/answerback/answerback/libs/testenv"
)

// Environment variables of TestConsoleInBrowser; `make test-integration`
// installs both and sets them.
const (
	// EnvChromium is the browser's executable (default /usr/bin/chromium,
	// Debian's chromium package).
	EnvChromium = "CHROMIUM"
	// EnvBrowserModules is the node_modules that holds playwright-core as
	// browser/package-lock.json pins it (default browser/node_modules,
	// installed by `npm ci` in integration/browser).
	EnvBrowserModules = "BROWSER_MODULES"
)

// TestConsoleInBrowser drives the gateway's web console in headless Chromium
// (browser/console.test.mjs, through playwright-core) on a stack of two
// gateways: one page on each, on the same order; a change made on one page
// must show on the other within 1 s through the live stream; each page's
// request log names its own gateway; a refused command shows its problem.
// Screenshots of both pages go to browser/artifacts/.
//
// It does not run in parallel with the other tests, so that the time it
// measures is the pipeline's and not the 2-core machine's queue. Kafka is
// kfake: the browser's part does not depend on the broker.
func TestConsoleInBrowser(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.Unavailable(t, "the console's browser test needs Node.js 20+ (node on PATH)")
	}
	if major := nodeMajor(node); major < 20 {
		testenv.Unavailable(t, "the console's browser test needs Node.js 20+; %s is version %d", node, major)
	}
	chromium := envOr(EnvChromium, "/usr/bin/chromium")
	if info, err := os.Stat(chromium); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
		testenv.Unavailable(t, "the console's browser test needs Chromium at %s (set %s; Debian: apt-get install chromium; make test-integration installs it)", chromium, EnvChromium)
	}
	modules, err := filepath.Abs(envOr(EnvBrowserModules, filepath.Join("browser", "node_modules")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(modules, "playwright-core", "package.json")); err != nil {
		testenv.Unavailable(t, "the console's browser test needs playwright-core in %s (set %s; `npm ci` in integration/browser; make test-integration runs it)", modules, EnvBrowserModules)
	}
	artifacts, err := filepath.Abs(filepath.Join("browser", "artifacts"))
	if err != nil {
		t.Fatal(err)
	}

	s := startStack(t, testenv.EmbeddedKafka(t), stackOptions{gateways: 2})
	s.seedCatalog(loadCatalog)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("browser", "console.test.mjs"), s.gateways[0], s.gateways[1], artifacts)
	cmd.Env = append(os.Environ(), EnvChromium+"="+chromium, EnvBrowserModules+"="+modules, "CONSOLE_TOKEN="+s.token)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout // one stream, in order
	if err := cmd.Start(); err != nil {
		t.Fatalf("node: %v", err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		t.Log(sc.Text()) // the script's steps, measures and screenshot paths
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the console failed in the browser (%v); the failure and screenshots are above", err)
	}
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// nodeMajor returns the major version of the Node.js at path, 0 when it
// cannot tell.
func nodeMajor(path string) int {
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return 0
	}
	major, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), ".")
	n, _ := strconv.Atoi(major)
	return n
}
