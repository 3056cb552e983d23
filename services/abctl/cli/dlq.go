package cli

import (
	"bufio"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	refdomain "github.com/answerback/answerback/libs/domain"
	"github.com/answerback/answerback/libs/pipeline/dlq"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/topics"
)

func init() { register(newDLQCmd) }

func newDLQCmd(a *App) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect, redrive and purge dead letters",
		Long: `dlq works on the domains' dead-letter topics (<prefix><domain>.dlq): the
records the aggregator or the projector could not process, each with the
reason and the position it came from. A dead letter is named
TOPIC/PARTITION/OFFSET, as list prints it.

Each command reads the topics from their start up to their end at the call,
read_committed, after waiting (at most --timeout) for transactions open at
the call to end. A redrive writes a marker on the dead-letter topic, so that
list shows the record redriven and a second redrive of it is refused unless
--force. Markers are not dead letters.`,
	}
	cmd.AddCommand(newDLQListCmd(a), newDLQShowCmd(a), newDLQRedriveCmd(a), newDLQPurgeCmd(a))
	return cmd
}

func newDLQListCmd(a *App) *cobra.Command {
	var domain string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List dead letters with their reasons and whether they were redriven",
		Long: `list prints one line per dead letter of the domain's dead-letter topic
(every domain's by default) in topic, partition and offset order: where it
is, the stage that refused it, where it came from, when, why (shortened; in
full with --json), and whether it was redriven. --json also lists each
redrive. --limit N prints the first N; "total" counts them all.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usageErrorf("--limit must not be negative")
			}
			parts, err := dlqTopics(cmd.Context(), a, domain)
			if err != nil {
				return err
			}
			letters, err := scanDLQ(cmd.Context(), a, parts)
			if err != nil {
				return err
			}
			total := len(letters)
			if limit > 0 && total > limit {
				letters = letters[:limit]
			}
			return a.Print(map[string]any{"deadLetters": letters, "total": total}, func(t *Table) {
				t.Row("DEAD LETTER", "STAGE", "SOURCE", "FAILED AT", "REDRIVEN", "ERROR")
				for _, d := range letters {
					redriven := "no"
					if n := len(d.Redrives); n > 0 {
						redriven = fmt.Sprintf("yes (%d)", n)
					}
					t.Row(d.id(), d.Stage, d.source(), dlqTime(d.FailedAt), redriven, dlqShorten(d.Error, 60))
				}
				t.Line("%d of %d dead letters", len(letters), total)
			})
		},
	}
	cmd.Flags().StringVar(&domain, "domain", "", "the domain whose dead letters to list ("+strings.Join(refdomain.Names, ", ")+"); default all")
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most N dead letters (0: all)")
	return cmd
}

func newDLQShowCmd(a *App) *cobra.Command {
	var pos dlqPosition
	cmd := &cobra.Command{
		Use:   "show TOPIC/PARTITION/OFFSET",
		Short: "Show one dead letter: its reason, origin, redrives, headers, key and value",
		Long: `show prints everything about one dead letter, named as TOPIC/PARTITION/OFFSET
or with --topic, --partition and --offset. Under --json a value that is JSON
is printed as JSON (valueFormat "json"), other text as a string ("text"),
other bytes in base64 ("base64"). Exits 3 when there is no dead letter there.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			flags := cmd.Flags().Changed("topic") || cmd.Flags().Changed("partition") || cmd.Flags().Changed("offset")
			switch {
			case len(args) == 1 && !flags:
				p, err := parseDLQPosition(args[0])
				if err != nil {
					return err
				}
				pos = p
			case len(args) == 0 && pos.Topic != "" && cmd.Flags().Changed("partition") && cmd.Flags().Changed("offset"):
			default:
				return usageErrorf("name the dead letter as TOPIC/PARTITION/OFFSET, or with --topic, --partition and --offset")
			}
			found, err := findDeadLetters(cmd.Context(), a, []dlqPosition{pos})
			if err != nil {
				return err
			}
			d := found[0]
			s := shownLetter{deadLetter: d, Key: string(d.rec.Key), Headers: []shownHeader{}}
			for _, h := range d.rec.Headers {
				s.Headers = append(s.Headers, shownHeader{Key: h.Key, Value: string(h.Value)})
			}
			s.Value, s.ValueFormat = dlqValue(d.rec.Value)
			return a.Print(s, func(t *Table) {
				t.Row("DEAD LETTER", d.id())
				t.Row("STAGE", d.Stage)
				t.Row("SOURCE", d.source())
				t.Row("FAILED AT", dlqTime(d.FailedAt))
				t.Row("ERROR", strings.Join(strings.Fields(d.Error), " "))
				if len(d.Redrives) == 0 {
					t.Row("REDRIVEN", "no")
				}
				for _, r := range d.Redrives {
					t.Row("REDRIVEN", fmt.Sprintf("to %s at %s (marker %s)", r.To, r.At, r.Marker))
				}
				t.Row("KEY", s.Key)
				t.Line("HEADERS")
				for _, h := range s.Headers {
					t.Row("  "+h.Key, h.Value)
				}
				t.Line("VALUE (%s, %d bytes)", s.ValueFormat, len(d.rec.Value))
				switch s.ValueFormat {
				case "json":
					var b strings.Builder
					enc := json.NewEncoder(&b)
					enc.SetIndent("", "  ")
					_ = enc.Encode(s.Value)
					t.Line("%s", strings.TrimRight(b.String(), "\n"))
				case "text":
					t.Line("%s", d.rec.Value)
				case "base64":
					t.Line("%s", base64.StdEncoding.EncodeToString(d.rec.Value))
				}
			})
		},
	}
	cmd.Flags().StringVar(&pos.Topic, "topic", "", "the dead-letter topic")
	cmd.Flags().Int32Var(&pos.Partition, "partition", 0, "the partition")
	cmd.Flags().Int64Var(&pos.Offset, "offset", 0, "the offset")
	return cmd
}

