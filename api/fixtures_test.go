package api_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/api"
	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// fixture is a record as a v1 producer wrote it: fixtures/v1/<type>.json.
// Fixtures are frozen: they are never regenerated, so that they keep
// standing for the events already on the topics, which are kept forever.
type fixture struct {
	Topic   string          `json:"topic"`
	Key     string          `json:"key"`
	Headers []header        `json:"headers"`
	Value   json.RawMessage `json:"value"`
}

// header is one record header; a list keeps their order and repeats.
type header struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

func (f fixture) record() *kgo.Record {
	r := &kgo.Record{Topic: f.Topic, Key: []byte(f.Key), Value: f.Value}
	for _, h := range f.Headers {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: []byte(h.Value)})
	}
	return r
}

// TestV1EventsStillRead: every published v1 event as it was written must
// still decode with envelope.DecodeEvent, unmarshal into its data struct
// without a member the struct lost or a type it changed, validate against
// its committed schema, and carry the headers asyncapi.yaml documents.
func TestV1EventsStillRead(t *testing.T) {
	d := loadAsyncAPI(t)
	files, _ := filepath.Glob("fixtures/v1/*.json")
	have := map[string]string{}
	for _, path := range files {
		have[strings.TrimSuffix(filepath.Base(path), ".json")] = path
	}
	for _, e := range api.Events {
		if strings.HasSuffix(e.Type, ".v1") && have[e.Type] == "" {
			t.Errorf("no fixture of v1 event %s: add fixtures/v1/%s.json, a record as it is published", e.Type, e.Type)
		}
	}
	for typ, path := range have {
		t.Run(typ, func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var f fixture
			if err := json.Unmarshal(b, &f); err != nil {
				t.Fatal(err)
			}
			e, ok := api.Lookup(typ)
			if !ok {
				t.Fatalf("%s is no event type of api.Events: a published event type must stay readable", typ)
			}
			ev, err := envelope.DecodeEvent(f.record())
			if err != nil {
				t.Fatalf("DecodeEvent: %v", err)
			}
			if ev.Type != typ {
				t.Fatalf("ce_type %q in %s", ev.Type, path)
			}
			dec := json.NewDecoder(bytes.NewReader(ev.Data))
			dec.DisallowUnknownFields()
			if err := dec.Decode(reflect.New(reflect.TypeOf(e.Data)).Interface()); err != nil {
				t.Errorf("the data does not unmarshal into %T: %v", e.Data, err)
			}
			if err := validate(api.SchemaFile(typ), ev.Data); err != nil {
				t.Errorf("the data does not validate against %s: %v", api.SchemaFile(typ), err)
			}
			all, required := d.headerNames(d.message(t, d.channel(t, f.Topic), typ))
			for _, h := range f.Headers {
				if !slices.Contains(all, h.Key) {
					t.Errorf("header %s is not documented in asyncapi.yaml", h.Key)
				}
			}
			for _, name := range required {
				if !slices.ContainsFunc(f.Headers, func(h header) bool { return h.Key == name }) {
					t.Errorf("required header %s is missing", name)
				}
			}
		})
	}
}

// validate checks data against the JSON Schema in file.
func validate(file string, data []byte) error {
	abs, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	schema, err := c.Compile(abs)
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	if err := schema.Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			detail := fmt.Sprintf("%#v", ve) // every failed keyword; Error names only the root
			return errors.New(detail)
		}
		return err
	}
	return nil
}
