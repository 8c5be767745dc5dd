package session

import (
	"reflect"
	"slices"
	"testing"
)

// TestSessionMethodSet pins the exported method set of *Session to the
// application API, so that transport plumbing cannot grow back into it by
// accident: the transport side belongs in internal/sessionapi.
func TestSessionMethodSet(t *testing.T) {
	want := []string{
		"Buffered", "Close", "CloseInfo", "Context", "ID", "OnMessage", "Recv", "Request", "Send", "Transport",
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[*Session](), reflect.TypeFor[Session]()} {
		var got []string
		for m := range typ.Methods() {
			got = append(got, m.Name)
		}
		if typ.Kind() != reflect.Pointer {
			want = nil // every method has a pointer receiver
		}
		if !slices.Equal(got, want) {
			t.Errorf("exported methods of %v = %v, want %v", typ, got, want)
		}
	}
}
