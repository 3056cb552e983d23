// Package topics names the Kafka topics of a domain and creates them.
package topics

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Names of a domain's topics. Prefix (may be empty) lets tests and tenants of
// one cluster keep apart.
type Names struct {
	Commands  string // commands, keyed by aggregate ID
	Events    string // events (CloudEvents), keyed by aggregate ID
	Snapshots string // compacted, co-partitioned with Commands: latest state per aggregate
	Outcomes  string // rejections, keyed by aggregate ID: recorded by the projector for command status
	DLQ       string // records that could not be processed, with the reason in headers
}

// For returns the topic names of domain under prefix ("" or e.g. "t-1234.").
func For(prefix, domain string) Names {
	return Names{
		Commands:  prefix + domain + ".commands",
		Events:    prefix + domain + ".events",
		Snapshots: prefix + domain + ".snapshots",
		Outcomes:  prefix + domain + ".outcomes",
		DLQ:       prefix + domain + ".dlq",
	}
}

// ReplyTopic is the reply topic of a gateway instance.
func ReplyTopic(prefix, instance string) string { return prefix + "replies." + instance }

// GatewayRegistry is the compacted topic on which gateway instances announce
// themselves (see package registry).
func GatewayRegistry(prefix string) string { return prefix + "answerback.gateways" }

// Spec is what a topic must look like: its configuration beside the
// partition count and replication factor given to Ensure.
type Spec struct {
	Name    string
	Configs map[string]string
}

// Specs are the domain's topics with their configuration: events and
// outcomes are kept forever (downstream services and view rebuilds read them
// from the start), snapshots are compacted (only the latest state per
// aggregate counts), commands and dead letters keep the broker's retention.
func (n Names) Specs() []Spec {
	forever := map[string]string{"retention.ms": "-1", "retention.bytes": "-1"}
	return []Spec{
		{Name: n.Commands},
		{Name: n.Events, Configs: forever},
		{Name: n.Snapshots, Configs: map[string]string{"cleanup.policy": "compact"}},
		{Name: n.Outcomes, Configs: forever},
		{Name: n.DLQ},
	}
}

// State is what Ensure found and did for one topic.
type State struct {
	Topic      string            `json:"topic"`
	Created    bool              `json:"created"`
	Partitions int               `json:"partitions"`
	Replicas   int               `json:"replicas"`
	Configs    map[string]string `json:"configs"`           // the spec's keys, as the broker now has them
	Altered    map[string]string `json:"altered,omitempty"` // keys that differed and were set to the spec: key → value before
}

// Ensure creates the domain's topics that are missing, with the given
// partition count and replication factor (-1: broker default) and their
// Spec's configuration, and sets the configuration of existing ones that
// drifted from it. It never changes an existing topic's partitions: it
// reports an error when commands and snapshots are not co-partitioned.
// Services call it at start; `abctl topics ensure` prints what it returns.
func Ensure(ctx context.Context, adm *kadm.Client, n Names, partitions int32, rf int16) ([]State, error) {
	specs := n.Specs()
	states := make([]State, len(specs))
	for i, spec := range specs {
		states[i] = State{Topic: spec.Name, Configs: map[string]string{}}
		configs := map[string]*string{}
		for k, v := range spec.Configs {
			configs[k] = kadm.StringPtr(v)
		}
		resp, err := adm.CreateTopic(ctx, partitions, rf, configs, spec.Name)
		if err == nil {
			err = resp.Err
		}
		switch {
		case err == nil:
			states[i].Created = true
		case !errors.Is(err, kerr.TopicAlreadyExists):
			return nil, fmt.Errorf("create topic %s: %w", spec.Name, err)
		}
	}
	if err := alignConfigs(ctx, adm, specs, states); err != nil {
		return nil, err
	}
	// Metadata of topics just created reaches every broker a moment later:
	// wait until every topic shows its partitions before comparing them.
	names := make([]string, len(specs))
	for i, spec := range specs {
		names[i] = spec.Name
	}
	for attempt := 0; ; attempt++ {
		details, err := adm.ListTopics(ctx, names...)
		listed := err == nil
		for i := range states {
			d := details[states[i].Topic]
			states[i].Partitions = len(d.Partitions)
			if states[i].Partitions == 0 {
				listed = false
				continue
			}
			states[i].Replicas = len(d.Partitions[0].Replicas)
		}
		if listed {
			if c, s := states[0].Partitions, states[2].Partitions; c != s {
				return states, fmt.Errorf("topics %s (%d partitions) and %s (%d) must be co-partitioned", n.Commands, c, n.Snapshots, s)
			}
			return states, nil
		}
		if attempt == 100 {
			if err == nil {
				err = errors.New("no partitions listed")
			}
			return nil, fmt.Errorf("topics of %s: no partition metadata after 10s (%w)", n.Commands, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// alignConfigs reads the configuration of every topic that existed and sets
// the keys that differ from its spec; topics just created have theirs.
func alignConfigs(ctx context.Context, adm *kadm.Client, specs []Spec, states []State) error {
	var names []string
	for i, spec := range specs {
		if states[i].Created {
			maps.Copy(states[i].Configs, spec.Configs)
		} else {
			names = append(names, spec.Name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	described, err := adm.DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return fmt.Errorf("describe topic configs: %w", err)
	}
	for i, spec := range specs {
		if states[i].Created {
			continue
		}
		rc, err := described.On(spec.Name, nil)
		if err == nil {
			err = rc.Err
		}
		if err != nil {
			return fmt.Errorf("describe configs of %s: %w", spec.Name, err)
		}
		have := map[string]string{}
		for _, c := range rc.Configs {
			have[c.Key] = c.MaybeValue()
		}
		var alter []kadm.AlterConfig
		for k, want := range spec.Configs {
			states[i].Configs[k] = have[k]
			if have[k] == want {
				continue
			}
			if states[i].Altered == nil {
				states[i].Altered = map[string]string{}
			}
			states[i].Altered[k] = have[k]
			states[i].Configs[k] = want
			alter = append(alter, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: kadm.StringPtr(want)})
		}
		if len(alter) == 0 {
			continue
		}
		resps, err := adm.AlterTopicConfigs(ctx, alter, spec.Name)
		if err == nil {
			var resp kadm.AlterConfigsResponse
			if resp, err = resps.On(spec.Name, nil); err == nil {
				err = resp.Err
			}
		}
		if err != nil {
			return fmt.Errorf("set the configuration of %s: %w", spec.Name, err)
		}
	}
	return nil
}