// shownLetter is what show prints under --json.
type shownLetter struct {
	*deadLetter
	Key         string          `json:"key"`
	Headers     []shownHeader   `json:"headers"`
	Value       json.RawMessage `json:"value"`
	ValueFormat string          `json:"valueFormat"` // json, text, base64 or none
}

type shownHeader struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// dlqValue renders a record value for JSON output: as is when it is JSON,
// else as a JSON string of its text or, when it is not UTF-8, of its base64.
func dlqValue(v []byte) (json.RawMessage, string) {
	switch {
	case v == nil:
		return json.RawMessage("null"), "none"
	case json.Valid(v):
		return v, "json"
	case utf8.Valid(v):
		b, _ := json.Marshal(string(v))
		return b, "text"
	}
	b, _ := json.Marshal(base64.StdEncoding.EncodeToString(v))
	return b, "base64"
}

// redriveItem is what redrive did, or would do, with one dead letter.
type redriveItem struct {
	DeadLetter string `json:"deadLetter"`
	Source     string `json:"source"` // the topic/partition it is sent back to
	// Status is redriven, would-redrive (--dry-run), skipped (redriven
	// before), refused (it names no source) or failed (the produce failed).
	Status string `json:"status"`
	To     string `json:"to,omitempty"` // the redriven record: topic/partition/offset
	Reason string `json:"reason,omitempty"`

	d        *deadLetter
	rec      *kgo.Record
	unmarked bool // redriven, but its marker was not written
}

