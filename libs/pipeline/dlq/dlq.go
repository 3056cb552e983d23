// Package dlq builds dead-letter records: a copy of a record that could not be
// processed, with headers naming the error and where the record came from, so
// that it can be inspected and redriven to its source topic after a fix.
//
// A dead-letter topic also holds redrive markers (see Marker): records
// without key or value that note a dead letter was redriven, so that a
// redrive is seen by every later reader and not repeated by mistake.
package dlq

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Header names on a dead-letter record.
const (
	HError           = "dlq-error"
	HSourceTopic     = "dlq-source-topic"
	HSourcePartition = "dlq-source-partition"
	HSourceOffset    = "dlq-source-offset"
	HFailedAt        = "dlq-failed-at"
	HStage           = "dlq-stage"
)

// Record returns the dead letter for r on topic: r's key, value and headers,
// plus the reason and origin. stage names who refused it (aggregator, projector).
func Record(topic, stage string, r *kgo.Record, reason error) *kgo.Record {
	hs := append([]kgo.RecordHeader(nil), r.Headers...)
	hs = append(hs,
		kgo.RecordHeader{Key: HError, Value: []byte(reason.Error())},
		kgo.RecordHeader{Key: HStage, Value: []byte(stage)},
		kgo.RecordHeader{Key: HSourceTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HSourcePartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
		kgo.RecordHeader{Key: HSourceOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
		kgo.RecordHeader{Key: HFailedAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
	)
	return &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: hs}
}

// Headers of redrives. Every header the dead-letter machinery adds starts
// with Prefix; Redrive drops them all, so a record redriven and dead-lettered
// again carries one set of them, plus HRedrivenFrom of its last redrive.
const (
	Prefix = "dlq-"
	// HRedrivenFrom, on a redriven record, names the dead letter it came
	// from: "topic/partition/offset".
	HRedrivenFrom = "dlq-redriven-from"
	// HRedriveOf marks a redrive marker: a record on a dead-letter topic,
	// without key or value, saying that the dead letter at "partition/offset"
	// of the same topic was redriven. A marker is not a dead letter.
	HRedriveOf = "dlq-redrive-of"
	// HRedrivenTo, on a marker, names the redriven record: "topic/partition/offset".
	HRedrivenTo = "dlq-redriven-to"
	// HRedrivenAt, on a marker, is when the redrive was produced (RFC 3339).
	HRedrivenAt = "dlq-redriven-at"
)

// Origin is what a dead letter's headers say about it.
type Origin struct {
	Stage     string
	Error     string
	Topic     string // source topic
	Partition int32  // source partition
	Offset    int64  // offset on the source partition
	FailedAt  time.Time
}

// OriginOf reads back what Record wrote on dead letter d. It fails when d
// has no valid source topic, partition or offset (a marker, or a record
// Record did not make): such a record cannot be redriven. A missing or
// malformed failed-at time is left zero.
func OriginOf(d *kgo.Record) (Origin, error) {
	o := Origin{Stage: header(d, HStage), Error: header(d, HError), Topic: header(d, HSourceTopic)}
	p, errP := strconv.ParseInt(header(d, HSourcePartition), 10, 32)
	off, errO := strconv.ParseInt(header(d, HSourceOffset), 10, 64)
	if o.Topic == "" || errP != nil || errO != nil || p < 0 || off < 0 {
		return o, fmt.Errorf("dlq: %s/%d/%d has no valid %s, %s and %s headers", d.Topic, d.Partition, d.Offset, HSourceTopic, HSourcePartition, HSourceOffset)
	}
	o.Partition, o.Offset = int32(p), off
	o.FailedAt, _ = time.Parse(time.RFC3339Nano, header(d, HFailedAt))
	return o, nil
}

// Redrive returns the record that sends dead letter d back where it came
// from: d's key and value, and its headers except those starting with
// Prefix, plus HRedrivenFrom naming d, to its source topic and partition.
// The partition is set on the record: produce it with a client using
// kgo.ManualPartitioner. It fails as OriginOf does.
func Redrive(d *kgo.Record) (*kgo.Record, error) {
	o, err := OriginOf(d)
	if err != nil {
		return nil, err
	}
	var hs []kgo.RecordHeader
	for _, h := range d.Headers {
		if !strings.HasPrefix(h.Key, Prefix) {
			hs = append(hs, h)
		}
	}
	hs = append(hs, kgo.RecordHeader{Key: HRedrivenFrom, Value: fmt.Appendf(nil, "%s/%d/%d", d.Topic, d.Partition, d.Offset)})
	return &kgo.Record{Topic: o.Topic, Partition: o.Partition, Key: d.Key, Value: d.Value, Headers: hs}, nil
}

// Marker returns the marker noting that dead letter d was redriven as r (r
// as produced, with its partition and offset) at time at. It goes to d's
// topic and partition, after d: a reader of the partition meets the dead
// letter first, then its markers. Produce it with kgo.ManualPartitioner.
func Marker(d, r *kgo.Record, at time.Time) *kgo.Record {
	return &kgo.Record{Topic: d.Topic, Partition: d.Partition, Headers: []kgo.RecordHeader{
		{Key: HRedriveOf, Value: fmt.Appendf(nil, "%d/%d", d.Partition, d.Offset)},
		{Key: HRedrivenTo, Value: fmt.Appendf(nil, "%s/%d/%d", r.Topic, r.Partition, r.Offset)},
		{Key: HRedrivenAt, Value: []byte(at.UTC().Format(time.RFC3339Nano))},
	}}
}

// MarkerOf reports whether m is a marker (it has HRedriveOf) and, if so,
// the partition and offset, on m's topic, of the dead letter it notes as
// redriven; -1, -1 when the header is malformed.
func MarkerOf(m *kgo.Record) (partition int32, offset int64, ok bool) {
	v, ok := lookup(m, HRedriveOf)
	if !ok {
		return 0, 0, false
	}
	ps, os, _ := strings.Cut(v, "/")
	p, errP := strconv.ParseInt(ps, 10, 32)
	o, errO := strconv.ParseInt(os, 10, 64)
	if errP != nil || errO != nil {
		return -1, -1, true
	}
	return int32(p), o, true
}

// header returns the value of r's last header key: the one Record added,
// should the original record have carried one of the same name.
func header(r *kgo.Record, key string) string {
	v, _ := lookup(r, key)
	return v
}

func lookup(r *kgo.Record, key string) (string, bool) {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == key {
			return string(r.Headers[i].Value), true
		}
	}
	return "", false
}
