package main

import (
	"bufio"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// buckets is a Prometheus histogram's cumulative bucket counts by upper
// bound, summed over every label set.
type buckets map[float64]float64

// scrapeHistogram reads name's buckets from a /metrics page.
func scrapeHistogram(url, name string) buckets {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := hc.Get(url)
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	out := buckets{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	prefix := name + "_bucket{"
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		i := strings.Index(line, `le="`)
		j := strings.LastIndexByte(line, ' ')
		if i < 0 || j < i {
			continue
		}
		le := line[i+4:]
		le = le[:strings.IndexByte(le, '"')]
		bound, err1 := strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
		v, err2 := strconv.ParseFloat(line[j+1:], 64)
		if err1 == nil && err2 == nil {
			out[bound] += v
		}
	}
	return out
}

// quantile of the observations between two scrapes, interpolated within
// the bucket as Prometheus's histogram_quantile does; in seconds.
func quantile(before, after buckets, q float64) float64 {
	var bounds []float64
	for b := range after {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 {
		return 0
	}
	total := after[bounds[len(bounds)-1]] - before[bounds[len(bounds)-1]]
	if total <= 0 {
		return 0
	}
	rank := q * total
	prevBound, prevCount := 0.0, 0.0
	for _, b := range bounds {
		c := after[b] - before[b]
		if c >= rank {
			if b > 1e300 { // +Inf: the last finite bound is all we know
				return prevBound
			}
			if c == prevCount {
				return b
			}
			return prevBound + (b-prevBound)*(rank-prevCount)/(c-prevCount)
		}
		prevBound, prevCount = b, c
	}
	return prevBound
}
