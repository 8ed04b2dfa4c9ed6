package config

import (
	"reflect"
	"testing"
)

func TestFromEnv(t *testing.T) {
	tests := map[string]struct {
		vars map[string]string
		want Env
	}{
		"nothing set": {
			want: Env{KeyPassword: []byte{}},
		},
		"everything set": {
			vars: map[string]string{PasswordEnv: "pw", TokenEnv: "tok", ServerEnv: "https://sg", CAFileEnv: "ca.crt", GOGCEnv: "200", GOMemLimitEnv: "1GiB"},
			want: Env{KeyPassword: []byte("pw"), Token: "tok", Server: "https://sg", CAFile: "ca.crt", GOGCSet: true, GOMemLimitSet: true},
		},
		// Set but empty: the runtime's variables count as set (the
		// operator said something), stagegate's as unset.
		"set to empty": {
			vars: map[string]string{ServerEnv: "", GOGCEnv: ""},
			want: Env{KeyPassword: []byte{}, GOGCSet: true},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := FromEnv(func(k string) (string, bool) {
				v, ok := tt.vars[k]
				return v, ok
			})
			if string(got.KeyPassword) != string(tt.want.KeyPassword) || got.KeyPassword == nil {
				t.Fatalf("password %q (nil %v), want %q", got.KeyPassword, got.KeyPassword == nil, tt.want.KeyPassword)
			}
			got.KeyPassword, tt.want.KeyPassword = nil, nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("FromEnv = %+v, want %+v", got, tt.want)
			}
			c := Default()
			FromEnv(func(k string) (string, bool) { v, ok := tt.vars[k]; return v, ok }).Apply(c)
			if string(c.Keys.Password) != tt.vars[PasswordEnv] {
				t.Fatalf("Apply: password %q, want %q", c.Keys.Password, tt.vars[PasswordEnv])
			}
		})
	}
}
