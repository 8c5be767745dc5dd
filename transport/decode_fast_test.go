package transport

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecodeSimpleAgreesWithJSON: the fast path never accepts what
// encoding/json rejects and never decodes differently.
func FuzzDecodeSimpleAgreesWithJSON(f *testing.F) {
	for _, s := range []string{`[]`, `["a"]`, `["a","b"]`, `["a",]`, `[,"a"]`, `["a""b"]`, `["\u00e9"]`, `[""]`, `["",""]`, `["a"`, `"a"]`, `[ "a" ]`, "[\"\x01\"]", "[\"\xff\"]", `["a"],`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := decodeSimple(b)
		if !ok {
			return
		}
		var want []string
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("fast path accepted %q which encoding/json rejects: %v", b, err)
		}
		if len(want) == 0 && len(fast) == 0 {
			return
		}
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("%q: fast %q, encoding/json %q", b, fast, want)
		}
	})
}
