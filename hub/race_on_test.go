//go:build race

package hub_test

// The race detector allows 8128 live goroutines; the fan-out test's 2,000
// sessions need more. `make test` runs it again without -race.
const raceEnabled = true
