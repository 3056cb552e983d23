package server

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// preferences are what the client asked for in Prefer (RFC 7240).
type preferences struct {
	wait    time.Duration
	async   bool
	applied []string
}

// parsePrefer reads Prefer: respond-async and wait=<seconds> (capped by
// max); unknown preferences are ignored, as RFC 7240 says.
func parsePrefer(h http.Header, def, max time.Duration) preferences {
	p := preferences{wait: def}
	for _, line := range h.Values("Prefer") {
		for _, pref := range strings.Split(line, ",") {
			name, value, _ := strings.Cut(strings.TrimSpace(pref), "=")
			name = strings.ToLower(strings.TrimSpace(name))
			value = strings.Trim(strings.TrimSpace(value), `"`)
			switch name {
			case "respond-async":
				p.async = true
			case "wait":
				if secs, err := strconv.ParseFloat(value, 64); err == nil && secs >= 0 {
					p.wait = max // compared in seconds first: a huge wait would overflow a Duration
					if secs < max.Seconds() {
						p.wait = time.Duration(secs * float64(time.Second))
					}
					p.applied = append(p.applied, "wait="+strconv.FormatFloat(p.wait.Seconds(), 'f', -1, 64))
				}
			}
		}
	}
	if p.async {
		p.applied = append(p.applied, "respond-async")
	}
	return p
}

// parseIfMatch reads If-Match: "<version>" (weak or strong; a bare number is
// taken too). Absent or "*": NoVersion. Anything else is an error.
func parseIfMatch(h http.Header) (int64, error) {
	values := h.Values("If-Match")
	if len(values) == 0 {
		return envelope.NoVersion, nil
	}
	v := strings.TrimSpace(values[0])
	if len(values) > 1 || v == "" {
		return 0, fmt.Errorf(`If-Match %q: want one version, e.g. "3"`, strings.Join(values, ", "))
	}
	if v == "*" {
		return envelope.NoVersion, nil
	}
	v = strings.TrimPrefix(v, "W/")
	unquoted := v
	if strings.HasPrefix(v, `"`) {
		var err error
		if unquoted, err = strconv.Unquote(v); err != nil {
			return 0, fmt.Errorf(`If-Match %q: want a quoted version, e.g. "3"`, v)
		}
	}
	n, err := strconv.ParseInt(unquoted, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf(`If-Match %q: want a quoted version, e.g. "3"`, v)
	}
	return n, nil
}
