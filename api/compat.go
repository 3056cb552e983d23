package api

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Compatible reports whether schema next may replace the published schema of
// event type typ. Events are kept forever and read by consumers written
// against the published schema, so next may only add: every property of
// published stays, with the same type; no property becomes required (old
// events lack it) and none stops being required (consumers rely on it); a
// bound stays at least as strict (minimum, minLength and maxima, pattern,
// format, const and enum). Nested objects and array items are compared the
// same way; descriptions and new optional properties are free. The error
// names every problem and the type to publish instead:
// "breaking change to <type>: publish <name>.v<n+1> instead: …".
func Compatible(typ string, published, next []byte) error {
	var old, cur map[string]any
	if err := json.Unmarshal(published, &old); err != nil {
		return fmt.Errorf("%s: published schema: %w", typ, err)
	}
	if err := json.Unmarshal(next, &cur); err != nil {
		return fmt.Errorf("%s: new schema: %w", typ, err)
	}
	var problems []string
	compare("", old, cur, &problems)
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("breaking change to %s: publish %s instead: %s", typ, NextVersion(typ), strings.Join(problems, "; "))
}

// NextVersion returns the event type that replaces typ after a breaking
// change: "orders.item-added.v1" → "orders.item-added.v2".
func NextVersion(typ string) string {
	if i := strings.LastIndex(typ, ".v"); i >= 0 {
		if n, err := strconv.Atoi(typ[i+2:]); err == nil && n > 0 {
			return typ[:i] + ".v" + strconv.Itoa(n+1)
		}
	}
	return typ + ".v2"
}

// Bounds whose value may only rise (lower), only fall (upper), or must stay.
var (
	lowerBounds = []string{"minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"}
	upperBounds = []string{"maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"}
	fixed       = []string{"pattern", "format", "const"}
)

// compare appends to problems what makes schema cur break readers of old;
// at names the property ("" for the root).
func compare(at string, old, cur map[string]any, problems *[]string) {
	where := "the data"
	if at != "" {
		where = "property " + at
	}
	add := func(format string, args ...any) {
		*problems = append(*problems, where+": "+fmt.Sprintf(format, args...))
	}
	if o, c := typeOf(old), typeOf(cur); o != c {
		add("type %s became %s", o, c)
		return
	}
	for _, k := range lowerBounds {
		if o, ok := old[k].(float64); ok {
			if c, ok := cur[k].(float64); !ok || c < o {
				add("%s %v loosened to %v", k, o, cur[k])
			}
		}
	}
	for _, k := range upperBounds {
		if o, ok := old[k].(float64); ok {
			if c, ok := cur[k].(float64); !ok || c > o {
				add("%s %v loosened to %v", k, o, cur[k])
			}
		}
	}
	for _, k := range fixed {
		if o, ok := old[k]; ok && !reflect.DeepEqual(o, cur[k]) {
			add("%s %v changed to %v", k, o, cur[k])
		}
	}
	if o, ok := old["enum"].([]any); ok {
		c, ok := cur["enum"].([]any)
		if !ok {
			add("enum dropped")
		}
		for _, v := range c {
			if !slices.ContainsFunc(o, func(w any) bool { return reflect.DeepEqual(v, w) }) {
				add("enum gained %v", v)
			}
		}
	}
	oldReq, curReq := stringSet(old["required"]), stringSet(cur["required"])
	for _, name := range sortedKeys(curReq) {
		if !oldReq[name] {
			add("%s became required", name)
		}
	}
	for _, name := range sortedKeys(oldReq) {
		if !curReq[name] {
			add("%s is no longer required", name)
		}
	}
	oldProps, _ := old["properties"].(map[string]any)
	curProps, _ := cur["properties"].(map[string]any)
	for _, name := range sortedKeys(oldProps) {
		o, _ := oldProps[name].(map[string]any)
		c, ok := curProps[name].(map[string]any)
		if !ok {
			add("%s was removed", name)
			continue
		}
		compare(strings.TrimPrefix(at+"."+name, "."), o, c, problems)
	}
	if o, ok := old["items"].(map[string]any); ok {
		c, _ := cur["items"].(map[string]any)
		compare(at+"[]", o, c, problems)
	}
}

// typeOf is a schema's "type" as one comparable string ("any" when absent).
func typeOf(s map[string]any) string {
	switch t := s["type"].(type) {
	case string:
		return t
	case []any:
		var names []string
		for _, n := range t {
			names = append(names, fmt.Sprint(n))
		}
		slices.Sort(names)
		return strings.Join(names, "|")
	}
	return "any"
}

func stringSet(v any) map[string]bool {
	set := map[string]bool{}
	list, _ := v.([]any)
	for _, s := range list {
		if s, ok := s.(string); ok {
			set[s] = true
		}
	}
	return set
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
