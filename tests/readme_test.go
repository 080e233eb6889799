package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// The README and the pages under docs/ are held to the code here: their Go
// snippets are lines of the examples, which compile and run; the README's
// quick start is a program that builds; its migration table's forms run in
// Example_migration; its links, and the pages', lead somewhere.

// readmeMaxLines is the README's length at most: what it solves, install,
// the two commands, a quick start, the migration table, the guarantees per
// dialect, links. Everything else is a page under docs/.
const readmeMaxLines = 250

func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// docPages returns the README and the pages under docs/, by path from here.
func docPages(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(pages) == 0 {
		t.Fatal("no pages under docs/")
	}
	return append([]string{"../README.md"}, pages...)
}

var goBlock = regexp.MustCompile("(?s)```go\n(.*?)```")

// exampleLines is the set of the examples' lines, trimmed.
func exampleLines(t *testing.T) (string, map[string]bool) {
	t.Helper()
	examples := readText(t, "example_test.go")
	lines := map[string]bool{}
	for _, l := range strings.Split(examples, "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	return examples, lines
}

// librarySignatures is the set of the library's func declaration lines,
// without their opening brace: a page may show a signature.
func librarySignatures(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("../*.go")
	if err != nil {
		t.Fatal(err)
	}
	sigs := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		for _, l := range strings.Split(readText(t, f), "\n") {
			if strings.HasPrefix(l, "func ") {
				sigs[strings.TrimSuffix(strings.TrimSpace(l), " {")] = true
			}
		}
	}
	return sigs
}

// Every line of the Go snippets of the README and of docs/ is a line of the
// examples, which compile and run, or a signature of the library: the
// snippets cannot drift from the API. The quick start, a whole program, is
// built by TestReadmeQuickStart; from its db.Use on, its lines are the
// examples' too.
func TestReadmeSnippets(t *testing.T) {
	_, lines := exampleLines(t)
	sigs := librarySignatures(t)
	total, quickStarts := 0, 0
	for _, page := range docPages(t) {
		for _, b := range goBlock.FindAllStringSubmatch(readText(t, page), -1) {
			total++
			body := b[1]
			if strings.HasPrefix(body, "package main\n") {
				quickStarts++
				i := strings.Index(body, "db.Use(")
				if i < 0 {
					t.Errorf("%s: the program calls no db.Use", page)
					continue
				}
				body = body[strings.LastIndex(body[:i], "\n")+1:]
			}
			for _, l := range strings.Split(body, "\n") {
				if l = strings.TrimSpace(l); l != "" && !lines[l] && !sigs[l] {
					t.Errorf("%s: line not in tests/example_test.go: %q", page, l)
				}
			}
		}
	}
	if total < 8 {
		t.Errorf("found %d Go snippets in the README and docs/", total)
	}
	if quickStarts != 1 {
		t.Errorf("found %d programs (package main) in the README and docs/, want the quick start", quickStarts)
	}
}

// The README's quick start builds as written, driver import and all, in a
// module with the tests module's requirements.
func TestReadmeQuickStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program with the go command")
	}
	var program string
	for _, b := range goBlock.FindAllStringSubmatch(readText(t, "../README.md"), -1) {
		if strings.HasPrefix(b[1], "package main\n") {
			program = b[1]
		}
	}
	if program == "" {
		t.Fatal("the README has no quick start program (a Go snippet of package main)")
	}
	if !strings.Contains(program, `"gorm.io/driver/`) {
		t.Error("the quick start imports no driver")
	}

	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	gomod := readText(t, "go.mod")
	moduleLine := regexp.MustCompile(`(?m)^module .*$`)
	replaceLine := regexp.MustCompile(`(?m)^replace github.com/safefind/safefind => \.\./?$`)
	if !moduleLine.MatchString(gomod) || !replaceLine.MatchString(gomod) {
		t.Fatal("tests/go.mod has no module line or no replace of the library by ../")
	}
	gomod = moduleLine.ReplaceAllLiteralString(gomod, "module readmequickstart")
	gomod = replaceLine.ReplaceAllLiteralString(gomod, "replace github.com/safefind/safefind => "+root)

	dir := t.TempDir()
	for name, content := range map[string]string{
		"go.mod":  gomod,
		"go.sum":  readText(t, "go.sum"),
		"main.go": program,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "quickstart"), ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the README's quick start does not build: %v\n%s", err, out)
	}
}

// section returns the text of a page's "## title" section, up to the next
// heading of its level.
func section(t *testing.T, page, title string) string {
	t.Helper()
	_, s, ok := strings.Cut(readText(t, page), "\n## "+title+"\n")
	if !ok {
		t.Fatalf("%s has no section %q", page, title)
	}
	s, _, _ = strings.Cut(s, "\n## ")
	return s
}

var codeSpan = regexp.MustCompile("`([^`]+)`")

