//go:build linux

package containers

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// manifest is a Kubernetes manifest read by readManifest: every scalar by
// its path, "DOC.key.key[INDEX].key" (DOC counts the documents from 0),
// and the kind of each document.
type manifest struct {
	values map[string]string
	kinds  []string
}

// readManifest reads the subset of YAML that examples/kubernetes is
// written in, with no YAML dependency in the module: block mappings and
// sequences, one entry a line, a sequence indented under its key; plain,
// double- or single-quoted scalars; flow sequences of strings written as
// JSON (["a", "b"]); "|" and ">" block scalars; full-line comments; "---"
// between documents. Anything else is an error, not a guess.
func readManifest(text string) (*manifest, error) {
	m := &manifest{values: map[string]string{}}
	type frame struct {
		indent int    // of the line that opened it
		path   string // of the mapping or sequence it opened
		next   int    // the index of the sequence's next item
	}
	doc := 0
	stack := []frame{{indent: -1, path: "0"}}
	m.kinds = append(m.kinds, "")
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		raw := strings.TrimRight(lines[i], " \t\r")
		content := strings.TrimLeft(raw, " ")
		indent := len(raw) - len(content)
		switch {
		case content == "" || strings.HasPrefix(content, "#"):
			continue
		case strings.ContainsRune(raw, '\t'):
			return nil, fmt.Errorf("line %d: a tab", i+1)
		case content == "---":
			doc++
			stack = []frame{{indent: -1, path: strconv.Itoa(doc)}}
			m.kinds = append(m.kinds, "")
			continue
		}
		for len(stack) > 1 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		// One line may be an item ("- ") whose content is itself the
		// first entry of a mapping: handle the item, then go on with
		// the rest as if it stood two columns further right.
		for {
			top := &stack[len(stack)-1]
			if item, ok := strings.CutPrefix(content, "- "); ok {
				path := fmt.Sprintf("%s[%d]", top.path, top.next)
				top.next++
				if !isEntry(item) {
					v, err := scalar(item)
					if err != nil {
						return nil, fmt.Errorf("line %d: %w", i+1, err)
					}
					m.values[path] = v
					break
				}
				stack = append(stack, frame{indent: indent, path: path})
				content, indent = item, indent+2
				continue
			}
			key, value, ok := strings.Cut(content, ":")
			if !ok || key == "" || strings.ContainsAny(key, " \"'") || value != "" && value[0] != ' ' {
				return nil, fmt.Errorf("line %d: not a key: value or - item: %q", i+1, content)
			}
			value = strings.TrimSpace(value)
			path := top.path + "." + key
			switch {
			case value == "":
				stack = append(stack, frame{indent: indent, path: path})
			case value == "|" || value == ">":
				// A block scalar: every following line indented more
				// than the key, or empty.
				var block []string
				for i+1 < len(lines) {
					next := strings.TrimRight(lines[i+1], " \r")
					if next != "" && len(next)-len(strings.TrimLeft(next, " ")) <= indent {
						break
					}
					block = append(block, strings.TrimSpace(next))
					i++
				}
				sep := "\n"
				if value == ">" {
					sep = " "
				}
				m.values[path] = strings.TrimSpace(strings.Join(block, sep)) + "\n"
			case strings.HasPrefix(value, "["):
				var items []string
				if err := json.Unmarshal([]byte(value), &items); err != nil {
					return nil, fmt.Errorf("line %d: a flow sequence that is not a JSON array of strings: %w", i+1, err)
				}
				for j, it := range items {
					m.values[fmt.Sprintf("%s[%d]", path, j)] = it
				}
			default:
				v, err := scalar(value)
				if err != nil {
					return nil, fmt.Errorf("line %d: %w", i+1, err)
				}
				m.values[path] = v
				if key == "kind" && len(stack) == 1 {
					m.kinds[doc] = v
				}
			}
			break
		}
	}
	return m, nil
}

