package catalog

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/answerback/answerback/libs/pipeline/aggregate"
	"github.com/answerback/answerback/libs/pipeline/envelope"
)

func command(typ, sku, data string) envelope.Command {
	return envelope.Command{
		Meta: envelope.Meta{CommandID: "c-1", AggregateID: sku, ExpectedVersion: envelope.NoVersion},
		Type: typ,
		Data: json.RawMessage(data),
	}
}

func TestDecide(t *testing.T) {
	existing := &Item{SKU: "sku-1", Name: "Old", UnitPrice: 1, Currency: "EUR", Stock: 1, MaxPerOrder: 1, Active: true}
	tests := []struct {
		name    string
		state   *Item
		cmd     envelope.Command
		problem string // "" when an event is expected
		want    Item
	}{
		{
			name: "create with default currency",
			cmd:  command(CommandUpsert, "sku-1", `{"name":"Widget","unitPrice":250,"stock":10,"maxPerOrder":3,"active":true}`),
			want: Item{SKU: "sku-1", Name: "Widget", UnitPrice: 250, Currency: "EUR", Stock: 10, MaxPerOrder: 3, Active: true},
		},
		{
			name:  "replace existing with explicit currency, inactive",
			state: existing,
			cmd:   command(CommandUpsert, "sku-1", `{"name":"Widget","unitPrice":0,"currency":"USD","stock":0,"maxPerOrder":1,"active":false}`),
			want:  Item{SKU: "sku-1", Name: "Widget", UnitPrice: 0, Currency: "USD", Stock: 0, MaxPerOrder: 1},
		},
		{
			name: "every bound reached",
			cmd:  command(CommandUpsert, "s", `{"name":"W","unitPrice":1000000000000,"stock":1000000000000,"maxPerOrder":1000000000000}`),
			want: Item{SKU: "s", Name: "W", UnitPrice: MaxUnitPrice, Currency: "EUR", Stock: MaxCount, MaxPerOrder: MaxCount},
		},
		{
			name: "name of exactly 200 characters",
			cmd:  command(CommandUpsert, "s", `{"name":"`+strings.Repeat("é", 200)+`","unitPrice":1,"stock":1,"maxPerOrder":1}`),
			want: Item{SKU: "s", Name: strings.Repeat("é", 200), UnitPrice: 1, Currency: "EUR", Stock: 1, MaxPerOrder: 1},
		},
		{name: "unknown command", cmd: command("catalog.delete", "sku-1", `{}`), problem: ProblemUnknownCommand},
		{name: "malformed data", cmd: command(CommandUpsert, "sku-1", `{"name":`), problem: ProblemInvalidItem},
		{name: "wrong field type", cmd: command(CommandUpsert, "sku-1", `{"name":"W","unitPrice":"1","stock":1,"maxPerOrder":1}`), problem: ProblemInvalidItem},
		{name: "empty data", cmd: command(CommandUpsert, "sku-1", ``), problem: ProblemInvalidItem},
		{name: "empty name", cmd: command(CommandUpsert, "sku-1", `{"name":"","unitPrice":1,"stock":1,"maxPerOrder":1}`), problem: ProblemInvalidItem},
		{name: "blank name", cmd: command(CommandUpsert, "sku-1", `{"name":"  ","unitPrice":1,"stock":1,"maxPerOrder":1}`), problem: ProblemInvalidItem},
		{name: "name too long", cmd: command(CommandUpsert, "sku-1", `{"name":"`+strings.Repeat("x", 201)+`","unitPrice":1,"stock":1,"maxPerOrder":1}`), problem: ProblemInvalidItem},
		{name: "negative price", cmd: command(CommandUpsert, "sku-1", `{"name":"W","unitPrice":-1,"stock":1,"maxPerOrder":1}`), problem: ProblemInvalidItem},
		{name: "negative stock", cmd: command(CommandUpsert, "sku-1", `{"name":"W","unitPrice":1,"stock":-1,"maxPerOrder":1}`), problem: ProblemInvalidItem},
		{name: "price over the bound", cmd: command(CommandUpsert, "sku-1", `{"name":"W","unitPrice":1000000000001,"stock":1,"maxPerOrder":1}`), problem: ProblemInvalidItem},
		{name: "stock over the bound", cmd: command(CommandUpsert, "sku-1", `{"name":"W","unitPrice":1,"stock":1000000000001,"maxPerOrder":1}`), problem: ProblemInvalidItem},
		{name: "maxPerOrder over the bound", cmd: command(CommandUpsert, "sku-1", `{"name":"W","unitPrice":1,"stock":1,"maxPerOrder":1000000000001}`), problem: ProblemInvalidItem},
		{name: "maxPerOrder zero", cmd: command(CommandUpsert, "sku-1", `{"name":"W","unitPrice":1,"stock":1,"maxPerOrder":0}`), problem: ProblemInvalidItem},
		{name: "price missing", cmd: command(CommandUpsert, "sku-1", `{"name":"W","stock":1,"maxPerOrder":1}`), problem: ProblemInvalidItem},
		{name: "stock missing", cmd: command(CommandUpsert, "sku-1", `{"name":"W","unitPrice":1,"maxPerOrder":1}`), problem: ProblemInvalidItem},
		{name: "maxPerOrder missing", cmd: command(CommandUpsert, "sku-1", `{"name":"W","unitPrice":1,"stock":1}`), problem: ProblemInvalidItem},
		{name: "lower-case currency", cmd: command(CommandUpsert, "sku-1", `{"name":"W","unitPrice":1,"currency":"eur","stock":1,"maxPerOrder":1}`), problem: ProblemInvalidItem},
		{name: "currency too long", cmd: command(CommandUpsert, "sku-1", `{"name":"W","unitPrice":1,"currency":"EURO","stock":1,"maxPerOrder":1}`), problem: ProblemInvalidItem},
		{name: "sku too long", cmd: command(CommandUpsert, strings.Repeat("s", 101), `{"name":"W","unitPrice":1,"stock":1,"maxPerOrder":1}`), problem: ProblemInvalidItem},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before Item
			if tt.state != nil {
				before = *tt.state
			}
			d := Decide(tt.state, 3, tt.cmd)
			if tt.state != nil && *tt.state != before {
				t.Fatalf("Decide modified the state: %+v", *tt.state)
			}
			if tt.problem != "" {
				checkRejected(t, d, tt.problem)
				return
			}
			if d.Reject != nil {
				t.Fatalf("rejected: %+v", *d.Reject)
			}
			if len(d.Events) != 1 || d.Events[0].Type != EventItemUpserted {
				t.Fatalf("events = %+v, want one %s", d.Events, EventItemUpserted)
			}
			if got := d.Events[0].Data; got != tt.want {
				t.Fatalf("event data = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func checkRejected(t *testing.T, d aggregate.Decision, problem string) {
	t.Helper()
	if d.Reject == nil {
		t.Fatalf("not rejected: events %+v; want %s", d.Events, problem)
	}
	if d.Reject.Type != problem || d.Reject.Title == "" || d.Reject.Detail == "" {
		t.Fatalf("problem = %+v, want type %s with a title and detail", *d.Reject, problem)
	}
	if len(d.Events) != 0 {
		t.Fatalf("rejection with events %+v", d.Events)
	}
}

func TestEvolve(t *testing.T) {
	item := Item{SKU: "sku-1", Name: "Widget", UnitPrice: 250, Currency: "EUR", Stock: 10, MaxPerOrder: 3, Active: true}
	data, _ := json.Marshal(item)
	old := &Item{SKU: "sku-1", Name: "Old"}
	oldCopy := *old
	got, err := Evolve(old, envelope.Event{Meta: envelope.Meta{AggregateID: "sku-1"}, Type: EventItemUpserted, Version: 2, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	if *got != item {
		t.Fatalf("state = %+v, want %+v", *got, item)
	}
	if *old != oldCopy {
		t.Fatal("Evolve modified the old state")
	}

	// The SKU defaults to the aggregate ID.
	got, err = Evolve(nil, envelope.Event{Meta: envelope.Meta{AggregateID: "sku-2"}, Type: EventItemUpserted, Version: 1, Data: json.RawMessage(`{"name":"X"}`)})
	if err != nil || got.SKU != "sku-2" {
		t.Fatalf("Evolve = %+v, %v; want SKU sku-2", got, err)
	}

	for _, ev := range []envelope.Event{
		{Meta: envelope.Meta{AggregateID: "sku-1"}, Type: "catalog.item-deleted.v1", Version: 2, Data: json.RawMessage(`{}`)},
		{Meta: envelope.Meta{AggregateID: "sku-1"}, Type: EventItemUpserted, Version: 2, Data: json.RawMessage(`{"stock":"x"}`)},
	} {
		if _, err := Evolve(nil, ev); err == nil {
			t.Errorf("Evolve(%s, %s) succeeded", ev.Type, ev.Data)
		}
	}
}

// Decide and Evolve agree: the upserted event, round-tripped through JSON, is the new state.
func TestDecideThenEvolve(t *testing.T) {
	def := Definition()
	if def.Name != "catalog" || def.Decide == nil || def.Evolve == nil {
		t.Fatalf("Definition() = %+v", def)
	}
	d := def.Decide(nil, 0, command(CommandUpsert, "sku-9", `{"name":"Gadget","unitPrice":99,"currency":"GBP","stock":5,"maxPerOrder":2,"active":true}`))
	data, err := json.Marshal(d.Events[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	s, err := def.Evolve(nil, envelope.Event{Meta: envelope.Meta{AggregateID: "sku-9"}, Type: d.Events[0].Type, Version: 1, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	want := Item{SKU: "sku-9", Name: "Gadget", UnitPrice: 99, Currency: "GBP", Stock: 5, MaxPerOrder: 2, Active: true}
	if !reflect.DeepEqual(*s, want) {
		t.Fatalf("state = %+v, want %+v", *s, want)
	}
}
