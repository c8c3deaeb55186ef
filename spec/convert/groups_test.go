package convert

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// The document /docs/ shows is written for readers: a description that
// says what the API is (the "generated, do not edit" note is an extension
// readers never see), every operation under one tag of its version's
// group, in the menu's sections, and no title shown twice.
func TestDocumentIsGroupedForReaders(t *testing.T) {
	srcs, err := ReadDir(filepath.Join("..", ""))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Convert(context.Background(), srcs, DocumentInfo)
	if err != nil {
		t.Fatal(err)
	}
	doc := res.Doc
	if d := doc.Info.Description; strings.Contains(strings.ToLower(d), "do not edit") || strings.Contains(d, "specgen") || !strings.Contains(d, "Identity Service API") {
		t.Errorf("info.description is not written for readers: %q", d)
	}
	if doc.Extensions["x-generated-by"] != GeneratedBy {
		t.Errorf("x-generated-by %v", doc.Extensions["x-generated-by"])
	}
	grouped := map[string]string{}
	groups, _ := doc.Extensions["x-tagGroups"].([]any)
	for _, g := range groups {
		g := g.(map[string]any)
		for _, tag := range g["tags"].([]any) {
			grouped[tag.(string)] = g["name"].(string)
		}
	}
	declared := map[string]bool{}
	for _, tag := range doc.Tags {
		declared[tag.Name] = true
		if grouped[tag.Name] == "" {
			t.Errorf("tag %q is in no x-tagGroups group", tag.Name)
		}
	}
	titles := map[string]string{}
	n := 0
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			n++
			where := method + " " + path
			if len(op.Tags) != 1 || !declared[op.Tags[0]] {
				t.Errorf("%s: tags %v, want one declared tag", where, op.Tags)
				continue
			}
			group := grouped[op.Tags[0]]
			switch {
			case strings.HasPrefix(path, "/_matrix/identity/v2"):
				if group != "Identity API v2" {
					t.Errorf("%s is in group %q", where, group)
				}
			case strings.HasPrefix(path, "/_matrix/identity/api/v1"):
				if group != "Identity API v1 (deprecated)" || !strings.HasSuffix(op.Summary, "v1)") {
					t.Errorf("%s is in group %q, titled %q", where, group, op.Summary)
				}
			}
			if other, ok := titles[op.Summary]; ok {
				t.Errorf("%s and %s share the title %q", where, other, op.Summary)
			}
			titles[op.Summary] = where
		}
	}
	if len(groups) < 2 || len(doc.Tags) < 10 || n < 40 {
		t.Errorf("%d groups, %d tags, %d operations", len(groups), len(doc.Tags), n)
	}
}