// isEntry reports whether s is "key: value" or "key:".
func isEntry(s string) bool {
	key, value, ok := strings.Cut(s, ":")
	return ok && key != "" && !strings.ContainsAny(key, " \"'[") && (value == "" || value[0] == ' ')
}

// scalar decodes a plain or quoted scalar.
func scalar(s string) (string, error) {
	switch {
	case strings.HasPrefix(s, `"`):
		return strconv.Unquote(s)
	case strings.HasPrefix(s, "'"):
		if len(s) < 2 || !strings.HasSuffix(s, "'") {
			return "", fmt.Errorf("unterminated %s", s)
		}
		return strings.ReplaceAll(s[1:len(s)-1], "''", "'"), nil
	case strings.ContainsAny(s, "{}[]&*!|>%@`#"):
		return "", fmt.Errorf("a scalar this reader does not understand: %q", s)
	}
	return s, nil
}

// doc returns the index of the document of the kind, or -1.
func (m *manifest) doc(kind string) int {
	for i, k := range m.kinds {
		if k == kind {
			return i
		}
	}
	return -1
}

// get returns the scalar at path.
func (m *manifest) get(path string) (string, bool) {
	v, ok := m.values[path]
	return v, ok
}

// list returns the items of the sequence at path.
func (m *manifest) list(path string) []string {
	var out []string
	for i := 0; ; i++ {
		v, ok := m.values[fmt.Sprintf("%s[%d]", path, i)]
		if !ok {
			return out
		}
		out = append(out, v)
	}
}

// has reports whether anything is at or under path.
func (m *manifest) has(path string) bool {
	for k := range m.values {
		if k == path || strings.HasPrefix(k, path+".") || strings.HasPrefix(k, path+"[") {
			return true
		}
	}
	return false
}

func TestReadManifest(t *testing.T) {
	t.Parallel()
	const text = `# a comment
kind: ConfigMap
data:
  config.json: |
    {"a": 1}
    {"b": 2}
  other: "quoted: yes"
---
kind: Deployment
spec:
  containers:
    - name: one
      command: ["/a", "b"]
      args:
        - run
        - '--x=''y'''
      ports:
        - containerPort: 8080
    - name: two
`
	m, err := readManifest(text)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"0.kind":                                      "ConfigMap",
		"0.data.config.json":                          "{\"a\": 1}\n{\"b\": 2}\n",
		"0.data.other":                                "quoted: yes",
		"1.kind":                                      "Deployment",
		"1.spec.containers[0].name":                   "one",
		"1.spec.containers[0].command[0]":             "/a",
		"1.spec.containers[0].command[1]":             "b",
		"1.spec.containers[0].args[0]":                "run",
		"1.spec.containers[0].args[1]":                "--x='y'",
		"1.spec.containers[0].ports[0].containerPort": "8080",
		"1.spec.containers[1].name":                   "two",
	}
	for k, v := range want {
		if got, ok := m.get(k); !ok || got != v {
			t.Errorf("%s = %q, %v; want %q", k, got, ok, v)
		}
	}
	if len(m.values) != len(want) {
		t.Errorf("%d values (%v); want %d", len(m.values), m.values, len(want))
	}
	if m.doc("Deployment") != 1 || m.doc("Service") != -1 {
		t.Errorf("kinds %v", m.kinds)
	}
	for _, bad := range []string{"a: {b: c}", "- x\n\tb: c", "key value", `a: "open`} {
		if _, err := readManifest(bad); err == nil {
			t.Errorf("readManifest(%q): no error", bad)
		}
	}
}

// readExample reads examples/kubernetes/deployment.yaml.
func readExample(t *testing.T) *manifest {
	t.Helper()
	b, err := os.ReadFile(moduleDir + "/examples/kubernetes/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := readManifest(string(b))
	if err != nil {
		t.Fatalf("examples/kubernetes/deployment.yaml: %v", err)
	}
	return m
}
