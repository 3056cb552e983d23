package api_test

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"

	"github.com/answerback/answerback/api"
	"github.com/answerback/answerback/libs/domain/catalog"
	"github.com/answerback/answerback/libs/domain/orders"
	_ "github.com/answerback/answerback/libs/domain/problems" // defines the domain's problem types
	"github.com/answerback/answerback/libs/pipeline/dlq"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/problem"
	"github.com/answerback/answerback/libs/pipeline/registry"
	"github.com/answerback/answerback/libs/pipeline/topics"
)

// node is a mapping of the AsyncAPI document.
type node = map[string]any

// asyncAPI is asyncapi.yaml, parsed.
type asyncAPI struct {
	root node
}

func loadAsyncAPI(t *testing.T) asyncAPI {
	t.Helper()
	b, err := os.ReadFile("asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var root node
	if err := yaml.Unmarshal(b, &root); err != nil {
		t.Fatalf("asyncapi.yaml: %v", err)
	}
	if v := root["asyncapi"]; v != "3.0.0" {
		t.Fatalf("asyncapi.yaml: want AsyncAPI 3.0.0, got %v", v)
	}
	return asyncAPI{root: root}
}

// get follows keys from n, resolving local $refs ("#/a/b") on the way; nil
// when a key is missing.
func (d asyncAPI) get(n any, keys ...string) any {
	n = d.deref(n)
	for _, k := range keys {
		m, ok := n.(node)
		if !ok {
			return nil
		}
		n = d.deref(m[k])
	}
	return n
}

func (d asyncAPI) deref(n any) any {
	for range 10 {
		m, ok := n.(node)
		ref, isRef := m["$ref"].(string)
		if !ok || !isRef || !strings.HasPrefix(ref, "#/") {
			return n
		}
		n = d.root
		for _, k := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, _ := n.(node)
			n = m[k]
		}
	}
	return n
}

func (d asyncAPI) node(n any, keys ...string) node {
	m, _ := d.get(n, keys...).(node)
	return m
}

// channel returns the channel whose address is address.
func (d asyncAPI) channel(t *testing.T, address string) node {
	t.Helper()
	for _, c := range d.node(d.root, "channels") {
		if c := d.node(c); c["address"] == address {
			return c
		}
	}
	t.Fatalf("asyncapi.yaml has no channel with address %q", address)
	return nil
}

// message returns the message of channel c whose name is name.
func (d asyncAPI) message(t *testing.T, c node, name string) node {
	t.Helper()
	for _, m := range d.node(c, "messages") {
		if m := d.node(m); m["name"] == name {
			return m
		}
	}
	t.Fatalf("channel %v has no message named %q", c["address"], name)
	return nil
}

// headerNames returns the header names message m documents, and those it
// says are required.
func (d asyncAPI) headerNames(m node) (all, required []string) {
	h := d.node(m, "headers")
	for name := range d.node(h, "properties") {
		all = append(all, name)
	}
	for _, r := range d.get(h, "required").([]any) {
		required = append(required, r.(string))
	}
	slices.Sort(all)
	slices.Sort(required)
	return all, required
}

