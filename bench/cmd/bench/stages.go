package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/topics"
)

// stage is one leg of the round trip, measured between two timestamps every
// command leaves behind (all processes share this machine's clock).
type stage struct {
	Name string        `json:"name"`
	What string        `json:"what"`
	P50  time.Duration `json:"p50"`
	P90  time.Duration `json:"p90"`
}

// stageProbe is where one command's round trip spends its time, at no load:
// commands one at a time on one order.
type stageProbe struct {
	System   string  `json:"system"`
	Commands int     `json:"commands"`
	Stages   []stage `json:"stages"`
}

// probeStages sends n add-item commands one after the other and splits each
// round trip by the record timestamps it left: the command record (stamped
// by the gateway when it produced it), the event (by the aggregator inside
// its transaction) and the reply (by the projector after its PostgreSQL
// commit). The stages sum to the round trip.
func probeStages(ctx context.Context, sys *system, n int) (stageProbe, error) {
	if sys.stageSource == nil {
		return stageProbe{}, fmt.Errorf("%s: no records to split its round trip by", sys.name)
	}
	order := fmt.Sprintf("probe-%d", time.Now().UnixNano()%1e6)
	if err := sys.createOrder(ctx, order); err != nil {
		return stageProbe{}, err
	}
	type trip struct{ sent, answered time.Time }
	trips := map[string]trip{} // command ID → round trip
	for i := range n {
		body, _ := json.Marshal(map[string]any{"sku": skuName(i % skuCount), "quantity": 1})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, sys.url+"/v1/orders/"+order+"/items", strings.NewReader(string(body)))
		if err != nil {
			return stageProbe{}, err
		}
		req.Header.Set("Content-Type", "application/json")
		authorize(req, sys.token)
		sent := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return stageProbe{}, err
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answered := time.Now()
		var answer struct {
			CommandID string `json:"commandId"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &answer) != nil || answer.CommandID == "" {
			return stageProbe{}, fmt.Errorf("probe command %d: %d %s", i, resp.StatusCode, raw)
		}
		trips[answer.CommandID] = trip{sent, answered}
	}
	names := topics.For("", "orders")
	src := sys.stageSource
	stamps, err := commandStamps(ctx, src.brokers, slices.Collect(maps.Keys(trips)), names.Commands, names.Events, src.replyTopics)
	if err != nil {
		return stageProbe{}, err
	}
	legs := [4][]time.Duration{}
	for id, t := range trips {
		s, ok := stamps[id]
		if !ok || s.command.IsZero() || s.event.IsZero() || s.reply.IsZero() {
			return stageProbe{}, fmt.Errorf("probe command %s: records not all found (%+v)", id, s)
		}
		legs[0] = append(legs[0], s.command.Sub(t.sent))
		legs[1] = append(legs[1], s.event.Sub(s.command))
		legs[2] = append(legs[2], s.reply.Sub(s.event))
		legs[3] = append(legs[3], t.answered.Sub(s.reply))
	}
	what := [4][2]string{
		{"client → command record", "load balancer, gateway, produce of the command"},
		{"command → event", "aggregator: fetch of the command, restore, decide, produce of the event"},
		{"event → reply", "aggregator's commit (offsets, EndTxn, markers), projector's read_committed fetch, PostgreSQL transaction, produce of the reply"},
		{"reply → client", "gateway's fetch of the reply, answer through the load balancer"},
	}
	out := stageProbe{System: sys.name, Commands: len(trips)}
	for i, l := range legs {
		slices.Sort(l)
		out.Stages = append(out.Stages, stage{Name: what[i][0], What: what[i][1], P50: l[len(l)/2], P90: l[len(l)*9/10]})
	}
	return out, nil
}

// stamps are the timestamps a command left on the topics.
type stamps struct{ command, event, reply time.Time }

// commandStamps reads the commands, events and reply topics from the start
// until it has the stamps of every command in want (other commands' are
// returned too).
func commandStamps(ctx context.Context, brokers []string, want []string, commands, events string, replies []string) (map[string]*stamps, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(append([]string{commands, events}, replies...)...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out := map[string]*stamps{}
	complete := func() int {
		n := 0
		for _, id := range want {
			if s, ok := out[id]; ok && !s.command.IsZero() && !s.event.IsZero() && !s.reply.IsZero() {
				n++
			}
		}
		return n
	}
	for complete() < len(want) {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("reading the probe's records: %d of %d commands complete", complete(), len(want))
		}
		fetches.EachRecord(func(r *kgo.Record) {
			id := ""
			for _, h := range r.Headers {
				if h.Key == envelope.HCommandID || h.Key == envelope.CECorrelationID { // commands and replies; events
					id = string(h.Value)
				}
			}
			if id == "" {
				return
			}
			s := out[id]
			if s == nil {
				s = &stamps{}
				out[id] = s
			}
			switch r.Topic {
			case commands:
				s.command = r.Timestamp
			case events:
				if s.event.IsZero() { // the first event of the command
					s.event = r.Timestamp
				}
			default:
				s.reply = r.Timestamp
			}
		})
	}
	return out, nil
}
