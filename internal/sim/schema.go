package sim

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
)

// maxSchemaDepth bounds recursion through nested (or self-referencing) schemas.
const maxSchemaDepth = 8

// exampleJSON returns a JSON value that fits schema (a JSON Schema object): for
// objects the required properties (all of them when all is set, as strict structured
// outputs need), arrays of one item, enums' members, and typed placeholders
// otherwise. An empty schema gives {}.
func exampleJSON(rng *rand.Rand, schema json.RawMessage, all bool) ([]byte, error) {
	if len(schema) == 0 {
		return []byte("{}"), nil
	}
	var node map[string]any
	if err := json.Unmarshal(schema, &node); err != nil {
		return nil, fmt.Errorf("schema is not a JSON object: %w", err)
	}
	if _, typed := node["type"]; !typed {
		node["type"] = "object" // arguments and structured outputs are objects
	}
	return marshal(exampleValue(rng, node, "value", all, 0))
}

func exampleValue(rng *rand.Rand, node map[string]any, name string, all bool, depth int) any {
	if depth > maxSchemaDepth {
		return nil
	}
	if c, ok := node["const"]; ok {
		return c
	}
	if enum, ok := node["enum"].([]any); ok && len(enum) > 0 {
		return enum[rng.IntN(len(enum))]
	}
	for _, k := range []string{"anyOf", "oneOf", "allOf"} {
		if subs, ok := node[k].([]any); ok && len(subs) > 0 {
			if sub, ok := subs[0].(map[string]any); ok {
				return exampleValue(rng, sub, name, all, depth+1)
			}
		}
	}
	switch schemaType(node) {
	case "object":
		out := map[string]any{}
		props, _ := node["properties"].(map[string]any)
		var names []string
		if all {
			for p := range props {
				names = append(names, p)
			}
			sort.Strings(names)
		} else if req, ok := node["required"].([]any); ok {
			for _, p := range req {
				if s, ok := p.(string); ok {
					names = append(names, s)
				}
			}
		}
		for _, p := range names {
			sub, _ := props[p].(map[string]any)
			out[p] = exampleValue(rng, sub, p, all, depth+1)
		}
		return out
	case "array":
		n := 1
		if m, ok := node["minItems"].(float64); ok && int(m) > n {
			n = min(int(m), 4)
		}
		items, _ := node["items"].(map[string]any)
		out := make([]any, n)
		for i := range out {
			out[i] = exampleValue(rng, items, name, all, depth+1)
		}
		return out
	case "integer":
		if m, ok := node["minimum"].(float64); ok {
			return int64(m)
		}
		return 1 + rng.IntN(9)
	case "number":
		if m, ok := node["minimum"].(float64); ok {
			return m
		}
		return float64(1+rng.IntN(90)) / 4
	case "boolean":
		return rng.IntN(2) == 0
	case "null":
		return nil
	}
	switch node["format"] {
	case "date":
		return "2024-05-15"
	case "date-time":
		return "2024-05-15T15:00:00Z"
	case "email":
		return "user@example.com"
	}
	return "sample_" + name
}

// schemaType returns the schema's type, the first non-null one of a list, "object"
// when it has properties, and "string" when nothing says.
func schemaType(node map[string]any) string {
	switch t := node["type"].(type) {
	case string:
		return t
	case []any:
		for _, v := range t {
			if s, ok := v.(string); ok && s != "null" {
				return s
			}
		}
	}
	if _, ok := node["properties"]; ok {
		return "object"
	}
	return "string"
}
