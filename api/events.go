// Package api publishes Answerback's event contract for services outside it:
// a JSON Schema (draft 2020-12) of the data of every event type, generated
// from the domain's Go types, and the rules by which those schemas may
// change. The AsyncAPI document beside it (asyncapi.yaml) describes every
// topic; docs/EVENTS.md is the consumers' summary.
//
// The schemas are generated, not written by hand: a schema written apart
// from the type that is marshalled would drift from it. The Go types say
// which properties exist, their JSON types and which are required — a field
// without omitempty is always written, so it is required; what they cannot
// say (what a property means, the lower bounds Decide enforces on every
// event) is added here, in Events, from one entry per event type.
//
// Evolution. The schema files under schemas/events are published: once
// committed, a schema changes only compatibly (see Compatible) — properties
// are added as optional, never removed, retyped or made required. A breaking
// change is a new event type, <name>.v2, published beside the old one, whose
// schema is a new file. WriteSchemas, behind `go generate`, refuses to
// overwrite a published schema with an incompatible one.
package api

import (
	"fmt"

	"github.com/answerback/answerback/libs/domain/catalog"
	"github.com/answerback/answerback/libs/domain/orders"
)

//go:generate go run ./cmd/gen

// SchemaIDBase is the base of every event schema's $id: the schema files'
// location in the repository, so that an $id can be fetched.
const SchemaIDBase = "https://github.com/answerback/answerback/raw/main/api/"

// SchemaDir is the directory of the event schemas, relative to the api
// module; the schema of event type T is SchemaDir/T.json.
const SchemaDir = "schemas/events"

// EventType is one published event type: its CloudEvents type, the Go type
// of its data, and what the Go type cannot say about it.
type EventType struct {
	Type   string // ce_type, e.g. "orders.item-added.v1"
	Domain string // the domain whose <domain>.events topic carries it
	// Data is a zero value of the struct the data is marshalled from and
	// unmarshalled into.
	Data        any
	Description string
	// Fields describes every JSON property of Data, by name: a property
	// without an entry, or an entry without a property, fails generation.
	Fields map[string]Field
}

// Field is what the schema says of one property beyond its JSON type.
type Field struct {
	Description string
	MinLength   uint64 // 0: no lower bound
	Minimum     *int64 // nil: no lower bound
	Pattern     string // "": any string
}

// SchemaFile is the path of the schema of event type typ, relative to the
// api module.
func SchemaFile(typ string) string { return SchemaDir + "/" + typ + ".json" }

func atLeast(n int64) *int64 { return &n }

const currencyPattern = "^[A-Z]{3}$"

// Events are every event type Answerback publishes. A new event type of a
// domain is added here and gets its schema from `go generate`; the tests
// fail while a domain declares an Event* type constant missing here.
var Events = []EventType{
	{
		Type: orders.EventCreated, Domain: orders.Name, Data: orders.Created{},
		Description: "An order was created. It is open and has no lines.",
		Fields: map[string]Field{
			"orderId":    {Description: "The order's ID: the record key and ce_subject."},
			"customerId": {Description: fmt.Sprintf("The customer the order belongs to: 1 to %d characters, not blank.", orders.MaxCustomerIDLength), MinLength: 1},
			"currency":   {Description: "The ISO 4217 code the order is priced in (EUR when the command named none).", Pattern: currencyPattern},
		},
	},
	{
		Type: orders.EventItemAdded, Domain: orders.Name, Data: orders.ItemAdded{},
		Description: "Units of a SKU were added to an open order. A line for the SKU is created when the order has none; " +
			"the line's quantity is the sum of the SKU's item-added quantities since the order's last item-removed event for it.",
		Fields: map[string]Field{
			"sku":      {Description: fmt.Sprintf("The catalog item's SKU (1 to %d bytes).", orders.MaxSKULength), MinLength: 1},
			"quantity": {Description: fmt.Sprintf("The units added, not the line's new total. A line holds at most %d units today.", orders.MaxLineQuantity), Minimum: atLeast(1)},
		},
	},
	{
		Type: orders.EventItemRemoved, Domain: orders.Name, Data: orders.ItemRemoved{},
		Description: "A SKU's line was removed from an open order, whatever its quantity.",
		Fields: map[string]Field{
			"sku": {Description: "The SKU whose line is gone.", MinLength: 1},
		},
	},
	{
		Type: orders.EventSubmitted, Domain: orders.Name, Data: orders.Submitted{},
		Description: "The order was submitted: its lines now hold stock, and it is final (no event of this order follows).",
		Fields:      map[string]Field{},
	},
	{
		Type: orders.EventCancelled, Domain: orders.Name, Data: orders.Cancelled{},
		Description: "The order was cancelled: it is final (no event of this order follows).",
		Fields:      map[string]Field{},
	},
	{
		Type: catalog.EventItemUpserted, Domain: catalog.Name, Data: catalog.Item{},
		Description: "A catalog item was created or replaced. The data is the whole item, so the latest event of a SKU is its current state.",
		Fields: map[string]Field{
			"sku":         {Description: fmt.Sprintf("The item's SKU: the record key and ce_subject (1 to %d bytes).", catalog.MaxSKULength), MinLength: 1},
			"name":        {Description: fmt.Sprintf("The item's name: 1 to %d characters, not blank.", catalog.MaxNameLength), MinLength: 1},
			"unitPrice":   {Description: "The price of one unit in minor units of currency (e.g. cents).", Minimum: atLeast(0)},
			"currency":    {Description: "The ISO 4217 code of unitPrice.", Pattern: currencyPattern},
			"stock":       {Description: "Units in stock.", Minimum: atLeast(0)},
			"maxPerOrder": {Description: "The most units of this item one order may hold.", Minimum: atLeast(1)},
			"active":      {Description: "Whether the item can be ordered; inactive items cannot."},
		},
	},
}

// Lookup returns the event type typ from Events.
func Lookup(typ string) (EventType, bool) {
	for _, e := range Events {
		if e.Type == typ {
			return e, true
		}
	}
	return EventType{}, false
}
