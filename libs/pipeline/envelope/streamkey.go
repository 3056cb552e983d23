package envelope

import "strings"

// StreamKey is the record key of an aggregate's commands, events, snapshots
// and outcomes, and its name in the projector's change log: its tenant and
// its ID, so that two tenants' aggregates of the same ID are two streams
// that never meet. Tenant names contain no '/'.
func StreamKey(tenant, aggregateID string) string { return tenant + "/" + aggregateID }

// SplitStreamKey is the inverse of StreamKey; ok is false for a key without
// a tenant.
func SplitStreamKey(key string) (tenant, aggregateID string, ok bool) {
	tenant, aggregateID, ok = strings.Cut(key, "/")
	return tenant, aggregateID, ok && tenant != ""
}
