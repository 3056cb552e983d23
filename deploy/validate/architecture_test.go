package validate

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// docs/ARCHITECTURE.md is the map a newcomer reads first; the reasoning
// lives in the design notes under docs/design, one short file per decision.
const (
	architecture = "docs/ARCHITECTURE.md"
	designNotes  = "docs/design"
	// maxArchitectureLines keeps the map short enough to read in minutes:
	// what grows goes into a design note.
	maxArchitectureLines = 150
)

// TestArchitectureIsAMap: docs/ARCHITECTURE.md has at most
// maxArchitectureLines lines, and names every module of go.work and every
// top-level folder of the repository.
func TestArchitectureIsAMap(t *testing.T) {
	t.Parallel()
	text := docRead(t, architecture)
	if n := docLines(text); n > maxArchitectureLines {
		t.Errorf("%s has %d lines, at most %d: move the reasoning into a note under %s and link it", architecture, n, maxArchitectureLines, designNotes)
	}
	named := docCodeSpans(text)
	mentions := func(dir string) bool {
		return slices.ContainsFunc(named, func(s string) bool {
			s = strings.TrimSuffix(strings.TrimPrefix(s, "./"), "/")
			return s == dir || strings.HasPrefix(s, dir+"/")
		})
	}
	want := workspaceModules(t, root)
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			want = append(want, e.Name())
		}
	}
	for _, dir := range want {
		if !mentions(dir) {
			t.Errorf("%s does not name the folder `%s`: add it to the Folders table", architecture, dir)
		}
	}
}

// TestArchitecturePathsExist: every repository path that docs/ARCHITECTURE.md
// or a design note names in backticks exists (see docRepoPath for what counts as
// a path).
func TestArchitecturePathsExist(t *testing.T) {
	t.Parallel()
	top := docTopLevel(t)
	for _, doc := range mapDocs(t) {
		for _, span := range docCodeSpans(docRead(t, doc)) {
			p, ok := docRepoPath(span, top)
			if !ok {
				continue
			}
			if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(p))); err != nil {
				t.Errorf("%s names `%s`, which does not exist", doc, span)
			}
		}
	}
}

// TestArchitectureLinksResolve: every relative link in docs/ARCHITECTURE.md
// and the design notes, and every link from README.md, docs/*.md and
// deploy/README.md into them, reaches a file that exists — and, with a
// #fragment into a Markdown file, one of its headings.
func TestArchitectureLinksResolve(t *testing.T) {
	t.Parallel()
	docs := mapDocs(t)
	others, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	sources := slices.Clone(docs)
	for _, o := range others {
		sources = append(sources, "docs/"+filepath.Base(o))
	}
	sources = append(sources, "README.md", "deploy/README.md")
	slices.Sort(sources)
	sources = slices.Compact(sources)
	intoMap := func(target string) bool {
		return target == architecture || target == designNotes || strings.HasPrefix(target, designNotes+"/")
	}
	for _, doc := range sources {
		fromMap := slices.Contains(docs, doc)
		for _, link := range docLinks(docRead(t, doc)) {
			file, fragment, _ := strings.Cut(link, "#")
			target := doc
			if file != "" {
				target = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(doc), file)))
			}
			if !fromMap && !intoMap(target) {
				continue
			}
			if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(target))); err != nil {
				t.Errorf("%s links to %s: no such file", doc, link)
				continue
			}
			if fragment != "" && strings.HasSuffix(target, ".md") && !slices.Contains(docAnchors(docRead(t, target)), fragment) {
				t.Errorf("%s links to %s: %s has no heading #%s", doc, link, target, fragment)
			}
		}
	}
}

// TestDesignNotesNameRealTests: every design note names the tests that hold
// it, and every test, benchmark or fuzz target that the map or a note names
// in backticks (`TestX`, `BenchmarkX`, `FuzzX`) is a function of a _test.go
// file of the repository.
func TestDesignNotesNameRealTests(t *testing.T) {
	t.Parallel()
	defined := map[string]bool{}
	decl := regexp.MustCompile(`(?m)^func ((?:Test|Benchmark|Fuzz)\w*)\(`)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), "_test.go") {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
				defined[m[1]] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	testName := regexp.MustCompile(`^(?:Test|Benchmark|Fuzz)[A-Z0-9_]\w*$`)
	for _, doc := range mapDocs(t) {
		named := 0
		for _, span := range docCodeSpans(docRead(t, doc)) {
			if !testName.MatchString(span) {
				continue
			}
			named++
			if !defined[span] {
				t.Errorf("%s names `%s`, which is no test function of the repository", doc, span)
			}
		}
		if named == 0 && doc != architecture {
			t.Errorf("%s names no test that holds it", doc)
		}
	}
}

