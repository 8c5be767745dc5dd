//go:build !unix

package main

// cpuSeconds is 0 where getrusage is not available: the hub rows then
// show no load generator CPU.
func cpuSeconds() float64 { return 0 }