func newDLQRedriveCmd(a *App) *cobra.Command {
	var records []string
	var all, force, dryRun bool
	var stage, sourceTopic string
	cmd := &cobra.Command{
		Use:   "redrive (--record TOPIC/PARTITION/OFFSET ... | --all [--stage S] [--source-topic T])",
		Short: "Send dead letters back to their source topic and partition after a fix",
		Long: `redrive produces each chosen dead letter's original key, value and headers
(without the dlq-* headers) to its source topic and partition, with the
header dlq-redriven-from naming the dead letter; then it writes a marker on
the dead-letter topic that notes the redrive. The consumers must be
idempotent (the pipeline's are): a redriven event lands after the events
that followed it, and may have been redriven before.

A dead letter redriven before is skipped unless --force: with --record the
command then exits 4 after redriving the others; with --all (every dead
letter, or those of --stage and --source-topic) it is only reported. A crash
between the produce and the marker leaves the redrive unmarked: running it
again sends the record twice. --dry-run reports what would be sent.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if all == (len(records) > 0) {
				return usageErrorf("name the dead letters with --record, or pass --all")
			}
			if !all && (stage != "" || sourceTopic != "") {
				return usageErrorf("--stage and --source-topic filter --all")
			}
			var letters []*deadLetter
			if all {
				parts, err := dlqTopics(ctx, a, "")
				if err != nil {
					return err
				}
				if letters, err = scanDLQ(ctx, a, parts); err != nil {
					return err
				}
				letters = slices.DeleteFunc(letters, func(d *deadLetter) bool {
					return (stage != "" && d.Stage != stage) || (sourceTopic != "" && d.SourceTopic != sourceTopic)
				})
			} else {
				var positions []dlqPosition
				for _, r := range records {
					p, err := parseDLQPosition(r)
					if err != nil {
						return err
					}
					positions = append(positions, p)
				}
				var err error
				if letters, err = findDeadLetters(ctx, a, positions); err != nil {
					return err
				}
			}
			items := make([]*redriveItem, 0, len(letters))
			var send []*redriveItem
			for _, d := range letters {
				it := &redriveItem{DeadLetter: d.id(), Source: fmt.Sprintf("%s/%d", d.SourceTopic, d.SourcePartition), d: d}
				items = append(items, it)
				switch {
				case d.invalid != nil:
					it.Status, it.Reason = "refused", d.invalid.Error()
				case len(d.Redrives) > 0 && !force:
					last := d.Redrives[len(d.Redrives)-1]
					it.Status, it.Reason = "skipped", fmt.Sprintf("redriven before, to %s at %s; --force sends it again", last.To, last.At)
				default:
					it.rec, _ = dlq.Redrive(d.rec)
					it.Status = "would-redrive"
					send = append(send, it)
				}
			}
			if !dryRun && len(send) > 0 {
				if err := sendRedrives(ctx, a, send); err != nil {
					return err
				}
			}
			count := map[string]int{}
			for _, it := range items {
				count[it.Status]++
			}
			if err := a.Print(map[string]any{"redrives": items, "dryRun": dryRun}, func(t *Table) {
				t.Row("DEAD LETTER", "STATUS", "TO", "REASON")
				for _, it := range items {
					t.Row(it.DeadLetter, it.Status, cmp.Or(it.To, it.Source), dlqShorten(it.Reason, 100))
				}
				t.Line("%d redriven, %d would be, %d skipped, %d refused, %d failed",
					count["redriven"], count["would-redrive"], count["skipped"], count["refused"], count["failed"])
			}); err != nil {
				return err
			}
			switch {
			case count["failed"] > 0:
				return fmt.Errorf("%d of %d dead letters not redriven: the produce failed", count["failed"], len(items))
			case slices.ContainsFunc(items, func(it *redriveItem) bool { return it.unmarked }):
				return errors.New("redriven, but a marker was not written: a later redrive of it will not be refused")
			case count["refused"] > 0 || (!all && count["skipped"] > 0):
				return withCode(ExitRefused, fmt.Errorf("not redriven: %d skipped as redriven before (--force sends them again), %d refused", count["skipped"], count["refused"]))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&records, "record", nil, "a dead letter to redrive, as TOPIC/PARTITION/OFFSET (repeatable)")
	f.BoolVar(&all, "all", false, "redrive every dead letter not redriven before (see --stage, --source-topic)")
	f.StringVar(&stage, "stage", "", "with --all: only the dead letters of this stage (aggregator, projector)")
	f.StringVar(&sourceTopic, "source-topic", "", "with --all: only the dead letters from this topic")
	f.BoolVar(&force, "force", false, "redrive also dead letters redriven before")
	f.BoolVar(&dryRun, "dry-run", false, "report what would be sent; send nothing")
	return cmd
}

// sendRedrives produces the items' records to their source partitions, then
// a marker for each one produced; it sets each item's status and reason.
// It fails only when no producer can be made: failed produces are reported
// on their items.
func sendRedrives(ctx context.Context, a *App, items []*redriveItem) error {
	cl, err := a.Kafka()
	if err != nil {
		return err
	}
	pr, err := kgo.NewClient(append(cl.Opts(), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordDeliveryTimeout(a.Timeout))...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	defer pr.Close()
	byRecord := map[*kgo.Record]*redriveItem{}
	var recs, markers []*kgo.Record
	for _, it := range items {
		byRecord[it.rec] = it
		recs = append(recs, it.rec)
	}
	now := time.Now()
	for _, res := range pr.ProduceSync(ctx, recs...) {
		it := byRecord[res.Record]
		if res.Err != nil {
			it.Status, it.Reason = "failed", res.Err.Error()
			continue
		}
		it.Status, it.To = "redriven", dlqPosition{res.Record.Topic, res.Record.Partition, res.Record.Offset}.String()
		m := dlq.Marker(it.d.rec, res.Record, now)
		byRecord[m] = it
		markers = append(markers, m)
	}
	for _, res := range pr.ProduceSync(ctx, markers...) {
		if res.Err != nil {
			it := byRecord[res.Record]
			it.unmarked, it.Reason = true, "marker not written (a later redrive will not be refused): "+res.Err.Error()
		}
	}
	return nil
}

// purgeItem is one partition's purge.
type purgeItem struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	From      int64  `json:"from"`   // the partition's start offset before
	Before    int64  `json:"before"` // records below it are deleted
	// LowWatermark is the start offset after the purge; -1 in a refused one.
	LowWatermark int64  `json:"lowWatermark"`
	Error        string `json:"error,omitempty"`
}

func newDLQPurgeCmd(a *App) *cobra.Command {
	var domain string
	var before []string
	var all, yes bool
	cmd := &cobra.Command{
		Use:   "purge (--all [--domain D] | --before TOPIC/PARTITION/OFFSET ...) [--yes]",
		Short: "Delete dead letters for good",
		Long: `purge deletes records of the dead-letter topics for good (Kafka
DeleteRecords): with --all, every record of the domain's dead-letter topic
(every domain's by default) up to its end at the call; with --before
TOPIC/PARTITION/OFFSET (repeatable), the records of that partition below
OFFSET. Redrive markers go with the records they are among.

Without --yes it asks on stdin, topic by topic, for the topic's name; any
other answer, or no input, deletes nothing and exits 4.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if all == (len(before) > 0) {
				return usageErrorf("pass --all, or --before TOPIC/PARTITION/OFFSET")
			}
			if domain != "" && !all {
				return usageErrorf("--domain goes with --all; --before names the topic")
			}
			parts, err := dlqTopics(ctx, a, domain)
			if err != nil {
				return err
			}
			limits := map[dlqPartition]int64{}
			if !all {
				named := map[string][]int32{}
				for _, b := range before {
					p, err := parseDLQPosition(b)
					if err != nil {
						return err
					}
					if err := checkDLQPosition(parts, p); err != nil {
						return err
					}
					k := dlqPartition{p.Topic, p.Partition}
					if _, ok := limits[k]; !ok {
						named[p.Topic] = append(named[p.Topic], p.Partition)
					}
					limits[k] = max(limits[k], p.Offset)
				}
				parts = named
			}
			spans, err := offsetSpans(ctx, a, parts)
			if err != nil {
				return err
			}
			plan := []*purgeItem{}
			for k, s := range spans {
				end := s.end
				if !all {
					if end = limits[k]; end > s.end {
						return usageErrorf("--before %s/%d/%d: the partition ends at %d", k.topic, k.partition, end, s.end)
					}
				}
				if end > s.start {
					plan = append(plan, &purgeItem{Topic: k.topic, Partition: k.partition, From: s.start, Before: end, LowWatermark: -1})
				}
			}
			slices.SortFunc(plan, func(x, y *purgeItem) int {
				return cmp.Or(cmp.Compare(x.Topic, y.Topic), cmp.Compare(x.Partition, y.Partition))
			})
			if len(plan) > 0 && !yes {
				if err := confirmPurge(a, plan); err != nil {
					return err
				}
			}
			failed := 0
			if len(plan) > 0 {
				adm, err := a.Admin()
				if err != nil {
					return err
				}
				offs := kadm.Offsets{}
				for _, it := range plan {
					offs.Add(kadm.Offset{Topic: it.Topic, Partition: it.Partition, At: it.Before, LeaderEpoch: -1})
				}
				resps, err := adm.DeleteRecords(ctx, offs)
				for _, it := range plan {
					r, ok := resps.Lookup(it.Topic, it.Partition)
					switch {
					case ok && r.Err == nil:
						it.LowWatermark = r.LowWatermark
					case ok:
						it.Error = r.Err.Error()
					case err != nil:
						it.Error = err.Error()
					default:
						it.Error = "no answer from the broker"
					}
					if it.Error != "" {
						failed++
					}
				}
			}
			if err := a.Print(map[string]any{"purged": plan}, func(t *Table) {
				t.Row("TOPIC", "PARTITION", "DELETED OFFSETS", "RESULT")
				for _, it := range plan {
					t.Row(it.Topic, it.Partition, fmt.Sprintf("%d..%d", it.From, it.Before-1), cmp.Or(it.Error, "deleted"))
				}
				t.Line("%d partitions purged, %d failed", len(plan)-failed, failed)
			}); err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("purge failed on %d of %d partitions", failed, len(plan))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&domain, "domain", "", "with --all: the domain whose dead letters to purge ("+strings.Join(refdomain.Names, ", ")+"); default all")
	f.BoolVar(&all, "all", false, "delete every record up to the end of the topics at the call")
	f.StringArrayVar(&before, "before", nil, "delete the records of TOPIC/PARTITION below OFFSET, given as TOPIC/PARTITION/OFFSET (repeatable)")
	f.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	return cmd
}

// confirmPurge asks, for each topic of plan, to type the topic's name on
// stdin; any other line, or the end of the input, refuses the whole purge.
func confirmPurge(a *App, plan []*purgeItem) error {
	if a.In == nil {
		return withCode(ExitRefused, errors.New("purge not confirmed: no input; nothing deleted (pass --yes)"))
	}
	in := bufio.NewReader(a.In)
	n := map[string]int64{}
	for _, it := range plan {
		n[it.Topic] += it.Before - it.From
	}
	for _, topic := range slices.Sorted(maps.Keys(n)) {
		fmt.Fprintf(a.Err, "purge deletes %d records of %s for good; type the topic name to confirm: ", n[topic], topic)
		line, _ := in.ReadString('\n')
		if strings.TrimSpace(line) != topic {
			fmt.Fprintln(a.Err)
			return withCode(ExitRefused, fmt.Errorf("purge of %s not confirmed: nothing deleted (type the topic name, or pass --yes)", topic))
		}
	}
	return nil
}

// deadLetter is one dead letter as list, show and redrive report it.
type deadLetter struct {
	Topic           string        `json:"topic"`
	Partition       int32         `json:"partition"`
	Offset          int64         `json:"offset"`
	Stage           string        `json:"stage"`
	SourceTopic     string        `json:"sourceTopic"`
	SourcePartition int32         `json:"sourcePartition"`
	SourceOffset    int64         `json:"sourceOffset"`
	FailedAt        time.Time     `json:"failedAt,omitzero"`
	Error           string        `json:"error"`
	Redriven        bool          `json:"redriven"`
	Redrives        []redriveMark `json:"redrives,omitempty"`

	rec     *kgo.Record
	invalid error // why it cannot be redriven: it names no source
}

// redriveMark is one redrive of a dead letter, as its marker notes it.
type redriveMark struct {
	Marker string `json:"marker"` // the marker: topic/partition/offset
	To     string `json:"to"`     // the redriven record: topic/partition/offset
	At     string `json:"at"`
}

func (d *deadLetter) id() string { return dlqPosition{d.Topic, d.Partition, d.Offset}.String() }

func (d *deadLetter) source() string {
	if d.invalid != nil {
		return "-"
	}
	return dlqPosition{d.SourceTopic, d.SourcePartition, d.SourceOffset}.String()
}

// dlqPosition names a record: TOPIC/PARTITION/OFFSET.
type dlqPosition struct {
	Topic     string
	Partition int32
	Offset    int64
}

func (p dlqPosition) String() string { return fmt.Sprintf("%s/%d/%d", p.Topic, p.Partition, p.Offset) }

// parseDLQPosition reads TOPIC/PARTITION/OFFSET (topic names hold no '/').
func parseDLQPosition(s string) (dlqPosition, error) {
	parts := strings.Split(s, "/")
	if len(parts) == 3 && parts[0] != "" {
		p, errP := strconv.ParseInt(parts[1], 10, 32)
		o, errO := strconv.ParseInt(parts[2], 10, 64)
		if errP == nil && errO == nil && p >= 0 && o >= 0 {
			return dlqPosition{parts[0], int32(p), o}, nil
		}
	}
	return dlqPosition{}, usageErrorf("%q: want TOPIC/PARTITION/OFFSET", s)
}

type dlqPartition struct {
	topic     string
	partition int32
}

// dlqTopics returns the dead-letter topics of domain ("": of every domain)
// that exist, with their partitions. When none exists, it is not found.
func dlqTopics(ctx context.Context, a *App, domain string) (map[string][]int32, error) {
	domains := refdomain.Names
	if domain != "" {
		if !slices.Contains(domains, domain) {
			return nil, usageErrorf("--domain %q: want one of %s", domain, strings.Join(domains, ", "))
		}
		domains = []string{domain}
	}
	var names []string
	for _, d := range domains {
		names = append(names, topics.For(a.Prefix, d).DLQ)
	}
	adm, err := a.Admin()
	if err != nil {
		return nil, err
	}
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("listing topics: %w", err)
	}
	parts := map[string][]int32{}
	for _, n := range names {
		d, ok := details[n]
		switch {
		case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
		case d.Err != nil:
			return nil, fmt.Errorf("topic %s: %w", n, d.Err)
		default:
			parts[n] = d.Partitions.Numbers()
		}
	}
	if len(parts) == 0 {
		return nil, withCode(ExitNotFound, fmt.Errorf("no dead-letter topic: %s not found", strings.Join(names, ", ")))
	}
	return parts, nil
}

