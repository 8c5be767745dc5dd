package transport

import (
	"reflect"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/engine"
	"github.com/sockjsd/sockjsd/session"
)

// TestMirrorTypes: the engine cannot import package session, so Options,
// Request and Observer exist in both. They must stay the same: a field
// added to session.Options and not to the engine's (or not copied by
// engineOptions) would be silently ignored; a method added to one Observer
// only would break the assignment of one to the other.
func TestMirrorTypes(t *testing.T) {
	// Request: the face converts one to the other.
	if !reflect.TypeFor[engine.Request]().ConvertibleTo(reflect.TypeFor[session.Request]()) {
		t.Error("engine.Request does not convert to session.Request")
	}

	// Observer: the same method set, name and signature.
	so, eo := reflect.TypeFor[session.Observer](), reflect.TypeFor[engine.Observer]()
	if so.NumMethod() != eo.NumMethod() {
		t.Errorf("session.Observer has %d methods, engine.Observer %d", so.NumMethod(), eo.NumMethod())
	}
	for m := range so.Methods() {
		em, ok := eo.MethodByName(m.Name)
		if !ok || em.Type != m.Type {
			t.Errorf("session.Observer.%s %v has no twin in engine.Observer", m.Name, m.Type)
		}
	}

	// Options: every field, by name and type, and engineOptions copies
	// each one (every field of in is set to a value no default has).
	st, et := reflect.TypeFor[session.Options](), reflect.TypeFor[engine.Options]()
	if st.NumField() != et.NumField() {
		t.Errorf("session.Options has %d fields, engine.Options %d", st.NumField(), et.NumField())
	}
	var in session.Options
	obs := &struct{ session.NopObserver }{}
	iv := reflect.ValueOf(&in).Elem()
	for i := range st.NumField() {
		f := st.Field(i)
		ef, ok := et.FieldByName(f.Name)
		if !ok {
			t.Errorf("engine.Options has no field %s", f.Name)
			continue
		}
		switch {
		case f.Type == reflect.TypeFor[session.Observer]():
			if ef.Type != reflect.TypeFor[engine.Observer]() {
				t.Errorf("engine.Options.%s is %v", f.Name, ef.Type)
			}
			iv.Field(i).Set(reflect.ValueOf(obs))
		case f.Type != ef.Type:
			t.Errorf("Options.%s: session %v, engine %v", f.Name, f.Type, ef.Type)
		case f.Type == reflect.TypeFor[time.Duration]() || f.Type.Kind() == reflect.Int:
			iv.Field(i).SetInt(int64(1000 + i))
		default:
			t.Errorf("Options.%s: a %v field the test does not know how to set", f.Name, f.Type)
		}
	}
	out := reflect.ValueOf(engineOptions(in))
	for i := range st.NumField() {
		name := st.Field(i).Name
		if o := out.FieldByName(name); o.IsValid() && o.Interface() != iv.Field(i).Interface() {
			t.Errorf("engineOptions: %s = %v, want %v", name, o.Interface(), iv.Field(i).Interface())
		}
	}
}

// TestMirrorDefaults: session.Options.WithDefaults, which applications
// and cmd/server call, fills in what the engine's would.
func TestMirrorDefaults(t *testing.T) {
	got, want := engineOptions(session.Options{}.WithDefaults()), engine.Options{}.WithDefaults()
	if _, ok := got.Observer.(session.NopObserver); !ok {
		t.Errorf("default Observer %T, want session.NopObserver", got.Observer)
	}
	got.Observer, want.Observer = nil, nil
	if got != want {
		t.Errorf("session defaults %+v, engine defaults %+v", got, want)
	}
}
