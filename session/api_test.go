package session

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
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
// accident: the transport side belongs to internal/engine's Session, which
// this defined type does not inherit.
func TestSessionMethodSet(t *testing.T) {
	want := []string{
		"Buffered", "Close", "CloseFor", "CloseInfo", "Context", "HandedOff", "ID", "OnMessage", "Recv", "Request", "Send", "SendMany",
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

// TestPublicDeclarations pins what package session exports to the
// application's API: the Session face, the Options and Request it is
// configured and described by, the Observer that metrics implement and the
// types its methods take, close codes and errors. The engine (registry,
// frames, receivers, the transport side of a session) stays in
// internal/engine; a declaration added here by accident fails this test,
// which is the place to decide whether an application needs it.
func TestPublicDeclarations(t *testing.T) {
	want := []string{
		"const CauseClient", "const CauseError", "const CauseLimit", "const CauseServer",
		"const CauseShutdown", "const CauseTimeout", "const CodeAnotherConn", "const CodeGoAway",
		"const CodeGoingAway", "const CodeInterrupted", "const CodeQueueFull", "const CodeTooBig",
		"const DefaultDisconnectDelay", "const DefaultHeartbeatDelay", "const DefaultReceiverWait",
		"const DefaultRecvQueueBytes", "const DefaultRecvQueueMessages", "const DefaultSendQueueBytes",
		"const DefaultSendQueueMessages", "const EndpointEventSource", "const EndpointHTMLFile",
		"const EndpointJSONP", "const EndpointJSONPSend", "const EndpointXHR", "const EndpointXHRSend",
		"const EndpointXHRStreaming", "const EventSource", "const FrameClose", "const FrameHeartbeat",
		"const FrameMessages", "const FrameOpen", "const HTMLFile", "const JSONPPolling",
		"const LimitBodyBudget", "const LimitBodyReadTimeout", "const LimitBodySize",
		"const LimitConcurrentSends", "const LimitHandOff", "const LimitIDLength", "const LimitMessageBudget",
		"const LimitMessageReadTimeout", "const LimitMessageSize",
		"const LimitRequestInfo", "const LimitSendQueue", "const LimitSessions", "const NumCauses",
		"const NumEndpoints", "const NumLimits", "const NumTransports", "const RawWebSocket",
		"const ReasonAnother", "const ReasonGoAway", "const ReasonGoingAway", "const ReasonInterrupt",
		"const ReasonQueueFull", "const ReasonTooBig", "const RecvEntryBytes", "const WebSocket",
		"const XHRPolling", "const XHRStreaming",
		"method NopObserver.DeliveryDelay", "method NopObserver.FrameWritten", "method NopObserver.HTTPRequest",
		"method NopObserver.LimitHit", "method NopObserver.MessageReceived", "method NopObserver.ReceiveDelay",
		"method NopObserver.SessionClosed", "method NopObserver.SessionOpened", "method NopObserver.TimeToOpen",
		"method Options.WithDefaults",
		"method Session.Buffered", "method Session.Close", "method Session.CloseFor", "method Session.CloseInfo", "method Session.HandedOff",
		"method Session.Context", "method Session.ID", "method Session.OnMessage", "method Session.Recv",
		"method Session.Request", "method Session.Send", "method Session.SendMany", "method Session.Transport", "method Session.Written",
		"type CloseCause", "type Endpoint", "type FrameKind", "type Limit", "type NopObserver", "type Observer",
		"type Options", "type Request", "type Session", "type Transport",
		"var ErrClosed", "var ErrQueueFull",
	}
	fset := token.NewFileSet()
	var got []string
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				if d.Recv == nil {
					got = append(got, "func "+d.Name.Name)
					continue
				}
				recv := d.Recv.List[0].Type
				if star, ok := recv.(*ast.StarExpr); ok {
					recv = star.X
				}
				got = append(got, "method "+recv.(*ast.Ident).Name+"."+d.Name.Name)
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					switch spec := spec.(type) {
					case *ast.TypeSpec:
						if spec.Name.IsExported() {
							got = append(got, "type "+spec.Name.Name)
						}
					case *ast.ValueSpec:
						for _, n := range spec.Names {
							if n.IsExported() {
								got = append(got, d.Tok.String()+" "+n.Name)
							}
						}
					}
				}
			}
		}
	}
	slices.Sort(got)
	for _, g := range got {
		if !slices.Contains(want, g) {
			t.Errorf("package session declares %s, which is not in the application API", g)
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("package session no longer declares %s", w)
		}
	}
}

