package oci

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in   string
		want ContentRange
		ok   bool
	}{
		{"bytes 0-0/1", ContentRange{0, 0, 1}, true},
		{"bytes 4-9/10", ContentRange{4, 9, 10}, true},
		{"bytes 4-9/*", ContentRange{4, 9, -1}, true},
		{"bytes 9223372036854775806-9223372036854775806/9223372036854775807", ContentRange{9223372036854775806, 9223372036854775806, 9223372036854775807}, true},
		{"bytes 4-9/9", ContentRange{}, false},
		{"bytes 4-3/10", ContentRange{}, false},
		{"bytes -1-9/10", ContentRange{}, false},
		{"bytes +4-9/10", ContentRange{}, false},
		{"bytes  4-9/10", ContentRange{}, false},
		{"bytes */10", ContentRange{}, false},
		{"bytes 4-9/10/11", ContentRange{}, false},
		{"bytes 99999999999999999999-1/2", ContentRange{}, false},
		{"Bytes 4-9/10", ContentRange{}, false},
		{"", ContentRange{}, false},
	}
	for _, tt := range tests {
		got, err := ParseContentRange(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseContentRange(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 4-9/10", "bytes 4-9/*", "bytes 0-0/1", "bytes 1-/2", "bytes 9223372036854775807-9223372036854775807/*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseContentRange(s)
		if err != nil {
			return
		}
		if r.Start < 0 || r.End < r.Start || (r.Size != -1 && r.Size <= r.End) {
			t.Errorf("ParseContentRange(%q) = %+v: inconsistent", s, r)
		}
	})
}

func TestParseErrorBody(t *testing.T) {
	tests := []struct {
		body, code, message string
	}{
		{`{"errors":[{"code":"DENIED","message":"no"},{"code":"UNAUTHORIZED"}]}`, "DENIED", "no"},
		{`{"errors":[]}`, "", ""},
		{`{"errors":[{"code":"lower","message":"m"}]}`, "", "m"},
		{`{"errors":[{"code":"` + strings.Repeat("A", 65) + `"}]}`, "", ""},
		{`{"errors":[{"code":"DENIED","message":"` + strings.Repeat("é", 300) + `"}]}`, "DENIED", strings.Repeat("é", 256)},
		{"{\"errors\":[{\"message\":\"bad \xff utf8\"}]}", "", "bad \uFFFD utf8"}, // encoding/json replaces it
		{`<html>nope</html>`, "", ""},
		{``, "", ""},
	}
	for _, tt := range tests {
		code, msg := parseErrorBody([]byte(tt.body))
		if code != tt.code || msg != tt.message {
			t.Errorf("parseErrorBody(%.40q) = %q, %.40q; want %q, %.40q", tt.body, code, msg, tt.code, tt.message)
		}
	}
}

func FuzzParseErrorBody(f *testing.F) {
	f.Add([]byte(`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`))
	f.Add([]byte(`{"errors":[{"code":1}]}`))
	f.Add([]byte("{\"errors\":[{\"message\":\"\xff\"}]}"))
	f.Fuzz(func(t *testing.T, body []byte) {
		code, msg := parseErrorBody(body)
		if code != "" && !validCode(code) {
			t.Errorf("code %q is not a valid code", code)
		}
		if len(msg) > maxErrorMessage || !utf8.ValidString(msg) {
			t.Errorf("message %.40q: too long or not UTF-8", msg)
		}
	})
}
