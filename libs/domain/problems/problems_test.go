package problems

import "testing"

func TestHTTPStatus(t *testing.T) {
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
		if got := HTTPStatus(typ); got != want {
			t.Errorf("HTTPStatus(%q) = %d, want %d", typ, got, want)
		}
	}
}
