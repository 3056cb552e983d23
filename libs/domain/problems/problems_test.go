package problems

import (
	"testing"

	"github.com/answerback/answerback/libs/pipeline/problem"
)

// TestStatuses: the problem table answers the domain's types, and the
// pipeline's it names, with these statuses.
func TestStatuses(t *testing.T) {
	for typ, want := range map[string]int{
		OrderNotFound:      404,
		OrderExists:        409,
		OrderNotOpen:       409,
		VersionMismatch:    412,
		EmptyOrder:         422,
		QuantityOutOfRange: 422,
		LineLimit:          422,
		LineNotFound:       422,
		UnknownSKU:         422,
		InvalidItem:        422,
		InvalidCommand:     422,
		UnknownCommand:     400,
		StaleCommand:       409,
		"":                 500,
		"something-else":   500,
	} {
		if got := problem.Status(typ); got != want {
			t.Errorf("problem.Status(%q) = %d, want %d", typ, got, want)
		}
	}
}
