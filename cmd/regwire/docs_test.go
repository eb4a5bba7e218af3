//go:build !lean

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// TestTheDocsNameOnlyWhatExists reads README.md and docs/*.md the way a newcomer follows
// them, and fails on anything they name in code that does not exist: a make target, a
// regwire command or one of its flags, a field of regwire's CRDs (spec.… and status.…).
// The docs cannot drift from the tree without this test saying where.
func TestTheDocsNameOnlyWhatExists(t *testing.T) {
	t.Parallel()
	docs, _ := filepath.Glob("../../docs/*.md")
	docs = append([]string{"../../README.md"}, docs...)
	targets := makeTargets(t)
	root := newRootCommand()
	root.InitDefaultCompletionCmd()
	allFlags := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) { allFlags[f.Name] = true })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	schemas := crdSchemas(t)

	checked := 0
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(doc, "../../")
		for _, c := range codeIn(string(b)) {
			where := name + ":" + c.line
			switch fields := strings.Fields(c.text); {
			case len(fields) == 0:
			case fields[0] == "make":
				for _, target := range fields[1:] {
					if !regexp.MustCompile(`^[a-z][a-z0-9-]*$`).MatchString(target) {
						break
					}
					checked++
					if !targets[target] {
						t.Errorf("%s: `make %s`: the Makefile has no target %s", where, target, target)
					}
				}
			case fields[0] == "regwire" && len(fields) > 1 && regexp.MustCompile(`^[a-z-]+$`).MatchString(fields[1]):
				checked++
				cmd, rest, err := root.Find(fields[1:])
				if err != nil || cmd == root {
					t.Errorf("%s: `%s`: no such regwire command", where, c.text)
					continue
				}
				for _, arg := range rest {
					flag, ok := flagName(arg)
					if !ok {
						continue
					}
					checked++
					found := flag == "help" || cmd.Flags().Lookup(flag) != nil || cmd.InheritedFlags().Lookup(flag) != nil ||
						(len(flag) == 1 && cmd.Flags().ShorthandLookup(flag) != nil)
					if !found {
						t.Errorf("%s: `%s`: regwire %s has no flag %s", where, c.text, cmd.Name(), arg)
					}
				}
			case regexp.MustCompile(`^--[a-z][a-z0-9-]*(=|$)`).MatchString(fields[0]):
				flag, _ := flagName(fields[0])
				checked++
				if !allFlags[flag] {
					t.Errorf("%s: `%s`: no regwire command has the flag --%s", where, c.text, flag)
				}
			case regexp.MustCompile(`^(spec|status)(\.[A-Za-z_]+(\[\])?)+$`).MatchString(fields[0]) && len(fields) == 1:
				checked++
				if !schemas.has(fields[0]) {
					t.Errorf("%s: `%s`: no such field in RegistryMirror, ImageSync or RegistryNode", where, fields[0])
				}
			}
		}
	}
	if checked < 100 {
		t.Fatalf("checked only %d names in the docs: the reader of the docs lost its way", checked)
	}
	for _, doc := range docs {
		for _, problem := range brokenLinks(t, doc) {
			t.Error(problem)
		}
	}
	t.Logf("checked %d make targets, commands, flags and fields named in %d files", checked, len(docs))
}

// code is a piece of code in a markdown file: an inline span or one line of a fenced block.
type code struct{ text, line string }

// codeIn returns the inline code spans and the lines of fenced blocks of a markdown text,
// shell prompts and comments taken off.
func codeIn(md string) []code {
	var out []code
	inFence := false
	span := regexp.MustCompile("`([^`]+)`")
	continued := ""
	for i, line := range strings.Split(md, "\n") {
		n := strconv.Itoa(i + 1)
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
			continue
		}
		if inFence {
			// A command continued on the next line is one command.
			if strings.HasSuffix(line, "\\") {
				continued += strings.TrimSuffix(line, "\\") + " "
				continue
			}
			line, continued = continued+line, ""
			text, _, _ := strings.Cut(line, " #")
			text = strings.TrimPrefix(strings.TrimSpace(text), "$ ")
			// Several commands on a line: each one of them.
			for _, part := range regexp.MustCompile(`&&|;|\|`).Split(text, -1) {
				out = append(out, code{text: strings.TrimSpace(part), line: n})
			}
			continue
		}
		for _, m := range span.FindAllStringSubmatch(line, -1) {
			out = append(out, code{text: strings.TrimSpace(m[1]), line: n})
		}
	}
	return out
}

// flagName is the name of a flag argument (--name, --name=value, -f), or false.
func flagName(arg string) (string, bool) {
	switch {
	case strings.HasPrefix(arg, "--") && len(arg) > 2:
		name, _, _ := strings.Cut(arg[2:], "=")
		return strings.Trim(name, ",.:;)"), true
	case strings.HasPrefix(arg, "-") && len(arg) == 2:
		return arg[1:], true
	}
	return "", false
}

// makeTargets reads the targets the Makefile defines.
func makeTargets(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([a-z][a-z0-9-]*):`).FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = true
	}
	if !out["test"] || !out["demo"] {
		t.Fatalf("read %d targets from the Makefile, without test or demo", len(out))
	}
	return out
}

// schemaSet holds the OpenAPI schemas of regwire's CRDs.
type schemaSet []apiextensionsv1.JSONSchemaProps

func crdSchemas(t *testing.T) schemaSet {
	t.Helper()
	files, err := filepath.Glob("../../config/crd/bases/*.yaml")
	if err != nil || len(files) < 3 {
		t.Fatalf("CRDs in config/crd/bases: %v (%v)", files, err)
	}
	var out schemaSet
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(b, crd); err != nil {
			t.Fatal(err)
		}
		for _, v := range crd.Spec.Versions {
			out = append(out, *v.Schema.OpenAPIV3Schema)
		}
	}
	return out
}

// has says whether some CRD has the field path, such as status.nodes.failing[].reason.
func (s schemaSet) has(path string) bool {
	parts := strings.Split(strings.ReplaceAll(path, "[]", ""), ".")
	return slices.ContainsFunc(s, func(schema apiextensionsv1.JSONSchemaProps) bool {
		at := &schema
		for _, p := range parts {
			for at.Items != nil && at.Items.Schema != nil {
				at = at.Items.Schema
			}
			next, ok := at.Properties[p]
			if !ok {
				return false
			}
			at = &next
		}
		return true
	})
}

// brokenLinks lists the links of a markdown file to a file of the tree or a heading that
// do not lead anywhere.
func brokenLinks(t *testing.T, doc string) []string {
	t.Helper()
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile(`\]\(([^)\s]+)\)`).FindAllStringSubmatch(string(b), -1) {
		target := m[1]
		if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
			continue
		}
		file, anchor, _ := strings.Cut(target, "#")
		path := doc
		if file != "" {
			path = filepath.Join(filepath.Dir(doc), file)
			if _, err := os.Stat(path); err != nil {
				out = append(out, fmt.Sprintf("%s: link %s: no such file", doc, target))
				continue
			}
		}
		if anchor != "" && !slices.Contains(anchors(t, path), anchor) {
			out = append(out, fmt.Sprintf("%s: link %s: no such heading", doc, target))
		}
	}
	return out
}

// anchors are the GitHub anchors of a markdown file's headings.
func anchors(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^#+ (.+)$`).FindAllStringSubmatch(string(b), -1) {
		a := strings.ToLower(m[1])
		a = regexp.MustCompile(`[^a-z0-9 _-]`).ReplaceAllString(a, "")
		out = append(out, strings.ReplaceAll(a, " ", "-"))
	}
	return out
}