// checkDLQPosition refuses a position outside the dead-letter topics: a
// topic that is not one is bad usage, a partition it lacks is not found.
func checkDLQPosition(parts map[string][]int32, p dlqPosition) error {
	ps, ok := parts[p.Topic]
	if !ok {
		return usageErrorf("%s: %s is not a dead-letter topic (%s)", p, p.Topic, strings.Join(slices.Sorted(maps.Keys(parts)), ", "))
	}
	if !slices.Contains(ps, p.Partition) {
		return withCode(ExitNotFound, fmt.Errorf("%s: %s has no partition %d", p, p.Topic, p.Partition))
	}
	return nil
}

// findDeadLetters returns the dead letters at positions, once each, in
// order. When one is not there (or is a marker), it is not found.
func findDeadLetters(ctx context.Context, a *App, positions []dlqPosition) ([]*deadLetter, error) {
	all, err := dlqTopics(ctx, a, "")
	if err != nil {
		return nil, err
	}
	parts := map[string][]int32{}
	for _, p := range positions {
		if err := checkDLQPosition(all, p); err != nil {
			return nil, err
		}
		if !slices.Contains(parts[p.Topic], p.Partition) {
			parts[p.Topic] = append(parts[p.Topic], p.Partition)
		}
	}
	letters, err := scanDLQ(ctx, a, parts)
	if err != nil {
		return nil, err
	}
	var found []*deadLetter
	var missing []string
	for _, p := range positions {
		i := slices.IndexFunc(letters, func(d *deadLetter) bool {
			return d.Topic == p.Topic && d.Partition == p.Partition && d.Offset == p.Offset
		})
		switch {
		case i < 0:
			missing = append(missing, p.String())
		case !slices.Contains(found, letters[i]):
			found = append(found, letters[i])
		}
	}
	if len(missing) > 0 {
		return nil, withCode(ExitNotFound, fmt.Errorf("no dead letter at %s", strings.Join(missing, ", ")))
	}
	return found, nil
}

