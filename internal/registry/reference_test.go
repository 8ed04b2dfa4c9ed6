package registry

import (
	"errors"
	"testing"
)

// TestParseImageAndParseReferenceShareTheRules: the kubelet-style parse of
// pods' images and the API's strict one refuse the same malformed input;
// they differ only in the defaults a tag reference may leave out.
func TestParseImageAndParseReferenceShareTheRules(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	c := New()
	tests := map[string]struct {
		in          string
		imageOK     bool // ParseImage accepts it
		referenceOK bool // Client.ParseReference accepts it
	}{
		"qualified tag":        {in: "reg.example/team/app:1.0", imageOK: true, referenceOK: true},
		"docker hub shorthand": {in: "nginx", imageOK: true},
		"tag and digest":       {in: "reg.example/team/app:1.0@" + d, imageOK: true, referenceOK: true},
		"bad tag with digest":  {in: "reg.example/team/app:1.0!@" + d},
		"surrounding space":    {in: " reg.example/team/app:1.0"},
		"dot dot":              {in: "reg.example/team/../app:1.0"},
		"uppercase digest":     {in: "reg.example/team/app@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"},
		"sha512 digest":        {in: "reg.example/team/app@sha512:" + d[7:] + d[7:]},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseImage(tt.in)
			if (err == nil) != tt.imageOK || err != nil && !errors.Is(err, ErrInvalidReference) {
				t.Errorf("ParseImage(%q) = %v, want ok %v", tt.in, err, tt.imageOK)
			}
			_, err = c.ParseReference(tt.in)
			if (err == nil) != tt.referenceOK || err != nil && !errors.Is(err, ErrInvalidReference) {
				t.Errorf("ParseReference(%q) = %v, want ok %v", tt.in, err, tt.referenceOK)
			}
		})
	}
}
