// Package orders is the order aggregate: a customer's order, its ID the
// aggregate ID, holding lines (SKU → quantity) while open and then submitted
// or cancelled. It is pure — no I/O — and plugs into the pipeline runtime
// through Definition. It does not know the catalog: whether a SKU exists is
// checked before the command is sent (problems.UnknownSKU), and prices and
// stock live in the read model.
//
// Decide checks, in order: the command type (ProblemUnknownCommand), the
// order's existence (ProblemOrderExists for CommandCreate,
// ProblemOrderNotFound otherwise), that it is open (ProblemOrderNotOpen),
// the command's data (ProblemInvalidCommand when it is not the command's JSON
// or a required field is missing), and then the command's own rules. Every
// rejection has a human Title and a Detail.
package orders

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"unicode/utf8"

	"github.com/answerback/answerback/libs/domain/catalog"
	"github.com/answerback/answerback/libs/domain/problems"
	"github.com/answerback/answerback/libs/pipeline/aggregate"
	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// Name is the domain name: the runtime uses the orders.* topics.
const Name = "orders"

// Command types; the data of each is the struct of the same name.
const (
	CommandCreate     = "orders.create"      // Create
	CommandAddItem    = "orders.add-item"    // AddItem
	CommandRemoveItem = "orders.remove-item" // RemoveItem
	CommandSubmit     = "orders.submit"      // Submit
	CommandCancel     = "orders.cancel"      // Cancel
)

// Event types; the data of each is the struct of the same name.
const (
	EventCreated     = "orders.created.v1"      // Created
	EventItemAdded   = "orders.item-added.v1"   // ItemAdded
	EventItemRemoved = "orders.item-removed.v1" // ItemRemoved
	EventSubmitted   = "orders.submitted.v1"    // Submitted
	EventCancelled   = "orders.cancelled.v1"    // Cancelled
)

// Order statuses.
const (
	StatusOpen      = "open"      // lines may be added and removed
	StatusSubmitted = "submitted" // final; its lines hold stock
	StatusCancelled = "cancelled" // final
)

// Problem types this aggregate rejects commands with (see package problems).
const (
	ProblemOrderNotFound      = problems.OrderNotFound
	ProblemOrderExists        = problems.OrderExists
	ProblemOrderNotOpen       = problems.OrderNotOpen
	ProblemEmptyOrder         = problems.EmptyOrder
	ProblemQuantityOutOfRange = problems.QuantityOutOfRange
	ProblemLineLimit          = problems.LineLimit
	ProblemLineNotFound       = problems.LineNotFound
	ProblemInvalidCommand     = problems.InvalidCommand
	ProblemUnknownCommand     = problems.UnknownCommand
)

// Limits and defaults enforced by Decide.
const (
	DefaultCurrency     = "EUR" // currency of a Create that names none
	MaxCustomerIDLength = 100   // characters
	MaxSKULength        = 100   // bytes
	MaxLineQuantity     = 1000  // most units of one SKU per order, and per AddItem
	MaxLines            = 50    // most distinct SKUs per order
	minAddQuantity      = 1
)

// Order is the state of an order. Lines maps SKU to quantity; it is never nil
// in a state Evolve returns.
type Order struct {
	ID         string           `json:"id"`
	CustomerID string           `json:"customerId"`
	Currency   string           `json:"currency"`
	Status     string           `json:"status"` // StatusOpen, StatusSubmitted or StatusCancelled
	Lines      map[string]int64 `json:"lines"`
}

// Create is the data of CommandCreate. Currency may be omitted (DefaultCurrency).
type Create struct {
	CustomerID string `json:"customerId"`
	Currency   string `json:"currency,omitempty"`
}

// AddItem is the data of CommandAddItem: add Quantity units of SKU.
type AddItem struct {
	SKU      string `json:"sku"`
	Quantity int64  `json:"quantity"`
}

// RemoveItem is the data of CommandRemoveItem: remove SKU's line entirely.
type RemoveItem struct {
	SKU string `json:"sku"`
}

// Submit is the data of CommandSubmit (an empty object).
type Submit struct{}

// Cancel is the data of CommandCancel (an empty object).
type Cancel struct{}

// Created is the data of EventCreated.
type Created struct {
	OrderID    string `json:"orderId"`
	CustomerID string `json:"customerId"`
	Currency   string `json:"currency"`
}

// ItemAdded is the data of EventItemAdded; Quantity is the quantity added,
// not the line's new total.
type ItemAdded struct {
	SKU      string `json:"sku"`
	Quantity int64  `json:"quantity"`
}

// ItemRemoved is the data of EventItemRemoved: SKU's line is gone.
type ItemRemoved struct {
	SKU string `json:"sku"`
}