// TestArchitecturePathRule: which backticked tokens are repository paths.
func TestArchitecturePathRule(t *testing.T) {
	t.Parallel()
	top := map[string]bool{"libs": true, "docs": true, "services": true, "Dockerfile": true}
	for _, c := range []struct {
		span, path string
	}{
		{"libs/pipeline/aggregate", "libs/pipeline/aggregate"},
		{"services/gateway/server/http.go", "services/gateway/server/http.go"},
		{"docs/design/exactly-once.md", "docs/design/exactly-once.md"},
		{"./services/abctl", "services/abctl"},
		{"libs/domain/view/migrations/", "libs/domain/view/migrations"},
		{"Dockerfile", ""},                             // no "/": a word, not checked
		{"application/problem+json", ""},               // not a top-level folder
		{"<tenant>/<aggregate ID>", ""},                // a pattern
		{"libs/domain/view/migrations/NNNN_*.sql", ""}, // a pattern
		{"/v1/orders/{id}", ""},                        // a route
		{".cache/kafka", ""},                           // not a tracked folder
		{"go run ./services/abctl status", ""},         // a command
		{"shared/DESIGN.md", ""},                       // another repository
	} {
		got, ok := docRepoPath(c.span, top)
		if ok != (c.path != "") || got != c.path {
			t.Errorf("docRepoPath(%q) = %q, %v; want %q", c.span, got, ok, c.path)
		}
	}
	missing := "libs/pipeline/no-such-package"
	if p, ok := docRepoPath(missing, docTopLevel(t)); !ok {
		t.Errorf("docRepoPath(%q) is no path", missing)
	} else if _, err := os.Stat(filepath.Join(root, p)); err == nil {
		t.Errorf("%s exists", p)
	}
}

// docRepoPath reports whether a backticked span names a path in the
// repository, and which: a single token of letters, digits, '.', '_', '-'
// and '/' (no spaces, placeholders or wildcards), that contains a '/' and
// whose first element is a top-level entry of the repository, not a hidden
// one. A leading "./" and a trailing "/" are dropped.
func docRepoPath(span string, top map[string]bool) (string, bool) {
	p := strings.TrimPrefix(span, "./")
	if !strings.Contains(p, "/") || strings.IndexFunc(p, func(r rune) bool {
		return r >= unicode.MaxASCII || !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("._-/", r)
	}) >= 0 {
		return "", false
	}
	first, _, _ := strings.Cut(p, "/")
	if strings.HasPrefix(first, ".") || !top[first] {
		return "", false
	}
	return strings.TrimSuffix(p, "/"), true
}

// docTopLevel are the repository's top-level files and folders, hidden ones
// (caches, data, .git) left out.
func docTopLevel(t *testing.T) map[string]bool {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	top := map[string]bool{}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			top[e.Name()] = true
		}
	}
	return top
}

// mapDocs are docs/ARCHITECTURE.md and the design notes, relative to root.
func mapDocs(t *testing.T) []string {
	t.Helper()
	notes, err := filepath.Glob(filepath.Join(root, designNotes, "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) == 0 {
		t.Fatalf("no design notes in %s", designNotes)
	}
	docs := []string{architecture}
	for _, n := range notes {
		docs = append(docs, designNotes+"/"+filepath.Base(n))
	}
	return docs
}

func docRead(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func docLines(text string) int {
	n := strings.Count(text, "\n")
	if text != "" && !strings.HasSuffix(text, "\n") {
		n++
	}
	return n
}

// docProse is text without its fenced code blocks (``` or ~~~), whose content
// is a diagram or an example, not Markdown.
func docProse(text string) string {
	var out []string
	fence := ""
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case fence == "" && (strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~")):
			fence = trimmed[:3]
		case fence != "" && strings.HasPrefix(trimmed, fence):
			fence = ""
		case fence == "":
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

var docCodeSpan = regexp.MustCompile("`([^`]+)`")

// docCodeSpans are the contents of the inline code spans outside code blocks
// (a span may wrap across lines).
func docCodeSpans(text string) []string {
	var spans []string
	for _, m := range docCodeSpan.FindAllStringSubmatch(docProse(text), -1) {
		spans = append(spans, strings.TrimSpace(m[1]))
	}
	return spans
}

var docLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// docLinks are the relative targets of the Markdown links and images outside
// code spans and code blocks.
func docLinks(text string) []string {
	var out []string
	for _, m := range docLink.FindAllStringSubmatch(docCodeSpan.ReplaceAllString(docProse(text), ""), -1) {
		if target := m[1]; !strings.Contains(target, "://") && !strings.HasPrefix(target, "mailto:") {
			out = append(out, target)
		}
	}
	return out
}

var docHeading = regexp.MustCompile(`(?m)^#{1,6}[ \t]+(.+?)[ \t#]*$`)

// docAnchors are the fragments GitHub gives a document's headings:
// lower case, punctuation dropped, spaces as hyphens, repeats numbered.
func docAnchors(text string) []string {
	seen := map[string]int{}
	var anchors []string
	for _, m := range docHeading.FindAllStringSubmatch(docProse(text), -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			anchors = append(anchors, a+"-"+strconv.Itoa(n))
		} else {
			anchors = append(anchors, a)
		}
		seen[a]++
	}
	return anchors
}
