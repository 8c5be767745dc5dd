package session

import (
	"bufio"
	"errors"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
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

// closeCounter is an Observer that records the reasons sessions closed for.
type closeCounter struct {
	NopObserver
	mu      sync.Mutex
	reasons []CloseCause
}

func (c *closeCounter) SessionClosed(_ Transport, r CloseCause, _ time.Duration) {
	c.mu.Lock()
	c.reasons = append(c.reasons, r)
	c.mu.Unlock()
}

func (c *closeCounter) got() []CloseCause {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reasons)
}

// TestCloseFor: the client gets what Close would give it (the queued
// messages, then the close frame); only the count differs. A second close
// is ErrClosed and not counted again, and a reason out of range counts as
// CauseServer, so that no close goes uncounted.
func TestCloseFor(t *testing.T) {
	obs := &closeCounter{}
	reg := testRegistry(Options{Observer: obs})
	s, _, _ := reg.GetOrCreate("cf", XHRPolling, func() Request { return Request{} })
	_ = s.Send("queued")
	if err := s.CloseFor(CauseLimit, 4001, "Too slow"); err != nil {
		t.Fatal(err)
	}
	if err := s.Send("too late"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after CloseFor: %v", err)
	}
	if s.Context().Err() == nil {
		t.Fatal("context not done after CloseFor")
	}
	if code, reason, closed := s.CloseInfo(); code != 4001 || reason != "Too slow" || !closed {
		t.Fatalf("CloseInfo %d %q %v", code, reason, closed)
	}
	if err := s.CloseFor(CauseError, 4002, "again"); !errors.Is(err, ErrClosed) {
		t.Fatalf("second CloseFor: %v", err)
	}
	if err := s.Close(3000, "again"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Close after CloseFor: %v", err)
	}
	r := newRecorder(true)
	for range 3 {
		s.serve(r)
	}
	if got, want := r.all(), []string{"o", "a,queued", "c,Too slow"}; !slices.Equal(got, want) {
		t.Fatalf("frames %v, want %v", got, want)
	}

	o, _, _ := reg.GetOrCreate("odd", XHRPolling, func() Request { return Request{} })
	if err := o.CloseFor(NumCauses+3, 4003, "odd"); err != nil {
		t.Fatal(err)
	}
	if got, want := obs.got(), []CloseCause{CauseLimit, CauseServer}; !slices.Equal(got, want) {
		t.Fatalf("counted %v, want %v", got, want)
	}
}
