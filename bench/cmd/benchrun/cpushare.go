package main

import (
	"os/exec"
	"strconv"
	"strings"
)

// schedFuncs are the runtime's scheduler, channel and wake-up functions:
// their flat time is what hand-offs between goroutines cost.
var schedFuncs = []string{"runtime.gopark", "runtime.schedule", "runtime.findRunnable", "runtime.park_m",
	"runtime.goready", "runtime.ready", "runtime.chansend", "runtime.chanrecv", "runtime.selectgo", "runtime.sellock",
	"runtime.selunlock", "runtime.lock2", "runtime.unlock2", "runtime.(*waitq).dequeue", "runtime.(*waitq).enqueue",
	"runtime.mcall", "runtime.execute", "runtime.runqget", "runtime.runqput", "runtime.runqgrab", "runtime.casgstatus",
	"runtime.send", "runtime.recv", "runtime.gogo", "runtime.wakep", "runtime.futex", "runtime.notewakeup",
	"runtime.resetspinning", "runtime.stealWork", "runtime.checkTimers", "runtime.netpollblock",
	"runtime.netpollunblock", "runtime.acquireSudog", "runtime.releaseSudog", "runtime.selparkcommit",
	"runtime.parkunlock_c", "runtime.globrunqget", "runtime.goexit0"}

// cpuShares splits a CPU profile: syscalls (flat), scheduler and
// channels (flat, schedFuncs), GC (background marking and assists, cum),
// allocation (mallocgc, cum); as fractions of all samples.
func cpuShares(path string) map[string]float64 {
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=5000", "-unit=ms", path).Output()
	if err != nil {
		return nil
	}
	flat, cum := map[string]float64{}, map[string]float64{}
	var total float64
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || !strings.HasSuffix(f[1], "%") {
			continue
		}
		ms := func(s string) float64 { v, _ := strconv.ParseFloat(strings.TrimSuffix(s, "ms"), 64); return v }
		name := strings.Join(f[5:], " ")
		flat[name], cum[name] = ms(f[0]), ms(f[3])
		total += ms(f[0])
	}
	if total == 0 {
		return nil
	}
	var sched float64
	for _, fn := range schedFuncs {
		sched += flat[fn]
	}
	return map[string]float64{
		"syscalls":  flat["internal/runtime/syscall/linux.Syscall6"] / total,
		"scheduler": sched / total,
		"gc":        (cum["runtime.gcBgMarkWorker"] + cum["runtime.gcAssistAlloc"]) / total,
		"malloc":    cum["runtime.mallocgc"] / total,
	}
}
