// Package topics names the Kafka topics of a domain and creates them.
package topics

import (
	"context"
	"errors"
	"fmt"
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

// Ensure creates the domain's topics with the given partition count and
// replication factor (-1: broker default) when missing. Commands and
// snapshots must have the same partition count: Ensure reports an error when
// existing topics disagree.
func Ensure(ctx context.Context, adm *kadm.Client, n Names, partitions int32, rf int16) error {
	compacted := map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}
	for _, t := range []struct {
		name    string
		configs map[string]*string
	}{{n.Commands, nil}, {n.Events, nil}, {n.Snapshots, compacted}, {n.Outcomes, nil}, {n.DLQ, nil}} {
		resp, err := adm.CreateTopic(ctx, partitions, rf, t.configs, t.name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", t.name, err)
		}
	}
	// Metadata of topics just created reaches every broker a moment later:
	// wait until both topics show their partitions before comparing them.
	for attempt := 0; ; attempt++ {
		details, err := adm.ListTopics(ctx, n.Commands, n.Snapshots)
		c, s := len(details[n.Commands].Partitions), len(details[n.Snapshots].Partitions)
		if err == nil && c > 0 && s > 0 {
			if c != s {
				return fmt.Errorf("topics %s (%d partitions) and %s (%d) must be co-partitioned", n.Commands, c, n.Snapshots, s)
			}
			return nil
		}
		if attempt == 100 {
			if err == nil {
				err = errors.New("no partitions listed")
			}
			return fmt.Errorf("topics %s and %s: no partition metadata after 10s (%w)", n.Commands, n.Snapshots, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
