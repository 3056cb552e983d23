// Package registry is the roster of live gateway instances: each gateway
// announces itself on one compacted, one-partition topic
// (topics.GatewayRegistry), keyed by its instance ID, and heartbeats there
// until it stops. Operations tooling (`abctl replies gc`) reads the roster to
// tell a reply topic whose gateway is alive from one a crashed gateway left
// behind.
//
// Live and stale. An instance is live while its last heartbeat is recent
// (Entry.LiveAt); a stale heartbeat means the instance stopped heartbeating
// without saying goodbye — it crashed, was killed, or cannot reach Kafka —
// and its reply topic may be deleted. A clean stop writes a tombstone, so the
// instance leaves the roster at once. Entries of instances that crashed are
// removed by the topic's retention (seven days) once their heartbeats stop;
// a live instance's entry is rewritten every interval and never expires.
//
// Heartbeat times are the broker's: the registry topic stamps each record at
// append (message.timestamp.type=LogAppendTime) and Read takes that stamp as
// the heartbeat's time, so a gateway whose clock is off — ahead or behind by
// any amount — is judged by when its heartbeats reached Kafka. Only the
// reader's clock and the broker's must agree to well within the staleness
// bound. On a registry topic created before (CreateTime), the instance's own
// clock counts, as it is in the record.
//
// Ordering. An instance writes its first heartbeat before it creates its
// reply topic, so a reader that lists the reply topics first and reads the
// roster afterwards sees an entry for every topic of a starting instance.
// What remains is one race: an instance that restarts with the same ID while
// a reader decides to delete its (formerly stale) topic. Readers narrow it by
// reading the roster again just before they delete; it closes only if
// instance IDs are not reused.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/topics"
)

// Entry is one instance's latest announcement: the value of its record, as JSON.
type Entry struct {
	Instance    string    `json:"instance"`
	ReplyTopic  string    `json:"replyTopic"`
	Host        string    `json:"host"`
	PID         int       `json:"pid"`
	StartedAt   time.Time `json:"startedAt"`
	HeartbeatAt time.Time `json:"heartbeatAt"`
	// Interval between heartbeats (JSON: nanoseconds).
	Interval time.Duration `json:"interval"`
}

// LiveAt reports whether the instance counts as live at now: its last
// heartbeat is younger than staleAfter, and in any case younger than two of
// its own intervals — so a staleAfter shorter than an instance's interval
// cannot condemn it between two heartbeats. A heartbeat from the future
// (clocks apart) counts as live.
func (e Entry) LiveAt(now time.Time, staleAfter time.Duration) bool {
	return now.Sub(e.HeartbeatAt) < max(staleAfter, 2*e.Interval)
}

// Config configures Announce.
type Config struct {
	Brokers []string
	// Prefix is put before the registry topic's name ("" in production).
	Prefix string
	// Instance is the instance ID, the record key. Required.
	Instance string
	// ReplyTopic is the instance's reply topic. Required.
	ReplyTopic string
	// Interval between heartbeats; default 5s.
	Interval time.Duration
	// Clock stamps the entry's own times; default time.Now (tests skew it).
	Clock      func() time.Time
	Logger     *slog.Logger
	ClientOpts []kgo.Opt
}

// Validate reports every missing setting at once.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers are required"))
	}
	if c.Instance == "" {
		errs = append(errs, errors.New("instance ID is required"))
	}
	if c.ReplyTopic == "" {
		errs = append(errs, errors.New("reply topic is required"))
	}
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("negative interval %s", c.Interval))
	}
	return errors.Join(errs...)
}

// beatTimeout bounds one heartbeat's produce in the background loop.
const beatTimeout = 10 * time.Second

// topicConfigs: compacted (the latest entry per instance counts), tombstones
// kept an hour after compaction so readers catch them, segments rolled hourly
// so compaction gets to them, and entries silent for seven days deleted.
var topicConfigs = map[string]*string{
	"cleanup.policy":      kadm.StringPtr("compact,delete"),
	"retention.ms":        kadm.StringPtr(fmt.Sprint((7 * 24 * time.Hour).Milliseconds())),
	"delete.retention.ms": kadm.StringPtr(fmt.Sprint(time.Hour.Milliseconds())),
	"segment.ms":          kadm.StringPtr(fmt.Sprint(time.Hour.Milliseconds())),
	// Heartbeats are stamped by the broker, not the instance's clock.
	"message.timestamp.type": kadm.StringPtr("LogAppendTime"),
}

// Announcer heartbeats one instance into the registry until Close or Abandon.
type Announcer struct {
	cl    *kgo.Client
	log   *slog.Logger
	topic string
	entry Entry // HeartbeatAt is set per heartbeat on a copy
	clock func() time.Time

	stop context.CancelFunc
	done chan struct{} // closed when the heartbeat loop has ended
	once sync.Once
}

// Announce creates the registry topic when missing, writes the instance's
// first heartbeat and returns once Kafka has it — so the instance is in the
// registry before the caller creates its reply topic — and then heartbeats
// every Interval from a goroutine it owns, until Close or Abandon. A failing
// heartbeat is logged and retried at the next tick; it is not fatal (a long
// failure makes the instance stale to readers).
func Announce(ctx context.Context, cfg Config) (*Announcer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	if cfg.Interval == 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ProducerLinger(0),
	}, cfg.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	topic := topics.GatewayRegistry(cfg.Prefix)
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, topicConfigs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		cl.Close()
		return nil, fmt.Errorf("registry: create topic %s: %w", topic, err)
	}
	host, _ := os.Hostname()
	now := cfg.Clock()
	a := &Announcer{
		cl: cl, topic: topic, done: make(chan struct{}), clock: cfg.Clock,
		log: cfg.Logger.With("instance", cfg.Instance, "registry_topic", topic),
		entry: Entry{
			Instance: cfg.Instance, ReplyTopic: cfg.ReplyTopic, Host: host, PID: os.Getpid(),
			StartedAt: now, Interval: cfg.Interval,
		},
	}
	if err := a.beat(ctx, now); err != nil {
		cl.Close()
		return nil, fmt.Errorf("registry: first heartbeat of %s: %w", cfg.Instance, err)
	}
	loopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	a.stop = stop
	go a.loop(loopCtx, cfg.Interval) // owned by a: ended and awaited by Close and Abandon
	return a, nil
}

