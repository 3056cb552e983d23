package main

import (
	"strings"
	"testing"

	"github.com/answerback/answerback/bench/loadgen"
)

// TestRequestsPer: a step's broker requests are the counters' growth per
// answered command, by API; a counter that appears during the step counts
// from zero, one that went down is left out, and an unknown count gives
// none.
func TestRequestsPer(t *testing.T) {
	before := map[string]float64{"Produce": 100, "Fetch": 50, "Metadata": 9}
	after := map[string]float64{"Produce": 400, "Fetch": 250, "Metadata": 9, "EndTxn": 30, "Heartbeat": 1}
	after["Metadata"] = 3 // a broker restarted
	got := requestsPer(before, after, 100)
	want := map[string]float64{"Produce": 3, "Fetch": 2, "EndTxn": 0.3, "Heartbeat": 0.01}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for api, n := range want {
		if got[api] != n {
			t.Errorf("%s: %v per command, want %v", api, got[api], n)
		}
	}
	for _, c := range []struct {
		before, after map[string]float64
		ok            int
	}{{nil, after, 100}, {before, nil, 100}, {before, after, 0}} {
		if got := requestsPer(c.before, c.after, c.ok); got != nil {
			t.Errorf("requestsPer(%v, %v, %d) = %v, want nil", c.before, c.after, c.ok, got)
		}
	}
}

// TestParsePromCounter: devstack's counter is read by label from the
// Prometheus text format; other metrics and comments are skipped.
func TestParsePromCounter(t *testing.T) {
	text := `# HELP answerback_embedded_broker_requests_total Requests…
# TYPE answerback_embedded_broker_requests_total counter
answerback_embedded_broker_requests_total{api="Fetch"} 1234
answerback_embedded_broker_requests_total{api="Produce"} 5.5e+06
answerback_embedded_broker_requests_total_other{api="Produce"} 7
answerback_dead_letters_total{stage="x",topic="y"} 3
`
	got, err := parsePromCounter(text, embeddedBrokerRequests, "api")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["Fetch"] != 1234 || got["Produce"] != 5.5e6 {
		t.Errorf("got %v", got)
	}
	for _, bad := range []string{"", "# nothing\n", embeddedBrokerRequests + `{api="Fetch"} many` + "\n", embeddedBrokerRequests + `{other="x"} 1` + "\n"} {
		if _, err := parsePromCounter(bad, embeddedBrokerRequests, "api"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestWarmedUp: the broker is warm once its CPU per command falls by less
// than the tolerance from one round to the next, or rises.
func TestWarmedUp(t *testing.T) {
	rounds := func(ms ...float64) []warmRound {
		var out []warmRound
		for _, m := range ms {
			out = append(out, warmRound{BrokerCPUMs: m})
		}
		return out
	}
	for _, c := range []struct {
		ms   []float64
		want bool
	}{
		{[]float64{2}, false},
		{[]float64{2, 1.5}, false},     // fell 25%
		{[]float64{2, 1.5, 1.4}, true}, // fell 7%
		{[]float64{1.4, 1.6}, true},    // rose
	} {
		if got := warmedUp(rounds(c.ms...), 0.1); got != c.want {
			t.Errorf("warmedUp(%v) = %v, want %v", c.ms, got, c.want)
		}
	}
}

// TestReportCostAndRequests: the report shows each process's CPU per
// command with the system's total (the load generator apart), the broker
// requests by API with the others summed, and how the broker was warmed.
func TestReportCostAndRequests(t *testing.T) {
	step := loadgen.Result{Rate: 100, OK: 500,
		Cost: map[string]loadgen.Cost{"gateway-1": {CPUSecondsPer1000: 0.5}, "kafka": {CPUSecondsPer1000: 1}, "postgres": {CPUSecondsPer1000: 0.25},
			loadgenComponent: {CPUSecondsPer1000: 0.2}},
		BrokerRequests: map[string]float64{"Produce": 3, "Fetch": 2.5, "EndTxn": 0.5, "ApiVersions": 0.01, "FindCoordinator": 0.02}}
	r := results{Kafka: "4.1.1", Series: []series{{System: nameAnswerback, Mix: "spread", Steps: []loadgen.Result{step}}},
		Broker: brokerInfo{JVM: `openjdk version "17"`, Plan: warmPlanFor(true), WarmedWith: nameAnswerback,
			WarmUp: []warmRound{{OK: 600, BrokerCPUMs: 2}, {OK: 600, BrokerCPUMs: 1.2}, {OK: 600, BrokerCPUMs: 1.15}}}}
	md := r.markdown()
	for _, want := range []string{
		"| offered /s | gateway-1 | kafka | postgres | system total | load generator |",
		"| 100 | 0.50 (0) | 1.00 (0) | 0.25 (0) | **1.75** | 0.20 (0) |",
		"(others: ApiVersions, FindCoordinator)",
		"| Answerback | 100 | 3.00 | 2.50 | 0.50 | · | · | · | · | · | · | · | 0.03 | **6.03** |",
		"## Broker",
		"JIT: the JVM's default",
		"| 3 | 600 | 0 | 0.0 | 1.150 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	// A run recorded before these figures renders without them.
	old := results{Series: []series{{System: nameAnswerback, Mix: "spread", Steps: []loadgen.Result{{Rate: 100}}}}}
	if md := old.markdown(); strings.Contains(md, "## Broker") || strings.Contains(md, "Broker requests per command") {
		t.Errorf("an old run's report shows figures it lacks:\n%s", md)
	}
}
