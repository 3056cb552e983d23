// Package problems names the stable problem types that Answerback's
// aggregates and runtime put in rejections (envelope.Problem.Type), and maps
// each to the HTTP status the gateway answers with. Clients may branch on
// these identifiers: they never change meaning.
package problems

import "net/http"

// Problem types. Each is the Type of an envelope.Problem.
const (
	// OrderNotFound: the command addresses an order that does not exist.
	OrderNotFound = "order-not-found"
	// OrderExists: orders.create for an order ID already taken.
	OrderExists = "order-exists"
	// OrderNotOpen: the order was already submitted or cancelled.
	OrderNotOpen = "order-not-open"
	// VersionMismatch: the command's expected version is not the aggregate's.
	VersionMismatch = "version-mismatch"
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
	// InvalidCommand: a command's data is malformed or fails validation.
	InvalidCommand = "invalid-command"
	// UnknownCommand: the aggregate does not know the command type.
	UnknownCommand = "unknown-command"
	// StaleCommand: the command's record is older than what its aggregate
	// remembers, so it may have been applied already; it was dead-lettered.
	StaleCommand = "stale-command"
)

// HTTPStatus returns the HTTP status for problemType: 404 for a missing
// order, 409 for state conflicts and stale commands, 412 for a version mismatch, 422 for
// commands that are well-formed requests but invalid, 400 for an unknown
// command type, and 500 for any type it does not know.
func HTTPStatus(problemType string) int {
	switch problemType {
	case OrderNotFound:
		return http.StatusNotFound
	case OrderExists, OrderNotOpen, StaleCommand:
		return http.StatusConflict
	case VersionMismatch:
		return http.StatusPreconditionFailed
	case EmptyOrder, QuantityOutOfRange, LineLimit, LineNotFound, UnknownSKU, InvalidItem, InvalidCommand:
		return http.StatusUnprocessableEntity
	case UnknownCommand:
		return http.StatusBadRequest
	default:
		return http.StatusInternalServerError
	}
}
