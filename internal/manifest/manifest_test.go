package manifest_test

import (
	"testing"

	"github.com/regwire/regwire/internal/manifest"
)

func TestSplitKeepsTheDocumentsThatHoldSomething(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		in      string
		indexes []int
	}{
		{"a single document without a marker", "kind: A\n", []int{1}},
		{"empty and comment-only documents are left out but counted", "---\n# nothing\n---\nkind: A\n---\n\n---\nkind: B\n", []int{2, 4}},
		{"a document of JSON", `{"kind": "A"}`, []int{1}},
		{"an empty stream", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			docs, err := manifest.Split([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, d := range docs {
				got = append(got, d.Index)
			}
			if len(got) != len(tc.indexes) {
				t.Fatalf("indexes %v, want %v", got, tc.indexes)
			}
			for i := range got {
				if got[i] != tc.indexes[i] {
					t.Fatalf("indexes %v, want %v", got, tc.indexes)
				}
			}
		})
	}
}

func TestObjectsDecodesEachDocumentAndNamesTheOneThatFails(t *testing.T) {
	t.Parallel()
	objs, err := manifest.Objects([]byte("kind: A\nmetadata: {name: a}\n---\n# only a comment\n---\nkind: B\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 || objs[0]["kind"] != "A" || objs[1]["kind"] != "B" {
		t.Fatalf("objects %v", objs)
	}
	if _, err := manifest.Objects([]byte("kind: A\n---\nkind: [\n")); err == nil || err.Error()[:10] != "document 2" {
		t.Fatalf("a broken second document: error %v, want one naming document 2", err)
	}
}

func FuzzSplit(f *testing.F) {
	for _, s := range []string{"kind: A\n", "---\n# c\n---\nkind: B\n", `{"a":1}`, "a: [\n", "---\n---\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := manifest.Split(data)
		if err != nil {
			return
		}
		last := 0
		for _, d := range docs {
			if d.Index <= last {
				t.Fatalf("indexes not increasing: %d after %d", d.Index, last)
			}
			last = d.Index
		}
	})
}
