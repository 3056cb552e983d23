// Package catalog is the catalog aggregate: one aggregate per item, its ID
// the item's SKU. It is pure — no I/O — and plugs into the pipeline runtime
// through Definition.
//
// The only command is CommandUpsert, which creates or replaces the item and
// emits EventItemUpserted carrying the full item.
package catalog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/answerback/answerback/libs/domain/problems"
	"github.com/answerback/answerback/libs/pipeline/aggregate"
	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// Name is the domain name: the runtime uses the catalog.* topics.
const Name = "catalog"

// Command and event types.
const (
	// CommandUpsert creates or replaces an item; its data is an Upsert.
	CommandUpsert = "catalog.upsert"
	// EventItemUpserted records an item's new contents; its data is an Item.
	EventItemUpserted = "catalog.item-upserted.v1"
)

// Problem types this aggregate rejects commands with.
const (
	ProblemInvalidItem    = problems.InvalidItem
	ProblemUnknownCommand = problems.UnknownCommand
)

// Limits and defaults enforced by Decide.
const (
	// DefaultCurrency is the currency of an Upsert that names none.
	DefaultCurrency = "EUR"
	// MaxNameLength is the longest item name, in characters.
	MaxNameLength = 200
	// MaxSKULength is the longest SKU (aggregate ID), in bytes.
	MaxSKULength = 100
	// MaxUnitPrice is the highest unit price, in minor units: with the
	// orders' line limits, an order's total stays far inside int64.
	MaxUnitPrice = 1_000_000_000_000
	// MaxCount bounds stock and maxPerOrder.
	MaxCount = 1_000_000_000_000
)

// Item is the state of a catalog item, and the data of EventItemUpserted.
type Item struct {
	SKU         string `json:"sku"`
	Name        string `json:"name"`
	UnitPrice   int64  `json:"unitPrice"` // in minor units of Currency, e.g. cents
	Currency    string `json:"currency"`  // ISO 4217 code, e.g. "EUR"
	Stock       int64  `json:"stock"`
	MaxPerOrder int64  `json:"maxPerOrder"` // most units one order may hold
	Active      bool   `json:"active"`      // inactive items cannot be ordered
}

// requiredUpsertFields are the members an Upsert must carry.
var requiredUpsertFields = []string{"name", "unitPrice", "stock", "maxPerOrder"}

// Upsert is the data of CommandUpsert. Currency may be omitted (DefaultCurrency);
// an omitted Active means inactive.
type Upsert struct {
	Name        string `json:"name"`
	UnitPrice   int64  `json:"unitPrice"`
	Currency    string `json:"currency,omitempty"`
	Stock       int64  `json:"stock"`
	MaxPerOrder int64  `json:"maxPerOrder"`
	Active      bool   `json:"active"`
}

// Definition returns the catalog aggregate for the pipeline runtime.
func Definition() aggregate.Definition[Item] {
	return aggregate.Definition[Item]{Name: Name, Decide: Decide, Evolve: Evolve, CommandTypes: []string{CommandUpsert}}
}

// Decide handles cmd for the item state (nil when the item does not exist
// yet). CommandUpsert is rejected with ProblemInvalidItem when its data is
// not an Upsert or fails validation (name 1..MaxNameLength characters,
// unitPrice 0..MaxUnitPrice, stock 0..MaxCount, maxPerOrder 1..MaxCount, currency three upper-case
// letters, SKU 1..MaxSKULength bytes); otherwise it emits EventItemUpserted
// with the full item. Other command types are rejected with
// ProblemUnknownCommand. Decide never modifies state.
func Decide(state *Item, version int64, cmd envelope.Command) aggregate.Decision {
	if cmd.Type != CommandUpsert {
		return aggregate.Reject(ProblemUnknownCommand, "Unknown command",
			fmt.Sprintf("the catalog does not handle command type %q", cmd.Type))
	}
	var u Upsert
	if err := json.Unmarshal(nonEmpty(cmd.Data), &u); err != nil {
		return invalid("the command data is not a valid item: %v", err)
	}
	// A PUT replaces the whole item: a missing price or stock must not read as 0.
	var present map[string]json.RawMessage
	_ = json.Unmarshal(cmd.Data, &present) // it decoded into u: it is an object
	for _, field := range requiredUpsertFields {
		if _, ok := present[field]; !ok {
			return invalid("%s is required", field)
		}
	}
	if u.Currency == "" {
		u.Currency = DefaultCurrency
	}
	switch n := utf8.RuneCountInString(u.Name); {
	case cmd.AggregateID == "" || len(cmd.AggregateID) > MaxSKULength:
		return invalid("the SKU must have 1 to %d bytes", MaxSKULength)
	case strings.TrimSpace(u.Name) == "":
		return invalid("the name must not be empty")
	case n > MaxNameLength:
		return invalid("the name has %d characters; at most %d are allowed", n, MaxNameLength)
	case u.UnitPrice < 0 || u.UnitPrice > MaxUnitPrice:
		return invalid("the unit price must be 0 to %d, got %d", int64(MaxUnitPrice), u.UnitPrice)
	case u.Stock < 0 || u.Stock > MaxCount:
		return invalid("the stock must be 0 to %d, got %d", int64(MaxCount), u.Stock)
	case u.MaxPerOrder < 1 || u.MaxPerOrder > MaxCount:
		return invalid("maxPerOrder must be 1 to %d, got %d", int64(MaxCount), u.MaxPerOrder)
	case !ValidCurrency(u.Currency):
		return invalid("the currency must be three upper-case letters (ISO 4217), got %q", u.Currency)
	}
	return aggregate.Emit(aggregate.NewEvent{Type: EventItemUpserted, Data: Item{
		SKU:         cmd.AggregateID,
		Name:        u.Name,
		UnitPrice:   u.UnitPrice,
		Currency:    u.Currency,
		Stock:       u.Stock,
		MaxPerOrder: u.MaxPerOrder,
		Active:      u.Active,
	}})
}

// Evolve returns the item after ev: EventItemUpserted replaces the whole
// item (its SKU defaults to the event's aggregate ID). Other event types and
// malformed data are errors. Evolve never modifies state.
func Evolve(state *Item, ev envelope.Event) (*Item, error) {
	if ev.Type != EventItemUpserted {
		return nil, fmt.Errorf("catalog: unknown event type %q", ev.Type)
	}
	var it Item
	if err := json.Unmarshal(ev.Data, &it); err != nil {
		return nil, fmt.Errorf("catalog: event %s: %w", ev.ID(), err)
	}
	if it.SKU == "" {
		it.SKU = ev.AggregateID
	}
	return &it, nil
}

// ValidCurrency reports whether c looks like an ISO 4217 code: three
// upper-case ASCII letters.
func ValidCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for i := 0; i < len(c); i++ {
		if c[i] < 'A' || c[i] > 'Z' {
			return false
		}
	}
	return true
}

func invalid(format string, args ...any) aggregate.Decision {
	return aggregate.Reject(ProblemInvalidItem, "Invalid catalog item", fmt.Sprintf(format, args...))
}

// nonEmpty treats absent command data as an empty JSON object.
func nonEmpty(data json.RawMessage) []byte {
	if len(bytes.TrimSpace(data)) == 0 {
		return []byte("{}")
	}
	return data
}