// dlqSpan is the offsets of a partition to read: [start, end).
type dlqSpan struct{ start, end int64 }

// offsetSpans returns each partition's start offset and its end at the
// call: its last stable offset, once that has reached the high watermark of
// the call, so that every record below it is committed or aborted and the
// end is the same for read_committed readers after us. It waits for that at
// most --timeout, and fails when a transaction stays open longer.
func offsetSpans(ctx context.Context, a *App, parts map[string][]int32) (map[dlqPartition]dlqSpan, error) {
	adm, err := a.Admin()
	if err != nil {
		return nil, err
	}
	names := slices.Sorted(maps.Keys(parts))
	lookup := func(l kadm.ListedOffsets, t string, p int32) (int64, error) {
		o, ok := l.Lookup(t, p)
		switch {
		case !ok:
			return 0, fmt.Errorf("no offsets for %s/%d", t, p)
		case o.Err != nil:
			return 0, fmt.Errorf("offsets of %s/%d: %w", t, p, o.Err)
		}
		return o.Offset, nil
	}
	hw, err := adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("listing end offsets: %w", err)
	}
	spans := map[dlqPartition]dlqSpan{}
	deadline := time.Now().Add(a.Timeout)
	for {
		lso, err := adm.ListCommittedOffsets(ctx, names...)
		if err != nil {
			return nil, fmt.Errorf("listing stable offsets: %w", err)
		}
		var open error
		for t, ps := range parts {
			for _, p := range ps {
				h, err := lookup(hw, t, p)
				if err != nil {
					return nil, err
				}
				l, err := lookup(lso, t, p)
				if err != nil {
					return nil, err
				}
				if l < h {
					open = fmt.Errorf("a transaction stays open on %s/%d (stable offset %d, end %d)", t, p, l, h)
				}
				spans[dlqPartition{t, p}] = dlqSpan{end: l}
			}
		}
		if open == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, open
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	starts, err := adm.ListStartOffsets(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("listing start offsets: %w", err)
	}
	for k, s := range spans {
		if s.start, err = lookup(starts, k.topic, k.partition); err != nil {
			return nil, err
		}
		spans[k] = s
	}
	return spans, nil
}