// The README's migration table gives every FirstOrCreate form beside its
// safefind form, and both are as Example_migration runs them (GORM's in its
// comments).
func TestReadmeMigration(t *testing.T) {
	examples, _ := exampleLines(t)
	table := section(t, "../README.md", "Migrating from FirstOrCreate")
	var gormCol, safefindCol strings.Builder
	rows := 0
	for _, l := range strings.Split(table, "\n") {
		if !strings.HasPrefix(l, "| ") || strings.HasPrefix(l, "| ---") || strings.HasPrefix(l, "| `FirstOrCreate` |") {
			continue
		}
		cells := strings.Split(strings.Trim(l, "| "), " | ")
		if len(cells) != 3 {
			t.Errorf("a row of the migration table has %d cells, want 3: %q", len(cells), l)
			continue
		}
		rows++
		gormCol.WriteString(cells[0] + "\n")
		safefindCol.WriteString(cells[1] + "\n")
		for _, cell := range cells[:2] {
			for _, m := range codeSpan.FindAllStringSubmatch(cell, -1) {
				if !strings.Contains(examples, m[1]) {
					t.Errorf("migration table: %q is not in tests/example_test.go", m[1])
				}
			}
		}
	}
	if rows == 0 {
		t.Fatal("the README's migration table has no rows")
	}
	for _, form := range []string{"`Where`", "inline conditions", "`Attrs`", "`Assign`", "associations", "`Scopes`", "in a transaction", "a loop", "an upsert loop"} {
		if !strings.Contains(gormCol.String(), form) {
			t.Errorf("the migration table has no row for %s", form)
		}
	}
	for _, call := range []string{"safefind.FindOrCreate(", "safefind.CreateOrFind(", "safefind.FindOrCreateAll(", "safefind.CreateOrFindAll(", "safefind.UpsertAll("} {
		if !strings.Contains(safefindCol.String(), call) {
			t.Errorf("the migration table never gives %s", call)
		}
	}
}

// docs/layout.md names every file of the library, and no other.
func TestReadmeLayout(t *testing.T) {
	layout := readText(t, "../docs/layout.md")
	named := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+\\.go)` \\|").FindAllStringSubmatch(layout, -1) {
		named[m[1]] = true
	}
	files, err := filepath.Glob("../*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f = filepath.Base(f)
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		if !named[f] {
			t.Errorf("%s is not in docs/layout.md", f)
		}
		delete(named, f)
	}
	for f := range named {
		t.Errorf("docs/layout.md names %s, which does not exist", f)
	}
}

var (
	fence    = regexp.MustCompile("(?ms)^```.*?^```[ \t]*$")
	heading  = regexp.MustCompile(`(?m)^#{1,6}[ \t]+(.+?)[ \t#]*$`)
	mdLink   = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)
	urlStart = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// githubSlug is the anchor GitHub gives a heading: lower case, letters,
// digits, '-' and '_' kept, spaces turned into '-', the rest dropped.
func githubSlug(text string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(text)) {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// anchors returns the anchors of a Markdown file's headings, with GitHub's
// -1, -2 suffixes on repeated ones.
func anchors(markdown string) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	for _, m := range heading.FindAllStringSubmatch(fence.ReplaceAllString(markdown, ""), -1) {
		slug := githubSlug(m[1])
		if n := seen[slug]; n > 0 {
			out[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			out[slug] = true
		}
		seen[slug]++
	}
	return out
}

// The README stays short, links every page under docs/, and every relative
// link of the README and the pages leads to a file that exists and, for an
// anchor into a Markdown file, to one of its headings.
func TestReadmeShape(t *testing.T) {
	readme := readText(t, "../README.md")
	n := strings.Count(readme, "\n")
	if !strings.HasSuffix(readme, "\n") {
		n++ // a last line without its newline
	}
	if n > readmeMaxLines {
		t.Errorf("the README has %d lines, more than %d: move the detail to a page under docs/", n, readmeMaxLines)
	}

	linked := map[string]bool{} // files the README links, by clean path from here
	for _, page := range docPages(t) {
		text := fence.ReplaceAllString(readText(t, page), "")
		text = codeSpan.ReplaceAllString(text, "")
		for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if urlStart.MatchString(target) {
				continue
			}
			path, frag, _ := strings.Cut(target, "#")
			file := page
			if path != "" {
				file = filepath.Join(filepath.Dir(page), filepath.FromSlash(path))
			}
			if _, err := os.Stat(file); err != nil {
				t.Errorf("%s: link %q: %v", page, target, err)
				continue
			}
			if page == "../README.md" {
				linked[filepath.Clean(file)] = true
			}
			if frag != "" && strings.HasSuffix(file, ".md") && !anchors(readText(t, file))[frag] {
				t.Errorf("%s: link %q: %s has no heading with anchor #%s", page, target, file, frag)
			}
		}
	}
	for _, page := range docPages(t)[1:] {
		if !linked[filepath.Clean(page)] {
			t.Errorf("the README does not link %s", page)
		}
	}
}
