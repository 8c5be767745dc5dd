package browser

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
)

// measurement is what one connection measured in the page.
type measurement struct {
	transport string
	connectMs float64   // new SockJS() to open, /info and any fallback included
	rtts      []float64 // round trip of each message, ms
}

// row is one line of the results table.
type row struct {
	scenario string
	m        measurement
}

// results collects the rows of every subtest, for the table TestBrowser
// prints at the end.
type results struct {
	mu   sync.Mutex
	rows []row
}

func (r *results) add(scenario string, m measurement) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, row{scenario, m})
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// String formats the rows as a markdown table.
func (r *results) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	b.WriteString("| scenario | transport | connect ms | msgs | rtt p50 ms | rtt p95 ms | rtt p99 ms |\n")
	b.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, x := range r.rows {
		s := slices.Clone(x.m.rtts)
		slices.Sort(s)
		fmt.Fprintf(&b, "| %s | %s | %.0f | %d | %.1f | %.1f | %.1f |\n",
			x.scenario, x.m.transport, x.m.connectMs, len(s),
			percentile(s, 50), percentile(s, 95), percentile(s, 99))
	}
	return b.String()
}

func TestPercentile(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct{ p, want float64 }{{50, 5}, {95, 10}, {99, 10}, {10, 1}, {0, 1}} {
		if got := percentile(s, c.p); got != c.want {
			t.Errorf("p%v: got %v, want %v", c.p, got, c.want)
		}
	}
	if !math.IsNaN(percentile(nil, 50)) {
		t.Error("percentile of nothing should be NaN")
	}
}