// TestOnlyFacesImportEngine: internal/engine is reached from outside
// internal/ only through its two faces, package session (the
// application's) and package transport (the protocol's). The hub, the
// bridge, the cluster, metrics, the client and the commands use session
// and transport like any program outside the module: an import of the
// engine in one of their non-test files is a side door this test closes.
func TestOnlyFacesImportEngine(t *testing.T) {
	root := filepath.Join("..")
	module := modulePath(t, filepath.Join(root, "go.mod"))
	engine := module + "/internal/engine"
	checked := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			rel, _ := filepath.Rel(root, path)
			switch {
			case rel == ".":
				return nil
			case rel == "internal", rel == "session", rel == "transport",
				name == "node_modules", name == "testdata", strings.HasPrefix(name, "."):
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		checked[strings.SplitN(filepath.ToSlash(rel), "/", 2)[0]] = true
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == engine || strings.HasPrefix(p, engine+"/") {
				t.Errorf("%s imports %s: only session and transport may", rel, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"hub", "bridge", "cluster", "metrics", "client", "cmd"} {
		if !checked[dir] {
			t.Errorf("no Go files checked in ../%s: the test no longer covers it", dir)
		}
	}
}

// TestConstantComments: the close codes, reasons and defaults are the
// engine's constants, so go doc shows engine.CodeGoingAway where a reader
// wants 1001; the line comment of each says the value, and this test
// keeps it true.
func TestConstantComments(t *testing.T) {
	values := map[string]string{
		"CodeGoingAway": strconv.Itoa(CodeGoingAway), "CodeInterrupted": strconv.Itoa(CodeInterrupted),
		"CodeTooBig": strconv.Itoa(CodeTooBig), "CodeAnotherConn": strconv.Itoa(CodeAnotherConn),
		"CodeGoAway": strconv.Itoa(CodeGoAway), "CodeQueueFull": strconv.Itoa(CodeQueueFull),
		"ReasonGoingAway": strconv.Quote(ReasonGoingAway), "ReasonInterrupt": strconv.Quote(ReasonInterrupt),
		"ReasonTooBig": strconv.Quote(ReasonTooBig), "ReasonAnother": strconv.Quote(ReasonAnother),
		"ReasonGoAway": strconv.Quote(ReasonGoAway), "ReasonQueueFull": strconv.Quote(ReasonQueueFull),
		"DefaultHeartbeatDelay": DefaultHeartbeatDelay.String(), "DefaultDisconnectDelay": DefaultDisconnectDelay.String(),
		"DefaultSendQueueMessages": strconv.Itoa(DefaultSendQueueMessages),
		"DefaultSendQueueBytes":    strconv.Itoa(DefaultSendQueueBytes),
		"DefaultRecvQueueMessages": strconv.Itoa(DefaultRecvQueueMessages),
		"DefaultRecvQueueBytes":    strconv.Itoa(DefaultRecvQueueBytes),
		"RecvEntryBytes":           strconv.Itoa(RecvEntryBytes), "DefaultReceiverWait": DefaultReceiverWait.String(),
	}
	f, err := parser.ParseFile(token.NewFileSet(), "types.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			want, ok := values[vs.Names[0].Name]
			if !ok {
				continue
			}
			seen++
			comment := ""
			if vs.Comment != nil {
				comment = strings.TrimSpace(vs.Comment.Text())
			}
			if !strings.HasPrefix(comment, want) {
				t.Errorf("%s: comment %q does not start with its value %s", vs.Names[0].Name, comment, want)
			}
		}
	}
	if seen != len(values) {
		t.Errorf("found %d of the %d constants in types.go", seen, len(values))
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
