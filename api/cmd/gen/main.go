// Command gen writes the JSON Schema of every published event type
// (api.Events) to the api module's schemas/events directory. Run it from the
// repository root, `go run ./api/cmd/gen`, or as `go generate ./...` in api/.
//
// It never overwrites a published schema with an incompatible one: for a
// breaking change it leaves that file as it is, says which event type to
// publish instead, and exits 1. Other schemas are written all the same.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/answerback/answerback/api"
)

const modulePath = "github.com/answerback/answerback/api"

func main() {
	dir := flag.String("dir", "", "the api module's directory (default: . or ./api, whichever it is)")
	flag.Parse()
	if *dir == "" {
		d, err := moduleDir()
		if err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(2)
		}
		*dir = d
	}
	changed, err := api.WriteSchemas(*dir)
	for _, path := range changed {
		fmt.Println("wrote", path)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// moduleDir finds the api module from the directory gen runs in: the
// module itself (go generate) or the repository root (go run ./api/cmd/gen).
func moduleDir() (string, error) {
	for _, d := range []string{".", "api"} {
		if isModule(filepath.Join(d, "go.mod")) {
			return d, nil
		}
	}
	return "", errors.New("run from the repository root or from api/, or name the module's directory with -dir")
}

func isModule(goMod string) bool {
	f, err := os.Open(goMod)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if line := strings.TrimSpace(s.Text()); strings.HasPrefix(line, "module ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "module ")) == modulePath
		}
	}
	return false
}