// Submitted is the data of EventSubmitted (an empty object).
type Submitted struct{}

// Cancelled is the data of EventCancelled (an empty object).
type Cancelled struct{}

// Definition returns the order aggregate for the pipeline runtime.
func Definition() aggregate.Definition[Order] {
	return aggregate.Definition[Order]{Name: Name, Decide: Decide, Evolve: Evolve,
		CommandTypes: []string{CommandCreate, CommandAddItem, CommandRemoveItem, CommandSubmit, CommandCancel}}
}

// Decide handles cmd for the order state (nil when the order does not exist):
//
//   - CommandCreate: ProblemOrderExists if the order exists; a CustomerID of 1
//     to MaxCustomerIDLength characters and a currency of three upper-case
//     letters (default DefaultCurrency), else ProblemInvalidCommand. Emits
//     EventCreated.
//   - CommandAddItem: a SKU is required (ProblemInvalidCommand); the quantity
//     must be 1..MaxLineQuantity and the line's resulting quantity at most
//     MaxLineQuantity (ProblemQuantityOutOfRange); a new line must not exceed
//     MaxLines (ProblemLineLimit). Emits EventItemAdded.
//   - CommandRemoveItem: ProblemLineNotFound if the order has no line for the
//     SKU. Emits EventItemRemoved.
//   - CommandSubmit: ProblemEmptyOrder when the order has no lines. Emits
//     EventSubmitted.
//   - CommandCancel: emits EventCancelled.
//
// All but CommandCreate need an existing (ProblemOrderNotFound), open
// (ProblemOrderNotOpen) order. Unknown types: ProblemUnknownCommand. Decide
// never modifies state.
func Decide(state *Order, version int64, cmd envelope.Command) aggregate.Decision {
	switch cmd.Type {
	case CommandCreate:
		return decideCreate(state, cmd)
	case CommandAddItem, CommandRemoveItem, CommandSubmit, CommandCancel:
	default:
		return aggregate.Reject(ProblemUnknownCommand, "Unknown command",
			fmt.Sprintf("orders do not handle command type %q", cmd.Type))
	}
	if state == nil {
		return aggregate.Reject(ProblemOrderNotFound, "Order not found",
			fmt.Sprintf("there is no order %q", cmd.AggregateID))
	}
	if state.Status != StatusOpen {
		return aggregate.Reject(ProblemOrderNotOpen, "Order is not open",
			fmt.Sprintf("order %q is %s; only open orders can change", state.ID, state.Status))
	}
	switch cmd.Type {
	case CommandAddItem:
		return decideAddItem(state, cmd)
	case CommandRemoveItem:
		return decideRemoveItem(state, cmd)
	case CommandSubmit:
		var s Submit
		if d, ok := decode(cmd, &s); !ok {
			return d
		}
		if len(state.Lines) == 0 {
			return aggregate.Reject(ProblemEmptyOrder, "Order is empty",
				fmt.Sprintf("order %q has no lines; add an item before submitting", state.ID))
		}
		return aggregate.Emit(aggregate.NewEvent{Type: EventSubmitted, Data: Submitted{}})
	default: // CommandCancel
		var c Cancel
		if d, ok := decode(cmd, &c); !ok {
			return d
		}
		return aggregate.Emit(aggregate.NewEvent{Type: EventCancelled, Data: Cancelled{}})
	}
}

func decideCreate(state *Order, cmd envelope.Command) aggregate.Decision {
	if state != nil {
		return aggregate.Reject(ProblemOrderExists, "Order already exists",
			fmt.Sprintf("order %q already exists", state.ID))
	}
	var c Create
	if d, ok := decode(cmd, &c); !ok {
		return d
	}
	if c.Currency == "" {
		c.Currency = DefaultCurrency
	}
	switch n := utf8.RuneCountInString(c.CustomerID); {
	case strings.TrimSpace(c.CustomerID) == "":
		return invalidCommand("customerId is required")
	case n > MaxCustomerIDLength:
		return invalidCommand("customerId has %d characters; at most %d are allowed", n, MaxCustomerIDLength)
	case !catalog.ValidCurrency(c.Currency):
		return invalidCommand("currency must be three upper-case letters (ISO 4217), got %q", c.Currency)
	}
	return aggregate.Emit(aggregate.NewEvent{Type: EventCreated, Data: Created{
		OrderID: cmd.AggregateID, CustomerID: c.CustomerID, Currency: c.Currency,
	}})
}

