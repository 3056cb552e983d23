package testenv

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable": "postgres://u:p@127.0.0.1:5432/test_1?sslmode=disable",
		"postgresql://127.0.0.1/":                                "postgresql://127.0.0.1/test_1",
		"host=127.0.0.1 port=5432":                               "host=127.0.0.1 port=5432 dbname=test_1",
	}
	for in, want := range cases {
		got, err := withDatabase(in, "test_1")
		if err != nil || got != want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestRedactHidesPassword(t *testing.T) {
	t.Parallel()
	got := redact("postgres://user:s3cret@host/db")
	if strings.Contains(got, "s3cret") || !strings.Contains(got, "user") {
		t.Fatalf("redact = %q", got)
	}
}

func TestUniqueNameIsUnique(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		n := UniqueName("t")
		if seen[n] || !strings.HasPrefix(n, "t-") {
			t.Fatalf("UniqueName gave %q twice or without its prefix", n)
		}
		seen[n] = true
	}
}

// TestEmbeddedKafkaRoundTrip runs without any outside infrastructure: a
// record produced to a topic the harness created is consumed back.
func TestEmbeddedKafkaRoundTrip(t *testing.T) {
	t.Parallel()
	k := EmbeddedKafka(t)
	topic := k.Name("probe")
	k.CreateTopic(t, topic, 2, nil)
	ctx := Context(t, 30*time.Second)
	p := k.Client(t)
	if err := p.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("hello")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	c := k.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fetches := c.PollFetches(ctx)
	if errs := fetches.Errors(); len(errs) > 0 {
		t.Fatal(errs)
	}
	if recs := fetches.Records(); len(recs) != 1 || string(recs[0].Value) != "hello" {
		t.Fatalf("consumed %v, want one record 'hello'", recs)
	}
}
