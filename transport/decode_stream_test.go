package transport

import (
	"net/url"
	"reflect"
	"testing"
)

// FuzzWalkPayloadAgreesWithDecodeMessages: the streaming decoder accepts
// exactly the payloads DecodeMessages accepts (but for arrays with
// non-string elements, which it refuses) and yields the same messages.
func FuzzWalkPayloadAgreesWithDecodeMessages(f *testing.F) {
	for _, s := range []string{`[]`, ` [ ] `, `["a"]`, `["a","b"]`, `["a",]`, `[,"a"]`, `["a""b"]`, `["\u00e9"]`, `["\ud83d\ude00"]`,
		`[""]`, `["é", "\xffé"]`, "[\"é\xff\"]", `"x"`, ` "x" `, `["a"`, `"a"]`, `[ "a" , "b" ]`, "[\"\x01\"]", "[\"\xff\"]", `["a"],`, `["\"]`, `["\\"]`, `[1]`, `[null]`, `null`, ``, `  `, `[[[`, `["x",2]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, werr := DecodeMessages(b)
		var got []string
		gerr := walkPayload(b, func(m string) bool { got = append(got, m); return true })
		verr := validPayload(string(b))
		if (gerr == nil) != (verr == nil) {
			t.Fatalf("%q: walk %v, validate %v", b, gerr, verr)
		}
		if werr != nil {
			if gerr == nil {
				t.Fatalf("%q: DecodeMessages refuses (%v), walk accepts %q", b, werr, got)
			}
			if gerr != werr {
				t.Fatalf("%q: errors differ: %v vs %v", b, werr, gerr)
			}
			return
		}
		if gerr != nil {
			// Non-string elements (null) encoding/json lets through.
			t.Logf("%q: walk refuses what DecodeMessages accepts: %v", b, gerr)
			return
		}
		if len(want) == 0 && len(got) == 0 {
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: walk %q, DecodeMessages %q", b, got, want)
		}
	})
}

func TestFormValueInPlaceAgreesWithParseQuery(t *testing.T) {
	for _, body := range []string{"d=%5B%22a%22%5D", "x=1&d=%5B%22a+b%22%5D&d=2", "d=", "x=1", "", "d=%zz", "d=%5", "%64=x", "d=caf%C3%A9"} {
		want, werr := url.ParseQuery(body)
		got, gerr := formValueInPlace([]byte(body), "d")
		if (werr != nil) != (gerr != nil) {
			t.Errorf("%q: errors %v vs %v", body, werr, gerr)
			continue
		}
		if werr == nil && string(got) != want.Get("d") {
			t.Errorf("%q: %q, want %q", body, got, want.Get("d"))
		}
	}
}
