// Package problems names the problem types of the reference domain's
// rejections (envelope.Problem.Type) and defines them in the one problem
// table (libs/pipeline/problem), with their titles and HTTP statuses; the
// pipeline's own types (version-mismatch, invalid-command, unknown-command,
// stale-command) are the table's. Clients may branch on these identifiers:
// they never change meaning.
package problems

import (
	"net/http"

	"github.com/answerback/answerback/libs/pipeline/problem"
)

// Problem types. Each is the Type of an envelope.Problem.
const (
	// OrderNotFound: the command addresses an order that does not exist.
	OrderNotFound = "order-not-found"
	// OrderExists: orders.create for an order ID already taken.
	OrderExists = "order-exists"
	// OrderNotOpen: the order was already submitted or cancelled.
	OrderNotOpen = "order-not-open"
	// EmptyOrder: an order without lines cannot be submitted.
	EmptyOrder = "empty-order"
	// QuantityOutOfRange: a quantity, or the line quantity it results in, is out of range.
	QuantityOutOfRange = "quantity-out-of-range"
	// LineLimit: the order already has the maximum number of distinct lines.
	LineLimit = "line-limit"
	// LineNotFound: the order has no line for the SKU.
	LineNotFound = "line-not-found"
	// UnknownSKU: the SKU is not in the catalog.
	UnknownSKU = "unknown-sku"
	// InvalidItem: a catalog item's fields are invalid.
	InvalidItem = "invalid-item"

	// The pipeline's, under the names the domain's code uses.
	VersionMismatch = problem.VersionMismatch
	InvalidCommand  = problem.InvalidCommand
	UnknownCommand  = problem.UnknownCommand
	StaleCommand    = problem.StaleCommand
)

func init() {
	problem.Define(
		problem.Type{Name: OrderNotFound, Title: "order not found", Status: http.StatusNotFound, Rejection: true},
		problem.Type{Name: OrderExists, Title: "an order with this ID exists", Status: http.StatusConflict, Rejection: true},
		problem.Type{Name: OrderNotOpen, Title: "the order is no longer open", Status: http.StatusConflict, Rejection: true},
		problem.Type{Name: EmptyOrder, Title: "an order without lines cannot be submitted", Status: http.StatusUnprocessableEntity, Rejection: true},
		problem.Type{Name: QuantityOutOfRange, Title: "quantity out of range", Status: http.StatusUnprocessableEntity, Rejection: true},
		problem.Type{Name: LineLimit, Title: "the order has the most lines it may", Status: http.StatusUnprocessableEntity, Rejection: true},
		problem.Type{Name: LineNotFound, Title: "the order has no line for this SKU", Status: http.StatusUnprocessableEntity, Rejection: true},
		problem.Type{Name: UnknownSKU, Title: "unknown SKU", Status: http.StatusUnprocessableEntity, Rejection: true},
		problem.Type{Name: InvalidItem, Title: "invalid catalog item", Status: http.StatusUnprocessableEntity, Rejection: true},
	)
}
