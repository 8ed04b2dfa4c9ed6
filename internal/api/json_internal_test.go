package api

import (
	"strings"
	"testing"
)

func TestDecodeJSON(t *testing.T) {
	tests := map[string]struct {
		body    string
		review  bool   // the AdmissionReview options: unknown fields tolerated
		mention string // "" for accepted
	}{
		"accepted":                 {body: `{"image":"a","stage":"dev","evidence":{"n":1}}`},
		"unknown field":            {body: `{"image":"a","colour":"red"}`, mention: `unknown field "colour"`},
		"case variant":             {body: `{"image":"a","Stage":"prod"}`, mention: `unknown field "Stage"`},
		"unicode fold":             {body: `{"image":"a","ſtage":"prod"}`, mention: "unknown field"},
		"duplicate key":            {body: `{"image":"a","image":"b"}`, mention: `duplicate key "image"`},
		"nested duplicate":         {body: `{"image":"a","evidence":{"x":1,"x":2}}`, mention: `duplicate key "evidence.x"`},
		"trailing data":            {body: `{"image":"a"}{}`, mention: "trailing data"},
		"too deep":                 {body: `{"evidence":` + strings.Repeat(`[`, 40) + strings.Repeat(`]`, 40) + `}`, mention: "nested deeper"},
		"syntax error":             {body: `{"image":`, mention: "unexpected end"},
		"review tolerates unknown": {body: `{"image":"a","colour":"red"}`, review: true},
		"review refuses duplicate": {body: `{"image":"a","image":"b"}`, review: true, mention: "duplicate key"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			opts := strictBody
			if tt.review {
				opts = strictReview
			}
			var v promoteBody
			err := decodeJSON([]byte(tt.body), &v, opts)
			if tt.mention == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.mention)
			}
		})
	}
}
