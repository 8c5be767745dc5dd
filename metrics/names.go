package metrics

import (
	"regexp"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// Names is the name of every metric New registers, whether or not it has
// a series yet (Gather shows a labelled metric only once it has one).
// Tests use it to check that the dashboard and the docs name real metrics.
func Names() []string {
	r := &nameRecorder{}
	New(r).Exec() // the exec bridge's metrics are registered on first use
	sort.Strings(r.names)
	return r.names
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// nameRecorder is a Registerer that keeps the names of what is registered.
type nameRecorder struct{ names []string }

func (r *nameRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.names = append(r.names, m[1])
		}
	}
	return nil
}

func (r *nameRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *nameRecorder) Unregister(prometheus.Collector) bool { return true }