// scanDLQ reads parts from their start to their end at the call (see
// offsetSpans), read_committed, and returns their dead letters in topic,
// partition and offset order, each with the redrives its markers note.
// It holds them all in memory. A read that makes no progress for --timeout
// fails.
func scanDLQ(ctx context.Context, a *App, parts map[string][]int32) ([]*deadLetter, error) {
	spans, err := offsetSpans(ctx, a, parts)
	if err != nil {
		return nil, err
	}
	consume := map[string]map[int32]kgo.Offset{}
	left := map[dlqPartition]int64{} // partitions not read to their end yet → end
	for k, s := range spans {
		if s.start < s.end {
			if consume[k.topic] == nil {
				consume[k.topic] = map[int32]kgo.Offset{}
			}
			consume[k.topic][k.partition] = kgo.NewOffset().At(s.start)
			left[k] = s.end
		}
	}
	letters := []*deadLetter{}
	marks := map[dlqPosition][]redriveMark{}
	if len(left) > 0 {
		cl, err := a.Kafka()
		if err != nil {
			return nil, err
		}
		rd, err := kgo.NewClient(append(cl.Opts(),
			kgo.ConsumePartitions(consume),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			// Control records are kept to see where a partition ends when
			// its last record is a transaction marker.
			kgo.KeepControlRecords(),
		)...)
		if err != nil {
			return nil, fmt.Errorf("kafka: %w", err)
		}
		defer rd.Close()
		for len(left) > 0 {
			pollCtx, cancel := context.WithTimeout(ctx, a.Timeout)
			fetches := rd.PollFetches(pollCtx)
			cancel()
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if err := fetches.Err0(); err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					err = fmt.Errorf("nothing read for %s", a.Timeout)
				}
				return nil, fmt.Errorf("reading dead letters: %w", err)
			}
			fetches.EachRecord(func(r *kgo.Record) {
				k := dlqPartition{r.Topic, r.Partition}
				end, ok := left[k]
				if !ok || r.Offset >= end {
					return
				}
				if r.Offset == end-1 {
					delete(left, k)
				}
				if r.Attrs.IsControl() {
					return
				}
				if p, o, ok := dlq.MarkerOf(r); ok {
					to, _ := envelope.Header(r, dlq.HRedrivenTo)
					at, _ := envelope.Header(r, dlq.HRedrivenAt)
					of := dlqPosition{r.Topic, p, o}
					marks[of] = append(marks[of], redriveMark{Marker: dlqPosition{r.Topic, r.Partition, r.Offset}.String(), To: to, At: at})
					return
				}
				letters = append(letters, newDeadLetter(r))
			})
		}
	}
	for _, d := range letters {
		d.Redrives = marks[dlqPosition{d.Topic, d.Partition, d.Offset}]
		d.Redriven = len(d.Redrives) > 0
	}
	slices.SortFunc(letters, func(x, y *deadLetter) int {
		return cmp.Or(cmp.Compare(x.Topic, y.Topic), cmp.Compare(x.Partition, y.Partition), cmp.Compare(x.Offset, y.Offset))
	})
	return letters, nil
}

func newDeadLetter(r *kgo.Record) *deadLetter {
	o, err := dlq.OriginOf(r)
	return &deadLetter{
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
		Stage: o.Stage, SourceTopic: o.Topic, SourcePartition: o.Partition, SourceOffset: o.Offset,
		FailedAt: o.FailedAt, Error: o.Error,
		rec: r, invalid: err,
	}
}

// dlqShorten puts s on one line of at most n characters.
func dlqShorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func dlqTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
