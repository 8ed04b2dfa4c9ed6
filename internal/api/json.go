package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// maxDepth bounds nesting in request bodies; nothing stagegate accepts
// needs more, and deep nesting is a classic parser attack.
const maxDepth = 32

// checkDuplicateKeys refuses objects that repeat a key and bodies nested
// deeper than maxDepth. encoding/json silently keeps the last duplicate,
// which lets two parsers of the same body disagree.
func checkDuplicateKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		keys   map[string]bool
		object bool
		expect bool // next string token in an object is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if len(stack) >= maxDepth {
					return fmt.Errorf("nested deeper than %d levels", maxDepth)
				}
				if top != nil && top.object {
					top.expect = true
				}
				stack = append(stack, &frame{keys: map[string]bool{}, object: t == '{', expect: t == '{'})
			default:
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].object {
					stack[len(stack)-1].expect = true
				}
			}
		case string:
			if top != nil && top.object && top.expect {
				if top.keys[t] {
					return fmt.Errorf("duplicate key %q", t)
				}
				top.keys[t] = true
				top.expect = false
				continue
			}
			if top != nil && top.object {
				top.expect = true
			}
		default:
			if top != nil && top.object {
				top.expect = true
			}
		}
	}
}

// checkFieldNames refuses top-level keys that are not spelled exactly as
// the fields of the struct v points to. encoding/json matches keys without
// regard to case, and with Unicode folding ("ſtage" sets Stage), so
// {"stage":"dev","Stage":"prod"} would pass the duplicate check and mean
// something else to a case-sensitive reader.
func checkFieldNames(b []byte, v any) error {
	t := reflect.TypeOf(v)
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil || top == nil {
		return nil // not an object; Decode already judged it
	}
	known := map[string]bool{}
	for i := range t.Elem().NumField() {
		name, _, _ := strings.Cut(t.Elem().Field(i).Tag.Get("json"), ",")
		known[name] = true
	}
	for k := range top {
		if !known[k] {
			return fmt.Errorf("unknown field %q (field names are case-sensitive)", k)
		}
	}
	return nil
}
