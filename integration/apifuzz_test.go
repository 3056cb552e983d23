package integration

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/answerback/answerback/libs/testenv"
)

// EnvSchemathesis names the schemathesis executable (make test installs it
// into a git-ignored virtualenv under .cache and sets this).
const EnvSchemathesis = "SCHEMATHESIS"

// TestAPIFuzzSchemathesis drives a gateway on real Kafka and PostgreSQL with
// schemathesis, an external fuzzer that generates requests — valid and
// invalid — from the gateway's OpenAPI document and checks every response
// against it: no 5xx, every status, header, media type and body as
// documented, bad input refused with 4xx.
func TestAPIFuzzSchemathesis(t *testing.T) {
	t.Parallel()
	bin := os.Getenv(EnvSchemathesis)
	if bin == "" {
		bin, _ = exec.LookPath("schemathesis")
	}
	if bin == "" {
		testenv.Unavailable(t, "schemathesis: set %s or put it on PATH (make test installs it)", EnvSchemathesis)
	}
	k := testenv.RealKafka(t)
	s := startStackWithOrder(t, k, stackOptions{gateways: 1, replyWait: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--config-file", "testdata/schemathesis.toml", "run", s.gateways[0]+"/openapi.json",
		"--checks", "all",
		"--header", "Authorization: Bearer "+s.token,
		// A live view never ends: schemathesis would wait for it until its
		// timeout. TestLiveView* test the stream.
		"--exclude-operation-id", "streamOrder",
		"--max-examples", "40",
		"--seed", "1",
		"--workers", "2",
		"--request-timeout", "20",
		"--no-color",
	)
	out, err := cmd.CombinedOutput()
	t.Logf("schemathesis output:\n%s", out)
	if err != nil {
		t.Fatalf("schemathesis found responses that break the OpenAPI document or 5xx: %v", err)
	}
}
