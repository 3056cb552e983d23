package envelope

import "strings"

// LogAttrs are the attributes every log line about m's command carries,
// for slog: command_id, aggregate_id, tenant and trace_id (from the W3C
// traceparent; empty when the command came without one), so that one
// command's lines — in every service — can be found together and next to
// its trace.
func (m Meta) LogAttrs() []any {
	return []any{"command_id", m.CommandID, "aggregate_id", m.AggregateID, "tenant", m.Tenant, "trace_id", TraceID(m.TraceParent)}
}

// TraceID is the trace ID of a W3C traceparent ("00-<trace id>-<span id>-<flags>"),
// or "" when traceparent is not one.
func TraceID(traceparent string) string {
	parts := strings.Split(traceparent, "-")
	if len(parts) < 4 || len(parts[1]) != 32 {
		return ""
	}
	return parts[1]
}
