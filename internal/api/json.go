package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	kjson "sigs.k8s.io/json"
)

// maxDepth bounds nesting in request bodies; nothing stagegate accepts
// needs more, and deep nesting is a classic parser attack.
const maxDepth = 32

// Strict options of decodeJSON: the API's own bodies refuse unknown fields;
// an AdmissionReview, whose schema the API server may extend, only
// duplicates.
var (
	strictBody   = []kjson.StrictOption{kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields}
	strictReview = []kjson.StrictOption{kjson.DisallowDuplicateFields}
)

// decodeJSON decodes b, one JSON value, into v with the strict decoder the
// admission webhook uses (sigs.k8s.io/json, as the API server decodes):
// keys match field names case-sensitively, so "Stage" or "ſtage" is not
// "stage" but an unknown field, and with the given options a key that
// names no field and a key repeated at any depth are refused. encoding/json
// would match keys case-insensitively and keep the last duplicate, which
// lets two parsers of the same body disagree. That decoder has no bound on
// nesting beyond encoding/json's 10000 levels and reports trailing data
// as a syntax error, so a token walk first refuses both.
func decodeJSON(b []byte, v any, opts []kjson.StrictOption) error {
	if err := checkShape(b); err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(b, v, opts...)
	if err != nil {
		return err
	}
	if len(strict) == 0 {
		return nil
	}
	msgs := make([]string, len(strict))
	for i, e := range strict {
		msgs[i] = strictMessage(e)
	}
	return errors.New(strings.Join(msgs, ", "))
}

// strictMessage words a strict error of sigs.k8s.io/json ("duplicate
// field", "unknown field") as this API always has.
func strictMessage(err error) string {
	fe, ok := err.(kjson.FieldError)
	if !ok {
		return err.Error()
	}
	switch {
	case strings.HasPrefix(fe.Error(), "duplicate field"):
		return fmt.Sprintf("duplicate key %q", fe.FieldPath())
	case strings.HasPrefix(fe.Error(), "unknown field"):
		return fmt.Sprintf("unknown field %q (field names are case-sensitive)", fe.FieldPath())
	}
	return fe.Error()
}

// checkShape refuses a body nested deeper than maxDepth or holding more
// than one JSON value, without decoding it.
func checkShape(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			// A syntax error is the decoder's to name, with its offset.
			return nil //nolint:nilerr // reported by UnmarshalStrict
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if depth++; depth > maxDepth {
				return fmt.Errorf("nested deeper than %d levels", maxDepth)
			}
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			break
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the object")
	}
	return nil
}
