package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/invopop/jsonschema"
)

// Schema returns the JSON Schema (draft 2020-12) of e's data, as it is
// committed: indented JSON ending in a newline. The properties, their JSON
// types and the required ones come from the Go type (a field without
// omitempty is required); $id, title, descriptions and lower bounds from e.
// Unknown properties are allowed: consumers must ignore them, so that
// properties can be added. It fails when e.Fields and the Go type's
// properties differ.
func (e EventType) Schema() ([]byte, error) {
	r := &jsonschema.Reflector{ExpandedStruct: true, DoNotReference: true, AllowAdditionalProperties: true}
	s := r.Reflect(e.Data)
	s.ID = jsonschema.ID(SchemaIDBase + SchemaFile(e.Type))
	s.Title = e.Type
	s.Description = e.Description
	s.AdditionalProperties = jsonschema.TrueSchema
	var errs []error
	seen := map[string]bool{}
	for pair := s.Properties.Oldest(); pair != nil; pair = pair.Next() {
		f, ok := e.Fields[pair.Key]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: property %s has no entry in api.Events: describe it", e.Type, pair.Key))
			continue
		}
		seen[pair.Key] = true
		p := pair.Value
		p.Description = f.Description
		p.Pattern = f.Pattern
		if f.MinLength > 0 {
			p.MinLength = &f.MinLength
		}
		if f.Minimum != nil {
			p.Minimum = json.Number(strconv.FormatInt(*f.Minimum, 10))
		}
	}
	for name := range e.Fields {
		if !seen[name] {
			errs = append(errs, fmt.Errorf("%s: api.Events describes %s, which %T does not have", e.Type, name, e.Data))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.Type, err)
	}
	return append(b, '\n'), nil
}

// WriteSchemas writes the schema of every event type of Events to
// dir/SchemaFile(type), dir being the api module's directory, and returns the
// files it changed. A schema already committed is replaced only by a
// compatible one (Compatible): on a breaking change the file is left as it
// is, the other types are still written, and the error names the type to
// publish instead. Files of types no longer in Events are left alone.
func WriteSchemas(dir string) ([]string, error) {
	var changed []string
	var errs []error
	for _, e := range Events {
		next, err := e.Schema()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		path := filepath.Join(dir, SchemaFile(e.Type))
		published, err := os.ReadFile(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			errs = append(errs, err)
			continue
		case bytes.Equal(published, next):
			continue
		default:
			if err := Compatible(e.Type, published, next); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.WriteFile(path, next, 0o644); err != nil {
			errs = append(errs, err)
			continue
		}
		changed = append(changed, path)
	}
	return changed, errors.Join(errs...)
}
