package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// The Kubernetes manifests (deploy/kubernetes) and the image
// (deploy/Dockerfile) are held to the binary: the variables and flags they
// set exist and parse, ports and probe paths are the server's, the drain
// fits the grace period, and the selectors select the pods.

// k8sDir is where the manifests are, from the repository's root.
const k8sDir = "deploy/kubernetes"

// k8sGraceMargin is what terminationGracePeriodSeconds must leave beyond
// preStop + drain delay + shutdown timeout: the process's exit, a loaded
// machine.
const k8sGraceMargin = 5 * time.Second

// k8sDefaultGrace is Kubernetes' terminationGracePeriodSeconds when a pod
// sets none.
const k8sDefaultGrace = 30

// k8sOtherEnv are the variables a container may set that are not flags:
// the pod's address (for -cluster-advertise) and the Go runtime's.
var k8sOtherEnv = map[string]bool{"POD_IP": true, "GOMEMLIMIT": true, "GOGC": true, "GOMAXPROCS": true}

// k8sFiles are the files the checks read, by path from the repository's
// root: the manifests, deploy/Dockerfile, the Makefile and go.mod.
type k8sFiles map[string]string

func loadK8sFiles(t *testing.T) k8sFiles {
	t.Helper()
	root := testenv.RepoRoot(t)
	files := k8sFiles{}
	paths, err := filepath.Glob(filepath.Join(root, k8sDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	paths = append(paths, filepath.Join(root, "deploy", "Dockerfile"), filepath.Join(root, "Makefile"), filepath.Join(root, "go.mod"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = string(b)
	}
	return files
}

// The parts of the Kubernetes objects the checks read.
type (
	k8sMeta struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	}
	k8sObject struct {
		APIVersion string            `yaml:"apiVersion"`
		Kind       string            `yaml:"kind"`
		Metadata   k8sMeta           `yaml:"metadata"`
		StringData map[string]string `yaml:"stringData"` // Secret
		Data       map[string]string `yaml:"data"`       // Secret
		Spec       yaml.Node         `yaml:"spec"`
	}
	k8sLabelSelector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	k8sDeploymentSpec struct {
		Replicas *int             `yaml:"replicas"`
		Selector k8sLabelSelector `yaml:"selector"`
		Template struct {
			Metadata k8sMeta    `yaml:"metadata"`
			Spec     k8sPodSpec `yaml:"spec"`
		} `yaml:"template"`
	}
	k8sPodSpec struct {
		TerminationGracePeriodSeconds *int               `yaml:"terminationGracePeriodSeconds"`
		SecurityContext               k8sSecurityContext `yaml:"securityContext"`
		Containers                    []k8sContainer     `yaml:"containers"`
	}
	k8sSecurityContext struct {
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		RunAsUser                *int  `yaml:"runAsUser"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	}
	k8sContainer struct {
		Name    string   `yaml:"name"`
		Image   string   `yaml:"image"`
		Command []string `yaml:"command"`
		Args    []string `yaml:"args"`
		Ports   []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		Env            []k8sEnv  `yaml:"env"`
		ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
		LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
		StartupProbe   *k8sProbe `yaml:"startupProbe"`
		Lifecycle      struct {
			PreStop *k8sHandler `yaml:"preStop"`
		} `yaml:"lifecycle"`
		Resources struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		SecurityContext k8sSecurityContext `yaml:"securityContext"`
	}
	k8sEnv struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	}
	k8sHTTPGet struct {
		Path string    `yaml:"path"`
		Port yaml.Node `yaml:"port"` // a number or a port's name
	}
	k8sHandler struct {
		HTTPGet *k8sHTTPGet `yaml:"httpGet"`
		Exec    *struct {
			Command []string `yaml:"command"`
		} `yaml:"exec"`
		Sleep *struct {
			Seconds int `yaml:"seconds"`
		} `yaml:"sleep"`
	}
	k8sProbe struct {
		k8sHandler `yaml:",inline"`
	}
	k8sServiceSpec struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Port       int       `yaml:"port"`
			TargetPort yaml.Node `yaml:"targetPort"`
		} `yaml:"ports"`
	}
	k8sPDBSpec struct {
		MinAvailable   yaml.Node        `yaml:"minAvailable"`
		MaxUnavailable yaml.Node        `yaml:"maxUnavailable"`
		Selector       k8sLabelSelector `yaml:"selector"`
	}
)

// k8sObjects parses the files kustomization.yaml lists, each document
// an object.
func (f k8sFiles) objects() ([]k8sObject, error) {
	var kust struct {
		Namespace string   `yaml:"namespace"`
		Resources []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal([]byte(f[k8sDir+"/kustomization.yaml"]), &kust); err != nil {
		return nil, fmt.Errorf("kustomization.yaml: %w", err)
	}
	if len(kust.Resources) == 0 {
		return nil, errors.New("kustomization.yaml lists no resources")
	}
	var out []k8sObject
	for _, r := range kust.Resources {
		text, ok := f[path.Join(k8sDir, r)]
		if !ok {
			return nil, fmt.Errorf("kustomization.yaml lists %s, which is not in %s", r, k8sDir)
		}
		dec := yaml.NewDecoder(strings.NewReader(text))
		for {
			var o k8sObject
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", r, err)
			}
			if o.Kind == "" || o.APIVersion == "" || o.Metadata.Name == "" {
				return nil, fmt.Errorf("%s: an object without kind, apiVersion or name", r)
			}
			out = append(out, o)
		}
	}
	return out, nil
}

// find is the one object of kind named name.
func find(objs []k8sObject, kind, name string, spec any) (*k8sObject, error) {
	var found *k8sObject
	for i, o := range objs {
		if o.Kind == kind && o.Metadata.Name == name {
			if found != nil {
				return nil, fmt.Errorf("two %s objects named %s", kind, name)
			}
			found = &objs[i]
		}
	}
	if found == nil {
		return nil, fmt.Errorf("no %s named %s", kind, name)
	}
	if spec != nil {
		if err := found.Spec.Decode(spec); err != nil {
			return nil, fmt.Errorf("%s %s: %w", kind, name, err)
		}
	}
	return found, nil
}

// k8sCheck is what the checks need besides the files: the server's flag
// names, and the status a running server answers a GET of a path with.
type k8sCheck struct {
	flags  map[string]bool // "drain-delay"
	status func(path string) int
}

// k8sPodIP is the pod address the checks give status.podIP.
const k8sPodIP = "10.244.1.7"

// containerEnv resolves the container's variables as the kubelet does:
// values from the Secret, the pod's IP, and $(NAME) references to
// variables defined above.
func containerEnv(c k8sContainer, objs []k8sObject, podIP string) (map[string]string, error) {
	env := map[string]string{}
	var errs []error
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for _, e := range c.Env {
		v := e.Value
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			sk := e.ValueFrom.SecretKeyRef
			s, err := find(objs, "Secret", sk.Name, nil)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", e.Name, err))
				continue
			}
			var ok bool
			if v, ok = s.StringData[sk.Key]; !ok {
				if _, ok = s.Data[sk.Key]; !ok {
					errs = append(errs, fmt.Errorf("%s: Secret %s has no key %q", e.Name, sk.Name, sk.Key))
					continue
				}
				v = "from-data"
			}
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			if e.ValueFrom.FieldRef.FieldPath != "status.podIP" {
				errs = append(errs, fmt.Errorf("%s: the test knows no value for %s", e.Name, e.ValueFrom.FieldRef.FieldPath))
				continue
			}
			v = podIP
		case e.ValueFrom != nil:
			errs = append(errs, fmt.Errorf("%s: a valueFrom the test does not know", e.Name))
			continue
		}
		v = ref.ReplaceAllStringFunc(v, func(m string) string {
			name := ref.FindStringSubmatch(m)[1]
			if val, ok := env[name]; ok {
				return val
			}
			errs = append(errs, fmt.Errorf("%s refers to $(%s), which no variable above it defines", e.Name, name))
			return m
		})
		env[e.Name] = v
	}
	return env, errors.Join(errs...)
}

// portNumber resolves a probe's or a Service's port (a number or the
// name of one of the container's ports) to a number.
func portNumber(n yaml.Node, c k8sContainer) (int, error) {
	if p, err := strconv.Atoi(n.Value); err == nil {
		return p, nil
	}
	for _, p := range c.Ports {
		if p.Name == n.Value {
			return p.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("port %q is not a number or a port of the container", n.Value)
}

// preStopTime bounds a preStop hook: a sleep, as the sleep action or an
// exec of sleep.
func preStopTime(h *k8sHandler) (time.Duration, error) {
	switch {
	case h == nil:
		return 0, nil
	case h.Sleep != nil:
		return time.Duration(h.Sleep.Seconds) * time.Second, nil
	case h.Exec != nil:
		cmd := strings.Join(h.Exec.Command, " ")
		if m := regexp.MustCompile(`(?:^|[ ;/])sleep (\d+)$`).FindStringSubmatch(cmd); m != nil {
			s, _ := strconv.Atoi(m[1])
			return time.Duration(s) * time.Second, nil
		}
		return 0, fmt.Errorf("preStop runs %q: the test cannot bound its time (use a sleep)", cmd)
	}
	return 0, errors.New("preStop is not a sleep: the test cannot bound its time")
}

// selects reports whether a selector's labels are all on labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// memBytes parses a Kubernetes quantity (512Mi, 1Gi) or a GOMEMLIMIT
// (450MiB, 1GiB) of memory.
func memBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}, {"B", 1}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			return v * u.mult, err
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// check holds the files to the binary; each problem is one error.
func (k k8sCheck) check(f k8sFiles) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	objs, err := f.objects()
	if err != nil {
		return []error{err}
	}
	var dep k8sDeploymentSpec
	if _, err := find(objs, "Deployment", "sockjsd", &dep); err != nil {
		return []error{err}
	}
	pod := dep.Template.Spec
	labels := dep.Template.Metadata.Labels
	if dep.Replicas == nil || *dep.Replicas < 3 {
		fail("the Deployment runs fewer than 3 replicas")
	}
	if !selects(dep.Selector.MatchLabels, labels) {
		fail("the Deployment's selector %v does not select its pods %v", dep.Selector.MatchLabels, labels)
	}
	i := slices.IndexFunc(pod.Containers, func(c k8sContainer) bool { return c.Name == "sockjsd" })
	if i < 0 {
		return append(errs, errors.New("the Deployment has no container named sockjsd"))
	}
	c := pod.Containers[i]

	// Variables and flags exist, and parse as the binary parses them.
	env, err := containerEnv(c, objs, k8sPodIP)
	if err != nil {
		errs = append(errs, err)
	}
	for _, e := range c.Env {
		if name, ok := strings.CutPrefix(e.Name, "SOCKJSD_"); ok {
			if !k.flags[strings.ReplaceAll(strings.ToLower(name), "_", "-")] || envName(strings.ReplaceAll(strings.ToLower(name), "_", "-")) != e.Name {
				fail("%s is the variable of no flag", e.Name)
			}
		} else if !k8sOtherEnv[e.Name] {
			fail("%s is neither a SOCKJSD_* variable nor one the test knows (%v)", e.Name, k8sOtherEnv)
		}
	}
	args := c.Args
	if len(c.Command) > 0 {
		args = append(slices.Clone(c.Command[1:]), c.Args...)
	}
	for _, a := range args {
		if name, ok := strings.CutPrefix(a, "-"); ok {
			name, _, _ = strings.Cut(strings.TrimPrefix(name, "-"), "=")
			if !k.flags[name] {
				fail("args: %s is not a flag of the binary", a)
			}
		}
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cfg, err := parseConfigEnv(append(slices.Clone(args), "-client-dir", os.TempDir()), lookup)
	if err != nil {
		return append(errs, fmt.Errorf("the binary refuses the container's settings: %w", err))
	}
	if cfg.RedisURL == "" {
		fail("no SOCKJSD_REDIS: the nodes would not form a cluster")
	} else {
		// What the binary checks at start in cluster mode: the secret, the
		// URL, the advertised address (Redis is reached lazily).
		// Redis is reached lazily, but go-redis looks up the Service's
		// name, which does not resolve here: the URL keeps its form and
		// names a loopback port instead.
		cc := cfg
		if u, err := url.Parse(cfg.RedisURL); err == nil && u.Host != "" {
			u.Host = "127.0.0.1:1"
			cc.RedisURL = u.String()
		}
		opts := cc.transportOptions()
		if _, err := setupCluster(cc, &opts, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
			fail("cluster mode refuses the container's settings: %v", err)
		}
	}

	// Ports: the container's, the listen address's, the advertised
	// URL's, the Service's target.
	if len(c.Ports) != 1 {
		fail("the container has %d ports, want 1", len(c.Ports))
		return errs
	}
	port := c.Ports[0].ContainerPort
	if _, p, err := net.SplitHostPort(cfg.Addr); err != nil || p != strconv.Itoa(port) {
		fail("the server listens on %q, the container's port is %d", cfg.Addr, port)
	}
	if u, err := url.Parse(cfg.Cluster.Advertise); cfg.Cluster.Advertise != "" && (err != nil || u.Port() != strconv.Itoa(port)) {
		fail("-cluster-advertise %q is not on the container's port %d", cfg.Cluster.Advertise, port)
	} else if tls := cfg.TLS.Cert != ""; cfg.Cluster.Advertise != "" && tls != (u.Scheme == "https") {
		// A pod serving TLS is reached over https, one serving HTTP over
		// http: other nodes forward to the advertised URL as it is.
		fail("-cluster-advertise %q: its scheme does not match the listener (TLS: %v)", cfg.Cluster.Advertise, tls)
	}

	// Probes: readiness on /readyz (503 while draining), liveness on
	// /healthz (not on /readyz: Redis down would restart every pod), on
	// the container's port, answered by the server.
	for _, p := range []struct {
		name, want string
		probe      *k8sProbe
	}{{"readinessProbe", "/readyz", c.ReadinessProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			fail("no %s httpGet", p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.want {
			fail("%s GETs %s, want %s", p.name, p.probe.HTTPGet.Path, p.want)
		}
		if n, err := portNumber(p.probe.HTTPGet.Port, c); err != nil || n != port {
			fail("%s on port %q (%d, %v), want the container's %d", p.name, p.probe.HTTPGet.Port.Value, n, err, port)
		}
		if code := k.status(p.probe.HTTPGet.Path); code != http.StatusOK {
			fail("%s: GET %s answers %d, want 200", p.name, p.probe.HTTPGet.Path, code)
		}
	}

	// The drain fits the grace period: the kubelet sends SIGKILL at its
	// end.
	grace := k8sDefaultGrace
	if pod.TerminationGracePeriodSeconds != nil {
		grace = *pod.TerminationGracePeriodSeconds
	}
	pre, err := preStopTime(c.Lifecycle.PreStop)
	if err != nil {
		errs = append(errs, err)
	}
	if need := pre + cfg.Drain.Delay + cfg.ShutdownTimeout + k8sGraceMargin; time.Duration(grace)*time.Second < need {
		fail("terminationGracePeriodSeconds %d < preStop %v + drain delay %v + shutdown timeout %v + margin %v",
			grace, pre, cfg.Drain.Delay, cfg.ShutdownTimeout, k8sGraceMargin)
	}
	if cfg.Drain.Delay <= 0 {
		fail("no drain delay: the pod would stop before its endpoint is gone from the Services")
	}

	// Locked down and bounded.
	sc := c.SecurityContext
	if nonRoot := sc.RunAsNonRoot; (nonRoot == nil || !*nonRoot) && (pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot) {
		fail("runAsNonRoot is not set")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		fail("readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		fail("allowPrivilegeEscalation is not false")
	}
	if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		fail("resources: want cpu and memory requests and a memory limit")
	} else if gml, ok := env["GOMEMLIMIT"]; ok {
		soft, err1 := memBytes(gml)
		hard, err2 := memBytes(c.Resources.Limits["memory"])
		if err1 != nil || err2 != nil || soft >= hard {
			fail("GOMEMLIMIT %s is not below limits.memory %s", gml, c.Resources.Limits["memory"])
		}
	}

	// The Service and the PodDisruptionBudget select these pods.
	var svc k8sServiceSpec
	if _, err := find(objs, "Service", "sockjsd", &svc); err != nil {
		errs = append(errs, err)
	} else {
		if !selects(svc.Selector, labels) {
			fail("the Service's selector %v does not select the pods %v", svc.Selector, labels)
		}
		for _, p := range svc.Ports {
			if n, err := portNumber(p.TargetPort, c); err != nil || n != port {
				fail("the Service's targetPort %q (%d, %v) is not the container's port %d", p.TargetPort.Value, n, err, port)
			}
		}
	}
	var pdb k8sPDBSpec
	if _, err := find(objs, "PodDisruptionBudget", "sockjsd", &pdb); err != nil {
		errs = append(errs, err)
	} else {
		if !selects(pdb.Selector.MatchLabels, labels) {
			fail("the PodDisruptionBudget's selector %v does not select the pods %v", pdb.Selector.MatchLabels, labels)
		}
		switch {
		case pdb.MaxUnavailable.Kind != 0:
			if n, err := strconv.Atoi(pdb.MaxUnavailable.Value); err != nil || n < 1 || dep.Replicas == nil || *dep.Replicas-n < 2 {
				fail("the PodDisruptionBudget's maxUnavailable %q: want a number that leaves at least 2 of the replicas", pdb.MaxUnavailable.Value)
			}
		case pdb.MinAvailable.Kind != 0:
			if n, err := strconv.Atoi(pdb.MinAvailable.Value); err != nil || n < 2 || dep.Replicas == nil || n >= *dep.Replicas {
				fail("the PodDisruptionBudget's minAvailable %q: want at least 2 and fewer than the replicas", pdb.MinAvailable.Value)
			}
		default:
			fail("the PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
		}
	}
	// Redis is there, as SOCKJSD_REDIS names it.
	if u, err := url.Parse(cfg.RedisURL); err == nil && u.Hostname() != "" {
		var rs k8sServiceSpec
		if _, err := find(objs, "Service", u.Hostname(), &rs); err != nil {
			fail("SOCKJSD_REDIS names %s: %v", u.Hostname(), err)
		}
	}
	return append(errs, k.checkDockerfile(f, c, pod, port)...)
}

// checkDockerfile holds deploy/Dockerfile to `make build` (the embed
// tag), go.mod (the Go version) and the manifests (port, user).
func (k8sCheck) checkDockerfile(f k8sFiles, c k8sContainer, pod k8sPodSpec, port int) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	df := f["deploy/Dockerfile"]
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(f["go.mod"])
	if goVersion == nil || !strings.Contains(df, "FROM golang:"+goVersion[1]+"-") {
		fail("deploy/Dockerfile does not build with go.mod's Go (%v)", goVersion)
	}
	makeBuild := regexp.MustCompile(`(?m)^\t\$\(GO\) build (-tags \S+) -o \$\(BIN\) \./cmd/server$`).FindStringSubmatch(f["Makefile"])
	if makeBuild == nil {
		fail("the Makefile's build line is not the one the test knows")
	} else if !regexp.MustCompile(`(?m)^RUN CGO_ENABLED=0 go build .*` + regexp.QuoteMeta(makeBuild[1]) + ` .*\./cmd/server$`).MatchString(df) {
		fail("deploy/Dockerfile does not build ./cmd/server with %s as `make build` does", makeBuild[1])
	}
	if !strings.Contains(df, " web/clientdist/sockjs.min.js\n") {
		fail("deploy/Dockerfile does not put the client where the embed tag takes it (web/clientdist/sockjs.min.js)")
	}
	if m := regexp.MustCompile(`(?m)^EXPOSE (\d+)$`).FindStringSubmatch(df); m == nil || m[1] != strconv.Itoa(port) {
		fail("deploy/Dockerfile exposes %v, the container's port is %d", m, port)
	}
	user := regexp.MustCompile(`(?m)^USER (\d+)`).FindStringSubmatch(df)
	runAs := c.SecurityContext.RunAsUser
	if runAs == nil {
		runAs = pod.SecurityContext.RunAsUser
	}
	if user == nil || user[1] == "0" || (runAs != nil && strconv.Itoa(*runAs) != user[1]) {
		fail("deploy/Dockerfile's USER %v is not a non-root user the manifests run as (%v)", user, runAs)
	}
	if c.Image == "" {
		fail("the container names no image")
	}
	return errs
}

// sockjsdPod is the Deployment's sockjsd container and the objects.
func sockjsdPod(t *testing.T, f k8sFiles) (k8sDeploymentSpec, k8sContainer, []k8sObject) {
	t.Helper()
	objs, err := f.objects()
	if err != nil {
		t.Fatal(err)
	}
	var dep k8sDeploymentSpec
	if _, err := find(objs, "Deployment", "sockjsd", &dep); err != nil {
		t.Fatal(err)
	}
	for _, c := range dep.Template.Spec.Containers {
		if c.Name == "sockjsd" {
			return dep, c, objs
		}
	}
	t.Fatal("the Deployment has no container named sockjsd")
	return dep, k8sContainer{}, nil
}

// k8sServer runs the server in-process with the manifests' settings less
// Redis (the routes are the same without it) and returns a GET's status
// for a path.
func k8sServer(t *testing.T, f k8sFiles) func(string) int {
	t.Helper()
	_, c, objs := sockjsdPod(t, f)
	env, err := containerEnv(c, objs, k8sPodIP)
	if err != nil {
		t.Fatal(err)
	}
	delete(env, "SOCKJSD_REDIS")
	cfg, err := parseConfigEnv([]string{"-client-dir", t.TempDir()}, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	_, addr := startServerConfig(t, io.Discard, cfg)
	hc := &http.Client{Timeout: 10 * time.Second}
	return func(p string) int {
		res, err := hc.Get("http://" + addr + p)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		return res.StatusCode
	}
}

// TestKubernetesManifests: deploy/kubernetes and deploy/Dockerfile pass
// every check, and each mutation below (a mistake one could make) fails
// the check that guards it.
func TestKubernetesManifests(t *testing.T) {
	files := loadK8sFiles(t)
	flags := map[string]bool{}
	for _, fl := range allFlags(t) {
		flags[fl.Name] = true
	}
	k := k8sCheck{flags: flags, status: k8sServer(t, files)}
	if errs := k.check(files); len(errs) > 0 {
		t.Fatalf("deploy/kubernetes: %v", errors.Join(errs...))
	}

	const dep = k8sDir + "/sockjsd.yaml"
	mutations := []struct {
		name, file, old, new string
		want                 string // in one of the errors
	}{
		{"unknown variable", dep, "name: SOCKJSD_DRAIN_DELAY", "name: SOCKJSD_DRAIN_DELAYS", "SOCKJSD_DRAIN_DELAYS is the variable of no flag"},
		{"not a SOCKJSD variable", dep, "name: SOCKJSD_REDIS\n", "name: SOCKJS_REDIS\n", "SOCKJS_REDIS is neither"},
		{"bad value", dep, "value: 5s", "value: \"5\"", "refuses the container's settings"},
		{"unknown flag in args", dep, "          imagePullPolicy: IfNotPresent\n", "          imagePullPolicy: IfNotPresent\n          args: [\"-drain-dalay=1s\"]\n", "-drain-dalay=1s is not a flag"},
		{"drain longer than the grace period", dep, "value: 5s", "value: 20s", "terminationGracePeriodSeconds 30 < preStop 0s + drain delay 20s"},
		{"grace period too short", dep, "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 15", "terminationGracePeriodSeconds 15 <"},
		{"no grace period: Kubernetes' 30s", dep, "      terminationGracePeriodSeconds: 30\n", "", ""},
		{"preStop sleep past the grace period", dep, "          imagePullPolicy: IfNotPresent\n", "          imagePullPolicy: IfNotPresent\n          lifecycle:\n            preStop:\n              sleep:\n                seconds: 15\n", "preStop 15s"},
		{"preStop exec sleep past the grace period", dep, "          imagePullPolicy: IfNotPresent\n", "          imagePullPolicy: IfNotPresent\n          lifecycle:\n            preStop:\n              exec:\n                command: [\"/bin/sh\", \"-c\", \"sleep 15\"]\n", "preStop 15s"},
		{"shutdown timeout past the grace period", dep, "value: 10s", "value: 25s", "shutdown timeout 25s"},
		{"no drain", dep, "value: 5s", "value: 0s", "no drain delay"},
		{"container port not the listen port", dep, "containerPort: 8081", "containerPort: 8080", "the server listens on \":8081\", the container's port is 8080"},
		{"listen port not the container port", dep, "value: \":8081\"", "value: \":9000\"", "the server listens on \":9000\""},
		{"advertised URL on another port", dep, "http://$(POD_IP):8081", "http://$(POD_IP):9000", "-cluster-advertise \"http://10.244.1.7:9000\""},
		{"advertised URL before POD_IP is defined", dep, "fieldPath: status.podIP", "fieldPath: status.podIP\n            - name: SOCKJSD_LOG_LEVEL\n              value: $(HOST_IP)", "refers to $(HOST_IP)"},
		{"TLS in the pod, advertised over http", dep, "            - name: SOCKJSD_DRAIN_DELAY\n", "            - name: SOCKJSD_TLS_CERT\n              value: /etc/sockjsd/tls/tls.crt\n            - name: SOCKJSD_TLS_KEY\n              value: /etc/sockjsd/tls/tls.key\n            - name: SOCKJSD_DRAIN_DELAY\n", "its scheme does not match the listener (TLS: true)"},
		{"readiness path", dep, "path: /readyz", "path: /ready", "readinessProbe GETs /ready, want /readyz"},
		{"readiness path not a route", dep, "path: /readyz", "path: /ready", "GET /ready answers 404"},
		{"liveness on readyz", dep, "path: /healthz", "path: /readyz", "livenessProbe GETs /readyz, want /healthz"},
		{"probe port", dep, "              path: /healthz\n              port: http", "              path: /healthz\n              port: 8080", "livenessProbe on port \"8080\""},
		{"probe port name", dep, "              path: /readyz\n              port: http", "              path: /readyz\n              port: web", "readinessProbe on port \"web\""},
		{"Service targetPort", dep, "targetPort: http", "targetPort: 8080", "targetPort \"8080\""},
		{"Service selector", dep, "spec:\n  selector:\n    app.kubernetes.io/name: sockjsd", "spec:\n  selector:\n    app.kubernetes.io/name: sockjs", "the Service's selector"},
		{"PDB selector", dep, "maxUnavailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: sockjsd\n", "maxUnavailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: sockjs\n", "the PodDisruptionBudget's selector"},
		{"PDB blocks every eviction", dep, "maxUnavailable: 1\n  selector", "maxUnavailable: 0\n  selector", "maxUnavailable \"0\""},
		{"Deployment selector", dep, "  selector:\n    matchLabels:\n      app.kubernetes.io/name: sockjsd\n  strategy", "  selector:\n    matchLabels:\n      app: sockjsd\n  strategy", "the Deployment's selector"},
		{"fewer replicas", dep, "replicas: 3", "replicas: 1", "fewer than 3 replicas"},
		{"secret key", dep, "key: cluster-secret", "key: cluster_secret", "Secret sockjsd has no key \"cluster_secret\""},
		{"no cluster secret", dep, "            - name: SOCKJSD_CLUSTER_SECRET\n              valueFrom:\n                secretKeyRef:\n                  name: sockjsd\n                  key: cluster-secret\n", "", "-cluster-secret (SOCKJSD_CLUSTER_SECRET) is required with -redis"},
		{"no Redis Service", k8sDir + "/kustomization.yaml", "  - redis.yaml\n", "", "SOCKJSD_REDIS names redis"},
		{"resource not in the directory", k8sDir + "/kustomization.yaml", "  - redis.yaml\n", "  - redis.yml\n", "lists redis.yml"},
		{"writable root filesystem", dep, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem is not true"},
		{"root", dep, "runAsNonRoot: true", "runAsNonRoot: false", "runAsNonRoot is not set"},
		{"no memory limit", dep, "            limits:\n              memory: 512Mi\n", "", "a memory limit"},
		{"GOMEMLIMIT over the limit", dep, "value: 450MiB", "value: 600MiB", "GOMEMLIMIT 600MiB is not below"},
		{"image port", "deploy/Dockerfile", "EXPOSE 8081", "EXPOSE 8080", "deploy/Dockerfile exposes"},
		{"image user", "deploy/Dockerfile", "USER 65532:65532", "USER 1000:1000", "USER [USER 1000 1000]"},
		{"image without the client", "deploy/Dockerfile", "-tags sockjsd_embed", "", "with -tags sockjsd_embed"},
		{"image Go version", "go.mod", "\ngo ", "\ngo 1.99.0\n// ", "go.mod's Go"},
	}
	for _, m := range mutations {
		t.Run(m.name, func(t *testing.T) {
			if strings.Count(files[m.file], m.old) != 1 {
				t.Fatalf("%s holds %q %d times, want once: the mutation no longer applies", m.file, m.old, strings.Count(files[m.file], m.old))
			}
			mutated := k8sFiles{}
			for p, text := range files {
				mutated[p] = text
			}
			mutated[m.file] = strings.Replace(files[m.file], m.old, m.new, 1)
			errs := k.check(mutated)
			if m.want == "" {
				if len(errs) > 0 {
					t.Fatalf("want no error, got %v", errors.Join(errs...))
				}
				return
			}
			var all bytes.Buffer
			for _, e := range errs {
				all.WriteString(e.Error() + "\n")
			}
			if !strings.Contains(all.String(), m.want) {
				t.Errorf("want an error containing %q, got:\n%s", m.want, all.String())
			}
		})
	}
}
