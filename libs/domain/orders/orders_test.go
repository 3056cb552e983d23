package orders

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"

	"github.com/answerback/answerback/libs/pipeline/aggregate"
	"github.com/answerback/answerback/libs/pipeline/envelope"
)

func command(typ, data string) envelope.Command {
	return envelope.Command{
		Meta: envelope.Meta{CommandID: "c-1", AggregateID: "o-1", ExpectedVersion: envelope.NoVersion},
		Type: typ,
		Data: json.RawMessage(data),
	}
}

func order(status string, lines map[string]int64) *Order {
	return &Order{ID: "o-1", CustomerID: "cust", Currency: "EUR", Status: status, Lines: lines}
}

func fullOrder() *Order {
	lines := map[string]int64{}
	for i := range MaxLines {
		lines[fmt.Sprintf("sku-%02d", i)] = 1
	}
	return order(StatusOpen, lines)
}

func TestDecide(t *testing.T) {
	open := func() *Order { return order(StatusOpen, map[string]int64{"a": 2}) }
	empty := func() *Order { return order(StatusOpen, map[string]int64{}) }
	submitted := func() *Order { return order(StatusSubmitted, map[string]int64{"a": 2}) }
	cancelled := func() *Order { return order(StatusCancelled, map[string]int64{}) }
	tests := []struct {
		name    string
		state   *Order
		cmd     envelope.Command
		problem string             // "" when an event is expected
		event   aggregate.NewEvent // expected event when problem == ""
	}{
		// unknown and malformed
		{name: "unknown command", state: open(), cmd: command("orders.delete", `{}`), problem: ProblemUnknownCommand},
		{name: "unknown command without order", cmd: command("orders.delete", `{}`), problem: ProblemUnknownCommand},

		// create
		{name: "create", cmd: command(CommandCreate, `{"customerId":"cust-1"}`),
			event: aggregate.NewEvent{Type: EventCreated, Data: Created{OrderID: "o-1", CustomerID: "cust-1", Currency: "EUR"}}},
		{name: "create with currency", cmd: command(CommandCreate, `{"customerId":"cust-1","currency":"USD"}`),
			event: aggregate.NewEvent{Type: EventCreated, Data: Created{OrderID: "o-1", CustomerID: "cust-1", Currency: "USD"}}},
		{name: "create with 100-character customer", cmd: command(CommandCreate, `{"customerId":"`+strings.Repeat("ü", 100)+`"}`),
			event: aggregate.NewEvent{Type: EventCreated, Data: Created{OrderID: "o-1", CustomerID: strings.Repeat("ü", 100), Currency: "EUR"}}},
		{name: "create existing", state: open(), cmd: command(CommandCreate, `{"customerId":"cust-1"}`), problem: ProblemOrderExists},
		{name: "create existing cancelled", state: cancelled(), cmd: command(CommandCreate, `{"customerId":"cust-1"}`), problem: ProblemOrderExists},
		{name: "create malformed", cmd: command(CommandCreate, `{"customerId":`), problem: ProblemInvalidCommand},
		{name: "create not an object", cmd: command(CommandCreate, `[1]`), problem: ProblemInvalidCommand},
		{name: "create without customer", cmd: command(CommandCreate, `{}`), problem: ProblemInvalidCommand},
		{name: "create with blank customer", cmd: command(CommandCreate, `{"customerId":" "}`), problem: ProblemInvalidCommand},
		{name: "create with long customer", cmd: command(CommandCreate, `{"customerId":"`+strings.Repeat("c", 101)+`"}`), problem: ProblemInvalidCommand},
		{name: "create with bad currency", cmd: command(CommandCreate, `{"customerId":"c","currency":"Eur"}`), problem: ProblemInvalidCommand},

		// add-item
		{name: "add new line", state: open(), cmd: command(CommandAddItem, `{"sku":"b","quantity":3}`),
			event: aggregate.NewEvent{Type: EventItemAdded, Data: ItemAdded{SKU: "b", Quantity: 3}}},
		{name: "add to line", state: open(), cmd: command(CommandAddItem, `{"sku":"a","quantity":998}`),
			event: aggregate.NewEvent{Type: EventItemAdded, Data: ItemAdded{SKU: "a", Quantity: 998}}},
		{name: "add to existing line of a full order", state: fullOrder(), cmd: command(CommandAddItem, `{"sku":"sku-00","quantity":1}`),
			event: aggregate.NewEvent{Type: EventItemAdded, Data: ItemAdded{SKU: "sku-00", Quantity: 1}}},
		{name: "add to missing order", cmd: command(CommandAddItem, `{"sku":"a","quantity":1}`), problem: ProblemOrderNotFound},
		{name: "add to submitted order", state: submitted(), cmd: command(CommandAddItem, `{"sku":"a","quantity":1}`), problem: ProblemOrderNotOpen},
		{name: "add to cancelled order", state: cancelled(), cmd: command(CommandAddItem, `{"sku":"a","quantity":1}`), problem: ProblemOrderNotOpen},
		{name: "add malformed", state: open(), cmd: command(CommandAddItem, `{"sku":"a","quantity":"1"}`), problem: ProblemInvalidCommand},
		{name: "add without sku", state: open(), cmd: command(CommandAddItem, `{"quantity":1}`), problem: ProblemInvalidCommand},
		{name: "add zero", state: open(), cmd: command(CommandAddItem, `{"sku":"a","quantity":0}`), problem: ProblemQuantityOutOfRange},
		{name: "add negative", state: open(), cmd: command(CommandAddItem, `{"sku":"a","quantity":-1}`), problem: ProblemQuantityOutOfRange},
		{name: "add over 1000", state: open(), cmd: command(CommandAddItem, `{"sku":"b","quantity":1001}`), problem: ProblemQuantityOutOfRange},
		{name: "line over 1000", state: open(), cmd: command(CommandAddItem, `{"sku":"a","quantity":999}`), problem: ProblemQuantityOutOfRange},
		{name: "51st line", state: fullOrder(), cmd: command(CommandAddItem, `{"sku":"new","quantity":1}`), problem: ProblemLineLimit},

		// remove-item
		{name: "remove", state: open(), cmd: command(CommandRemoveItem, `{"sku":"a"}`),
			event: aggregate.NewEvent{Type: EventItemRemoved, Data: ItemRemoved{SKU: "a"}}},
		{name: "remove from missing order", cmd: command(CommandRemoveItem, `{"sku":"a"}`), problem: ProblemOrderNotFound},
		{name: "remove from submitted order", state: submitted(), cmd: command(CommandRemoveItem, `{"sku":"a"}`), problem: ProblemOrderNotOpen},
		{name: "remove malformed", state: open(), cmd: command(CommandRemoveItem, `"a"`), problem: ProblemInvalidCommand},
		{name: "remove without sku", state: open(), cmd: command(CommandRemoveItem, `{}`), problem: ProblemInvalidCommand},
		{name: "remove missing line", state: open(), cmd: command(CommandRemoveItem, `{"sku":"b"}`), problem: ProblemLineNotFound},

		// submit
		{name: "submit", state: open(), cmd: command(CommandSubmit, `{}`), event: aggregate.NewEvent{Type: EventSubmitted, Data: Submitted{}}},
		{name: "submit without data", state: open(), cmd: command(CommandSubmit, ``), event: aggregate.NewEvent{Type: EventSubmitted, Data: Submitted{}}},
		{name: "submit missing order", cmd: command(CommandSubmit, `{}`), problem: ProblemOrderNotFound},
		{name: "submit twice", state: submitted(), cmd: command(CommandSubmit, `{}`), problem: ProblemOrderNotOpen},
		{name: "submit cancelled", state: cancelled(), cmd: command(CommandSubmit, `{}`), problem: ProblemOrderNotOpen},
		{name: "submit malformed", state: open(), cmd: command(CommandSubmit, `[]`), problem: ProblemInvalidCommand},
		{name: "submit empty", state: empty(), cmd: command(CommandSubmit, `{}`), problem: ProblemEmptyOrder},

		// cancel
		{name: "cancel", state: open(), cmd: command(CommandCancel, `{}`), event: aggregate.NewEvent{Type: EventCancelled, Data: Cancelled{}}},
		{name: "cancel empty", state: empty(), cmd: command(CommandCancel, `{}`), event: aggregate.NewEvent{Type: EventCancelled, Data: Cancelled{}}},
		{name: "cancel missing order", cmd: command(CommandCancel, `{}`), problem: ProblemOrderNotFound},
		{name: "cancel submitted", state: submitted(), cmd: command(CommandCancel, `{}`), problem: ProblemOrderNotOpen},
		{name: "cancel twice", state: cancelled(), cmd: command(CommandCancel, `{}`), problem: ProblemOrderNotOpen},
		{name: "cancel malformed", state: open(), cmd: command(CommandCancel, `{`), problem: ProblemInvalidCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before Order
			if tt.state != nil {
				before = *tt.state
				before.Lines = maps.Clone(tt.state.Lines)
			}
			d := Decide(tt.state, 7, tt.cmd)
			if tt.state != nil && !reflect.DeepEqual(*tt.state, before) {
				t.Fatalf("Decide modified the state: %+v", *tt.state)
			}
			if tt.problem != "" {
				if d.Reject == nil {
					t.Fatalf("not rejected: events %+v; want %s", d.Events, tt.problem)
				}
				if d.Reject.Type != tt.problem || d.Reject.Title == "" || d.Reject.Detail == "" {
					t.Fatalf("problem = %+v, want type %s with a title and detail", *d.Reject, tt.problem)
				}
				if len(d.Events) != 0 {
					t.Fatalf("rejection with events %+v", d.Events)
				}
				return
			}
			if d.Reject != nil {
				t.Fatalf("rejected: %+v", *d.Reject)
			}
			if len(d.Events) != 1 || !reflect.DeepEqual(d.Events[0], tt.event) {
				t.Fatalf("events = %+v, want [%+v]", d.Events, tt.event)
			}
		})
	}
}

