package engine

import (
	"errors"
	"testing"
	"time"
)

// finisher is a polling recorder whose Finish waits for the test and
// returns what it is told.
type finisher struct {
	*recorder
	finishing chan struct{}
	result    chan error
}

func newFinisher() *finisher {
	return &finisher{recorder: newRecorder(true), finishing: make(chan struct{}, 1), result: make(chan error, 1)}
}

func (f *finisher) Finish() error {
	f.finishing <- struct{}{}
	select {
	case err := <-f.result:
		return err
	case <-time.After(10 * time.Second):
		return errors.New("test never decided")
	}
}

func waitWrote(t *testing.T, r *recorder) {
	t.Helper()
	select {
	case <-r.wrote:
	case <-time.After(5 * time.Second):
		t.Fatal("no frame written")
	}
}

func TestSecondReceiverWaitsForTheFirstToLeave(t *testing.T) {
	// A wait far longer than the test may take: the second receiver must
	// be let in when the first leaves, not when the wait runs out.
	reg := testRegistry(Options{ReceiverWait: time.Minute})
	s, _, _ := reg.GetOrCreate("w", XHRStreaming, func() Request { return Request{} })
	first := newRecorder(false)
	go s.Serve(first)
	waitWrote(t, first) // open frame: attached

	second := newRecorder(true)
	served := make(chan struct{})
	go func() { s.Serve(second); close(served) }()
	close(first.gone) // the first client aborted
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("the second receiver still waits after the first left")
	}
	if got := second.all(); len(got) != 1 || got[0] != "c,"+ReasonInterrupt {
		t.Fatalf("second receiver got %v, want the interrupted session's close frame", got)
	}
}

func TestSecondReceiverRefusedAfterReceiverWait(t *testing.T) {
	const wait = 50 * time.Millisecond
	reg := testRegistry(Options{ReceiverWait: wait})
	s, _, _ := reg.GetOrCreate("r", XHRStreaming, func() Request { return Request{} })
	first := newRecorder(false)
	go s.Serve(first)
	waitWrote(t, first)
	start := time.Now()
	second := newRecorder(true)
	s.Serve(second)
	if got := second.all(); len(got) != 1 || got[0] != "c,"+ReasonAnother {
		t.Fatalf("second receiver got %v", got)
	}
	if d := time.Since(start); d < wait {
		t.Fatalf("refused after %v, before ReceiverWait %v", d, wait)
	}
	_ = s.Send("still attached")
	waitWrote(t, first)
	close(first.gone)
}

// A polling answer's fate is known only when Finish returns: the next
// receiver must not take messages before that, and a failed answer closes
// the session without delivering what was queued after it.
func TestFinish(t *testing.T) {
	for _, tc := range []struct {
		name   string
		result error
		want   string
	}{
		{"sent", nil, "a,2"},
		{"failed", errors.New("client gone"), "c," + ReasonInterrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := testRegistry(Options{})
			s, _, _ := reg.GetOrCreate("f", XHRPolling, func() Request { return Request{} })
			s.Serve(newRecorder(true)) // open
			_ = s.Send("1")
			first := newFinisher()
			go s.Serve(first)
			select {
			case <-first.finishing:
			case <-time.After(5 * time.Second):
				t.Fatal("Finish not called")
			}
			if got := first.all(); len(got) != 1 || got[0] != "a,1" {
				t.Fatalf("first answer %v", got)
			}
			_ = s.Send("2")
			second := newRecorder(true)
			served := make(chan struct{})
			go func() { s.Serve(second); close(served) }()
			select {
			case <-second.wrote:
				t.Fatal("the next receiver took messages before the previous answer's fate was known")
			case <-time.After(50 * time.Millisecond):
				// Not proof of absence, but what a race would look like.
			}
			first.result <- tc.result
			select {
			case <-served:
			case <-time.After(5 * time.Second):
				t.Fatal("second receiver not served")
			}
			if got := second.all(); len(got) != 1 || got[0] != tc.want {
				t.Fatalf("second receiver got %v, want %s", got, tc.want)
			}
		})
	}
}
