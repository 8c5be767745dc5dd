package session

import (
	"bufio"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestSessionMethodSet pins the exported method set of *Session to the
// application API, so that transport plumbing cannot grow back into it by
// accident: the transport side belongs in internal/sessionapi.
func TestSessionMethodSet(t *testing.T) {
	want := []string{
		"Buffered", "Close", "CloseFor", "CloseInfo", "Context", "ID", "OnMessage", "Recv", "Request", "Send",
		"Transport", "Written",
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

// TestApplicationsUseOnlyPublicAPI: the hub and the exec bridge are
// applications of this module, built only on what any program outside it
// can import, so that whatever they do a third-party service can do too.
// An import of one of the module's internal packages in their non-test
// files is a side door this test closes. (Their dependencies, transport
// and session, do use internal packages: that is the point of them.)
func TestApplicationsUseOnlyPublicAPI(t *testing.T) {
	module := modulePath(t, filepath.Join("..", "go.mod"))
	internal := module + "/internal"
	for _, dir := range []string{"hub", "bridge"} {
		entries, err := os.ReadDir(filepath.Join("..", dir))
		if err != nil {
			t.Fatal(err)
		}
		files := 0
		for _, e := range entries {
			name := e.Name()
			if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				continue
			}
			files++
			path := filepath.Join("..", dir, name)
			// Every file, whatever its build constraints: a side door
			// behind a build tag is still one.
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				p, err := strconv.Unquote(imp.Path.Value)
				if err != nil {
					t.Fatal(err)
				}
				if p == internal || strings.HasPrefix(p, internal+"/") {
					t.Errorf("%s imports %s: %s must use only the public API", path, p, dir)
				}
			}
		}
		if files == 0 {
			t.Errorf("no Go files in ../%s: the test no longer checks anything", dir)
		}
	}
}

// modulePath reads the module line of a go.mod.
func modulePath(t *testing.T, gomod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	t.Fatalf("no module line in %s", gomod)
	return ""
}