func (d asyncAPI) propertyNames(schema any) []string {
	var names []string
	for name := range d.node(schema, "properties") {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func headerKeys(r *kgo.Record) []string {
	var keys []string
	for _, h := range r.Headers {
		keys = append(keys, h.Key)
	}
	slices.Sort(keys)
	return keys
}

// jsonFields are the JSON member names of struct v's fields.
func jsonFields(v any) []string {
	var names []string
	typ := reflect.TypeOf(v)
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func sameNames(t *testing.T, what string, documented, code []string) {
	t.Helper()
	if !slices.Equal(documented, code) {
		t.Errorf("%s: asyncapi.yaml documents %v, the code has %v", what, documented, code)
	}
}

// TestAsyncAPIChannels: every topic the code names is a channel, with the
// configuration topics.Specs gives it, and no other channel exists.
func TestAsyncAPIChannels(t *testing.T) {
	d := loadAsyncAPI(t)
	want := map[string]bool{
		topics.ReplyTopic("", "{instance}"): true,
		topics.GatewayRegistry(""):          true,
	}
	for _, domain := range []string{orders.Name, catalog.Name} {
		for _, spec := range topics.For("", domain).Specs() {
			want[spec.Name] = true
			c := d.channel(t, spec.Name)
			got := d.node(c, "bindings", "kafka", "topicConfiguration")
			for k, v := range spec.Configs {
				documented := fmt.Sprint(got[k])
				if list, ok := got[k].([]any); ok {
					documented = strings.Trim(strings.ReplaceAll(fmt.Sprint(list), " ", ","), "[]")
				}
				if documented != v {
					t.Errorf("channel %s: topicConfiguration %s is %q, topics.Specs has %q", spec.Name, k, documented, v)
				}
			}
		}
	}
	for name, c := range d.node(d.root, "channels") {
		if addr := d.node(c)["address"]; !want[fmt.Sprint(addr)] {
			t.Errorf("channel %s (%v) is no topic of topics.For, ReplyTopic or GatewayRegistry", name, addr)
		}
	}
	if _, ok := d.node(d.channel(t, topics.ReplyTopic("", "{instance}")), "parameters")["instance"]; !ok {
		t.Error("the replies channel does not describe its instance parameter")
	}
}

// TestAsyncAPIEventMessages: each event type is a message of its domain's
// events channel whose payload is its committed schema file, and the events
// channels carry no other message.
func TestAsyncAPIEventMessages(t *testing.T) {
	d := loadAsyncAPI(t)
	perChannel := map[string]int{}
	for _, e := range api.Events {
		events := topics.For("", e.Domain).Events
		m := d.message(t, d.channel(t, events), e.Type)
		perChannel[events]++
		payload := d.node(m, "payload")
		if f := payload["schemaFormat"]; f != "application/schema+json;version=draft-2020-12" {
			t.Errorf("%s: payload schemaFormat %v, want JSON Schema draft 2020-12", e.Type, f)
		}
		ref, _ := d.node(payload, "schema")["$ref"].(string)
		if want := "./" + api.SchemaFile(e.Type); ref != want {
			t.Errorf("%s: payload refers to %q, want %q", e.Type, ref, want)
		}
		if _, err := os.Stat(ref); err != nil {
			t.Errorf("%s: %v", e.Type, err)
		}
		if key := d.node(m, "bindings", "kafka", "key"); key["type"] != "string" {
			t.Errorf("%s: no string record key in the Kafka message binding", e.Type)
		}
	}
	for events, n := range perChannel {
		if got := len(d.node(d.channel(t, events), "messages")); got != n {
			t.Errorf("channel %s has %d messages, api.Events %d event types", events, got, n)
		}
	}
}

// TestAsyncAPIHeaders compares the headers each message documents with the
// header names the code writes: records are built with the encoders
// (envelope.EncodeEvent and the others) rather than from a list kept here.
// A record with every optional field set must carry exactly the documented
// headers, one with none of them exactly the required ones.
func TestAsyncAPIHeaders(t *testing.T) {
	d := loadAsyncAPI(t)
	at := time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)
	meta := envelope.Meta{CommandID: "c-1", AggregateID: "order-1", ReplyTo: "replies.gw-1", Deadline: at.Add(5 * time.Second),
		Tenant: "default", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", IdempotencyKey: "k-1", ExpectedVersion: 3}
	bare := envelope.Meta{CommandID: "c-1", AggregateID: "order-1", ExpectedVersion: envelope.NoVersion}
	event := func(m envelope.Meta) *kgo.Record {
		return envelope.EncodeEvent("orders.events", "/answerback/orders", envelope.Event{
			Meta: m, Type: orders.EventItemAdded, Version: 2, Time: at, Index: 1, Count: 1, Data: []byte(`{}`)})
	}
	command := func(m envelope.Meta) *kgo.Record {
		return envelope.EncodeCommand("orders.commands", envelope.Command{Meta: m, Type: orders.CommandAddItem, Data: []byte(`{}`)})
	}
	reply := envelope.Reply{CommandID: "c-1", Outcome: envelope.Rejected, Version: 2, Body: []byte(`{}`)}
	dead := dlq.Record("orders.dlq", "aggregator", &kgo.Record{Topic: "orders.commands", Key: []byte("order-1")}, errors.New("bad"))
	dead.Partition, dead.Offset = 0, 7
	redriven := &kgo.Record{Topic: "orders.commands", Partition: 0, Offset: 9}

	for _, tc := range []struct {
		channel, message string
		full, minimal    *kgo.Record
	}{
		{"orders.events", orders.EventItemAdded, event(meta), event(bare)},
		{"orders.commands", orders.CommandAddItem, command(meta), command(bare)},
		{"replies.{instance}", "reply", envelope.EncodeReply("replies.gw-1", reply), envelope.EncodeReply("replies.gw-1", reply)},
		{"orders.outcomes", "outcome", envelope.EncodeOutcome("orders.outcomes", "order-1", "default", reply), envelope.EncodeOutcome("orders.outcomes", "order-1", "", reply)},
		{"orders.dlq", "dead-letter", dead, dead},
		{"orders.dlq", "redrive-marker", dlq.Marker(dead, redriven, at), dlq.Marker(dead, redriven, at)},
	} {
		t.Run(tc.channel+"/"+tc.message, func(t *testing.T) {
			all, required := d.headerNames(d.message(t, d.channel(t, tc.channel), tc.message))
			sameNames(t, "all headers", all, headerKeys(tc.full))
			if tc.channel == "orders.commands" {
				requiredOfCommands(t, required)
				return
			}
			sameNames(t, "required headers", required, headerKeys(tc.minimal))
		})
	}
}

// requiredOfCommands: commands come from any producer, so their required
// headers are those DecodeCommand cannot do without.
func requiredOfCommands(t *testing.T, required []string) {
	t.Helper()
	record := func(skip string) *kgo.Record {
		r := &kgo.Record{Key: []byte("order-1"), Value: []byte(`{}`)}
		for _, h := range required {
			if h != skip {
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: h, Value: []byte("x")})
			}
		}
		return r
	}
	if _, err := envelope.DecodeCommand(record("")); err != nil {
		t.Errorf("a command with only the documented required headers %v is refused: %v", required, err)
	}
	for _, h := range required {
		if _, err := envelope.DecodeCommand(record(h)); err == nil {
			t.Errorf("header %s is documented as required, but DecodeCommand accepts a command without it", h)
		}
	}
}

// TestAsyncAPIPayloads compares the documented payloads that the Go code
// defines with its JSON members: every command type an aggregate knows has a
// message whose payload has its data struct's members, and so do problems
// and registry entries.
func TestAsyncAPIPayloads(t *testing.T) {
	d := loadAsyncAPI(t)
	data := map[string]any{
		orders.CommandCreate: orders.Create{}, orders.CommandAddItem: orders.AddItem{}, orders.CommandRemoveItem: orders.RemoveItem{},
		orders.CommandSubmit: orders.Submit{}, orders.CommandCancel: orders.Cancel{}, catalog.CommandUpsert: catalog.Upsert{},
	}
	for domain, types := range map[string][]string{orders.Name: orders.Definition().CommandTypes, catalog.Name: catalog.Definition().CommandTypes} {
		c := d.channel(t, topics.For("", domain).Commands)
		if got := len(d.node(c, "messages")); got != len(types) {
			t.Errorf("channel %s has %d messages, the aggregate knows %d command types", c["address"], got, len(types))
		}
		for _, typ := range types {
			v, ok := data[typ]
			if !ok {
				t.Errorf("command type %s: add its data struct to this test", typ)
				continue
			}
			sameNames(t, typ, d.propertyNames(d.message(t, c, typ)["payload"]), jsonFields(v))
		}
	}
	sameNames(t, "problem", d.propertyNames(d.message(t, d.channel(t, "orders.outcomes"), "outcome")["payload"]), jsonFields(envelope.Problem{}))
	sameNames(t, "gateway entry", d.propertyNames(d.message(t, d.channel(t, topics.GatewayRegistry("")), "gateway-announcement")["payload"]), jsonFields(registry.Entry{}))
}

// TestAsyncAPIProblemTypes: the Problem schema's type enum is exactly the
// problem table's types that a command's rejection can carry.
func TestAsyncAPIProblemTypes(t *testing.T) {
	doc := loadAsyncAPI(t)
	raw, ok := doc.get(doc.root, "components", "schemas", "Problem", "properties", "type", "enum").([]any)
	if !ok {
		t.Fatal("asyncapi.yaml: Problem.type has no enum")
	}
	var listed, want []string
	for _, v := range raw {
		listed = append(listed, fmt.Sprint(v))
	}
	for _, typ := range problem.All() {
		if typ.Rejection {
			want = append(want, typ.Name)
		}
	}
	slices.Sort(listed)
	if !slices.Equal(listed, want) {
		t.Errorf("asyncapi.yaml lists the rejection problem types %v; the problem table has %v", listed, want)
	}
}