func event(typ string, version int64, data any) envelope.Event {
	b, err := json.Marshal(data)
	if err != nil {
		panic(err)
	}
	return envelope.Event{Meta: envelope.Meta{AggregateID: "o-1"}, Type: typ, Version: version, Data: b}
}

func TestEvolve(t *testing.T) {
	tests := []struct {
		name  string
		state *Order
		ev    envelope.Event
		want  *Order // nil when an error is expected
	}{
		{name: "created", ev: event(EventCreated, 1, Created{OrderID: "o-1", CustomerID: "cust", Currency: "EUR"}),
			want: order(StatusOpen, map[string]int64{})},
		{name: "created without orderId", ev: event(EventCreated, 1, Created{CustomerID: "cust", Currency: "EUR"}),
			want: order(StatusOpen, map[string]int64{})},
		{name: "item added to new line", state: order(StatusOpen, map[string]int64{"a": 1}), ev: event(EventItemAdded, 2, ItemAdded{SKU: "b", Quantity: 3}),
			want: order(StatusOpen, map[string]int64{"a": 1, "b": 3})},
		{name: "item added to line", state: order(StatusOpen, map[string]int64{"a": 1}), ev: event(EventItemAdded, 2, ItemAdded{SKU: "a", Quantity: 3}),
			want: order(StatusOpen, map[string]int64{"a": 4})},
		{name: "item added to nil lines", state: order(StatusOpen, nil), ev: event(EventItemAdded, 2, ItemAdded{SKU: "a", Quantity: 3}),
			want: order(StatusOpen, map[string]int64{"a": 3})},
		{name: "item removed", state: order(StatusOpen, map[string]int64{"a": 1, "b": 2}), ev: event(EventItemRemoved, 3, ItemRemoved{SKU: "a"}),
			want: order(StatusOpen, map[string]int64{"b": 2})},
		{name: "submitted", state: order(StatusOpen, map[string]int64{"a": 1}), ev: event(EventSubmitted, 3, Submitted{}),
			want: order(StatusSubmitted, map[string]int64{"a": 1})},
		{name: "cancelled", state: order(StatusOpen, map[string]int64{"a": 1}), ev: event(EventCancelled, 3, Cancelled{}),
			want: order(StatusCancelled, map[string]int64{"a": 1})},

		{name: "created twice", state: order(StatusOpen, map[string]int64{}), ev: event(EventCreated, 2, Created{CustomerID: "c"})},
		{name: "item added without order", ev: event(EventItemAdded, 1, ItemAdded{SKU: "a", Quantity: 1})},
		{name: "submitted without order", ev: event(EventSubmitted, 1, Submitted{})},
		{name: "unknown event", state: order(StatusOpen, nil), ev: event("orders.archived.v1", 2, struct{}{})},
		{name: "malformed created", ev: envelope.Event{Type: EventCreated, Version: 1, Data: json.RawMessage(`{"customerId":1}`)}},
		{name: "malformed item added", state: order(StatusOpen, nil), ev: envelope.Event{Type: EventItemAdded, Version: 2, Data: json.RawMessage(`{"quantity":"x"}`)}},
		{name: "malformed item removed", state: order(StatusOpen, nil), ev: envelope.Event{Type: EventItemRemoved, Version: 2, Data: json.RawMessage(`[`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before Order
			if tt.state != nil {
				before = *tt.state
				before.Lines = maps.Clone(tt.state.Lines)
			}
			got, err := Evolve(tt.state, tt.ev)
			if tt.state != nil && !reflect.DeepEqual(*tt.state, before) {
				t.Fatalf("Evolve modified the state: %+v", *tt.state)
			}
			if tt.want == nil {
				if err == nil {
					t.Fatalf("Evolve succeeded: %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("state = %+v, want %+v", got, tt.want)
			}
			if tt.state != nil && got == tt.state {
				t.Fatal("Evolve returned the old state")
			}
		})
	}
}

// The new state's Lines is a copy: changing it leaves the old state alone.
func TestEvolveCopiesLines(t *testing.T) {
	old := order(StatusOpen, map[string]int64{"a": 1})
	next, err := Evolve(old, event(EventSubmitted, 3, Submitted{}))
	if err != nil {
		t.Fatal(err)
	}
	next.Lines["a"] = 99
	if old.Lines["a"] != 1 {
		t.Fatal("the new state shares Lines with the old one")
	}
}

// A command sequence through Definition, with the events round-tripped
// through JSON as the runtime does.
func TestLifecycle(t *testing.T) {
	def := Definition()
	if def.Name != "orders" {
		t.Fatalf("Name = %q", def.Name)
	}
	var state *Order
	var version int64
	for _, c := range []envelope.Command{
		command(CommandCreate, `{"customerId":"cust"}`),
		command(CommandAddItem, `{"sku":"a","quantity":2}`),
		command(CommandAddItem, `{"sku":"b","quantity":1}`),
		command(CommandAddItem, `{"sku":"a","quantity":3}`),
		command(CommandRemoveItem, `{"sku":"b"}`),
		command(CommandSubmit, `{}`),
	} {
		d := def.Decide(state, version, c)
		if d.Reject != nil {
			t.Fatalf("%s rejected: %+v", c.Type, *d.Reject)
		}
		for _, e := range d.Events {
			version++
			next, err := def.Evolve(state, event(e.Type, version, e.Data))
			if err != nil {
				t.Fatal(err)
			}
			state = next
		}
	}
	want := order(StatusSubmitted, map[string]int64{"a": 5})
	if !reflect.DeepEqual(state, want) || version != 6 {
		t.Fatalf("state = %+v at %d, want %+v at 6", state, version, want)
	}
	if d := def.Decide(state, version, command(CommandCancel, `{}`)); d.Reject == nil || d.Reject.Type != ProblemOrderNotOpen {
		t.Fatalf("cancel after submit: %+v", d)
	}
}