func (a *Announcer) loop(ctx context.Context, interval time.Duration) {
	defer close(a.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			beatCtx, cancel := context.WithTimeout(ctx, beatTimeout)
			if err := a.beat(beatCtx, a.clock()); err != nil && ctx.Err() == nil {
				a.log.Warn("gateway heartbeat failed", "err", err)
			}
			cancel()
		}
	}
}

// beat writes one heartbeat stamped at.
func (a *Announcer) beat(ctx context.Context, at time.Time) error {
	e := a.entry
	e.HeartbeatAt = at
	value, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return a.cl.ProduceSync(ctx, &kgo.Record{Topic: a.topic, Key: []byte(e.Instance), Value: value}).FirstErr()
}

// Close stops heartbeating and writes the instance's tombstone: a clean stop,
// after which readers no longer see the instance. Call it once the reply
// topic is gone. Only the first of Close and Abandon has an effect.
func (a *Announcer) Close(ctx context.Context) error {
	var err error
	a.once.Do(func() {
		a.stop()
		<-a.done
		err = a.cl.ProduceSync(ctx, &kgo.Record{Topic: a.topic, Key: []byte(a.entry.Instance)}).FirstErr()
		a.cl.Close()
	})
	if err != nil {
		return fmt.Errorf("registry: tombstone of %s: %w", a.entry.Instance, err)
	}
	return nil
}

// Abandon stops heartbeating without a tombstone, as a crash would: the entry
// stays and turns stale, and the instance's reply topic becomes fair game for
// garbage collection. For an unclean stop, where the reply topic may remain.
func (a *Announcer) Abandon() {
	a.once.Do(func() {
		a.stop()
		<-a.done
		a.cl.Close()
	})
}

// Read returns the registry under prefix as it is at the call: the latest
// entry of every instance, by instance ID, read from the topic's start up to
// the end offset listed first; a tombstone removes its instance. A missing or
// empty topic is an empty registry. Read reads with a short-lived client of
// its own made from cl's options, which must therefore not configure
// consuming. An entry that cannot be decoded is an error: a reader cannot
// tell whether its instance is live. Retriable fetch errors are retried;
// Read returns ctx's error when ctx ends before the end offset is reached.
func Read(ctx context.Context, cl *kgo.Client, prefix string) (map[string]Entry, error) {
	topic := topics.GatewayRegistry(prefix)
	// A client of its own: cl's cached metadata may predate the topic.
	reader, err := kgo.NewClient(append(cl.Opts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
	)...)
	if err != nil {
		return nil, fmt.Errorf("registry: reader: %w", err)
	}
	defer reader.Close()
	adm := kadm.NewClient(reader)
	entries := map[string]Entry{}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return entries, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry: end offset of %s: %w", topic, err)
	}
	end, ok := ends.Lookup(topic, 0)
	if !ok {
		return nil, fmt.Errorf("registry: no end offset for %s/0", topic)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("registry: start offset of %s: %w", topic, err)
	}
	start, _ := starts.Lookup(topic, 0)
	if start.Offset >= end.Offset {
		return entries, nil
	}
	latest := map[string]*kgo.Record{}
	for next := start.Offset; next < end.Offset; {
		fetches := reader.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("registry: reading %s: %w", topic, err)
		}
		var fetchErr error
		fetches.EachError(func(_ string, _ int32, err error) {
			if !kerr.IsRetriable(err) {
				fetchErr = err
			}
		})
		if fetchErr != nil {
			return nil, fmt.Errorf("registry: reading %s: %w", topic, fetchErr)
		}
		fetches.EachRecord(func(rec *kgo.Record) {
			next = rec.Offset + 1
			if rec.Offset >= end.Offset {
				return // written after the call
			}
			if rec.Value == nil {
				delete(latest, string(rec.Key))
			} else {
				latest[string(rec.Key)] = rec
			}
		})
	}
	for instance, rec := range latest {
		var e Entry
		if err := json.Unmarshal(rec.Value, &e); err != nil {
			return nil, fmt.Errorf("registry: unreadable entry of %q in %s: %w", instance, topic, err)
		}
		e.Instance = instance // the key is authoritative
		if rec.Attrs.TimestampType() == logAppendTime {
			e.HeartbeatAt = rec.Timestamp // the broker's clock, not the instance's
		}
		entries[instance] = e
	}
	return entries, nil
}

// logAppendTime is a record's timestamp type when the broker stamped it.
const logAppendTime = 1

// TopicSpec is the registry topic as Announce creates it (one partition),
// for deployments that declare their topics (Strimzi KafkaTopic).
func TopicSpec(prefix string) topics.Spec {
	configs := make(map[string]string, len(topicConfigs))
	for k, v := range topicConfigs {
		configs[k] = *v
	}
	return topics.Spec{Name: topics.GatewayRegistry(prefix), Configs: configs}
}