func decideAddItem(state *Order, cmd envelope.Command) aggregate.Decision {
	var a AddItem
	if d, ok := decode(cmd, &a); !ok {
		return d
	}
	if d, ok := checkSKU(a.SKU); !ok {
		return d
	}
	if a.Quantity < minAddQuantity || a.Quantity > MaxLineQuantity {
		return aggregate.Reject(ProblemQuantityOutOfRange, "Quantity out of range",
			fmt.Sprintf("quantity must be between %d and %d, got %d", minAddQuantity, MaxLineQuantity, a.Quantity))
	}
	current, exists := state.Lines[a.SKU]
	if current+a.Quantity > MaxLineQuantity {
		return aggregate.Reject(ProblemQuantityOutOfRange, "Quantity out of range",
			fmt.Sprintf("the line for %q would hold %d units; at most %d are allowed", a.SKU, current+a.Quantity, MaxLineQuantity))
	}
	if !exists && len(state.Lines) >= MaxLines {
		return aggregate.Reject(ProblemLineLimit, "Too many lines",
			fmt.Sprintf("order %q already has %d lines, the maximum", state.ID, len(state.Lines)))
	}
	return aggregate.Emit(aggregate.NewEvent{Type: EventItemAdded, Data: ItemAdded(a)})
}

func decideRemoveItem(state *Order, cmd envelope.Command) aggregate.Decision {
	var r RemoveItem
	if d, ok := decode(cmd, &r); !ok {
		return d
	}
	if d, ok := checkSKU(r.SKU); !ok {
		return d
	}
	if _, ok := state.Lines[r.SKU]; !ok {
		return aggregate.Reject(ProblemLineNotFound, "Line not found",
			fmt.Sprintf("order %q has no line for %q", state.ID, r.SKU))
	}
	return aggregate.Emit(aggregate.NewEvent{Type: EventItemRemoved, Data: ItemRemoved(r)})
}

// Evolve returns the order after ev as a new Order (Lines copied): it never
// modifies state. EventCreated needs a nil state, every other event an
// existing one; unknown event types and malformed data are errors. Evolve
// records facts and does not re-check the rules Decide enforced.
func Evolve(state *Order, ev envelope.Event) (*Order, error) {
	if ev.Type == EventCreated {
		if state != nil {
			return nil, fmt.Errorf("orders: event %s (%s): order already exists", ev.ID(), ev.Type)
		}
		var c Created
		if err := unmarshalEvent(ev, &c); err != nil {
			return nil, err
		}
		id := c.OrderID
		if id == "" {
			id = ev.AggregateID
		}
		return &Order{ID: id, CustomerID: c.CustomerID, Currency: c.Currency, Status: StatusOpen, Lines: map[string]int64{}}, nil
	}
	switch ev.Type {
	case EventItemAdded, EventItemRemoved, EventSubmitted, EventCancelled:
	default:
		return nil, fmt.Errorf("orders: event %s: unknown event type %q", ev.ID(), ev.Type)
	}
	if state == nil {
		return nil, fmt.Errorf("orders: event %s (%s): order does not exist", ev.ID(), ev.Type)
	}
	next := *state
	next.Lines = maps.Clone(state.Lines)
	if next.Lines == nil {
		next.Lines = map[string]int64{}
	}
	switch ev.Type {
	case EventItemAdded:
		var a ItemAdded
		if err := unmarshalEvent(ev, &a); err != nil {
			return nil, err
		}
		next.Lines[a.SKU] += a.Quantity
	case EventItemRemoved:
		var r ItemRemoved
		if err := unmarshalEvent(ev, &r); err != nil {
			return nil, err
		}
		delete(next.Lines, r.SKU)
	case EventSubmitted:
		next.Status = StatusSubmitted
	case EventCancelled:
		next.Status = StatusCancelled
	}
	return &next, nil
}

func unmarshalEvent(ev envelope.Event, v any) error {
	if err := json.Unmarshal(ev.Data, v); err != nil {
		return fmt.Errorf("orders: event %s (%s): %w", ev.ID(), ev.Type, err)
	}
	return nil
}

// decode unmarshals the command's data (absent data is an empty object) into
// v; when it cannot, it returns the rejection and false.
func decode(cmd envelope.Command, v any) (aggregate.Decision, bool) {
	data := []byte(cmd.Data)
	if len(bytes.TrimSpace(data)) == 0 {
		data = []byte("{}")
	}
	if err := json.Unmarshal(data, v); err != nil {
		return invalidCommand("the data of %s is not valid: %v", cmd.Type, err), false
	}
	return aggregate.Decision{}, true
}

func checkSKU(sku string) (aggregate.Decision, bool) {
	if sku == "" || len(sku) > MaxSKULength {
		return invalidCommand("sku must have 1 to %d bytes", MaxSKULength), false
	}
	return aggregate.Decision{}, true
}

func invalidCommand(format string, args ...any) aggregate.Decision {
	return aggregate.Reject(ProblemInvalidCommand, "Invalid command", fmt.Sprintf(format, args...))
}
