//go:build deploy

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/rtm-project/rtm/config"
	"github.com/rtm-project/rtm/processors/pipeline"
)

var k8sDir = filepath.Join(repoRoot, "deploy", "k8s")

// k8sObject is one decoded manifest document.
type k8sObject struct {
	file string
	obj  any // *appsv1.StatefulSet, *corev1.Service, ...
}

// k8sKinds are the kinds the manifests may hold, each decoded into its
// k8s.io/api type.
var k8sKinds = map[string]func() any{
	"v1/Namespace":                  func() any { return &corev1.Namespace{} },
	"v1/ConfigMap":                  func() any { return &corev1.ConfigMap{} },
	"v1/Service":                    func() any { return &corev1.Service{} },
	"apps/v1/StatefulSet":           func() any { return &appsv1.StatefulSet{} },
	"apps/v1/Deployment":            func() any { return &appsv1.Deployment{} },
	"batch/v1/Job":                  func() any { return &batchv1.Job{} },
	"policy/v1/PodDisruptionBudget": func() any { return &policyv1.PodDisruptionBudget{} },
}

// decodeStrict decodes one YAML document into its k8s.io/api type: YAML to
// JSON (duplicate keys fail), then a case-sensitive decode with unknown
// fields refused, so a misspelt or misplaced field fails instead of being
// dropped as the API server's lenient decoding would.
func decodeStrict(doc []byte) (any, error) {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(j, &tm); err != nil {
		return nil, err
	}
	mk, ok := k8sKinds[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return nil, fmt.Errorf("kind %s/%s is not one the manifests may hold (Secrets are never committed)", tm.APIVersion, tm.Kind)
	}
	obj := mk()
	// sigs.k8s.io/json, as apimachinery's strict serializer: unlike
	// encoding/json it matches field names case-sensitively, so clusterIp
	// is an unknown field, not clusterIP.
	strict, err := kjson.UnmarshalStrict(j, obj)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if err := errors.Join(strict...); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

func TestDecodeStrictRefusesUnknownFields(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		ok        bool
	}{
		{"valid", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {clusterIP: None}\n", true},
		{"unknown field", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {clusterIp: None}\n", false},
		{"wrong case", "apiVersion: v1\nkind: Service\nmetadata: {Name: x}\n", false},
		{"misplaced field", "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec: {template: {spec: {replicas: 1}}}\n", false},
		{"duplicate key", "apiVersion: v1\nkind: Service\nmetadata: {name: x, name: y}\n", false},
		{"a Secret", "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData: {password: hunter2}\n", false},
	} {
		if _, err := decodeStrict([]byte(tc.doc)); (err == nil) != tc.ok {
			t.Errorf("%s: err %v", tc.name, err)
		}
	}
}

// loadManifests decodes every document of every deploy/k8s/*.yaml but
// the kustomization, and checks the kustomization lists exactly them.
func loadManifests(t *testing.T) []k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var objs []k8sObject
	var listed []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Base(f)
		if base == "kustomization.yaml" {
			var k struct {
				APIVersion string   `json:"apiVersion"`
				Kind       string   `json:"kind"`
				Namespace  string   `json:"namespace"`
				Resources  []string `json:"resources"`
				Images     []struct {
					Name    string `json:"name"`
					NewName string `json:"newName"`
					NewTag  string `json:"newTag"`
				} `json:"images"`
			}
			if err := yaml.UnmarshalStrict(data, &k); err != nil {
				t.Fatalf("%s: %v", base, err)
			}
			listed = k.Resources
			continue
		}
		for i, doc := range bytes.Split(data, []byte("\n---\n")) {
			obj, err := decodeStrict(doc)
			if err != nil {
				t.Errorf("%s, document %d: %v", base, i+1, err)
				continue
			}
			objs = append(objs, k8sObject{file: base, obj: obj})
		}
	}
	var want []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			want = append(want, b)
		}
	}
	slices.Sort(listed)
	if !slices.Equal(listed, want) {
		t.Errorf("kustomization.yaml resources %v, files %v", listed, want)
	}
	return objs
}

func findAll[T any](objs []k8sObject) []*T {
	var out []*T
	for _, o := range objs {
		if v, ok := o.obj.(*T); ok {
			out = append(out, v)
		}
	}
	return out
}

// podConfig is what an rtm container runs with: it is loaded through the
// command's own binding (defaults, the ConfigMap's rtm.yaml named by
// RTM_CONFIG, the container's env, its flags), exactly as the pod would.
func podConfig(t *testing.T, where string, pod corev1.PodSpec, c corev1.Container, maps map[string]*corev1.ConfigMap, podName string) (config.Config, invocation) {
	t.Helper()
	inv := invocation{where: where, args: c.Args, env: map[string]string{}}
	if len(c.Command) != 0 {
		t.Errorf("%s: sets command %q; the image's entrypoint is rtm, give args", where, c.Command)
	}
	for _, e := range c.Env {
		v := e.Value
		switch {
		case e.ValueFrom == nil:
		case e.ValueFrom.FieldRef != nil:
			if e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
				t.Errorf("%s: %s from %s", where, e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			v = podName
		case e.ValueFrom.SecretKeyRef != nil:
			if f, ok := settingByEnv(e.Name); ok && !f.Secret {
				t.Errorf("%s: %s comes from a Secret but is no secret setting", where, e.Name)
			}
			if e.ValueFrom.SecretKeyRef.Optional != nil && *e.ValueFrom.SecretKeyRef.Optional {
				t.Errorf("%s: %s's Secret is optional: a missing one must stop the pod, not start it without", where, e.Name)
			}
			v = strings.Repeat("s", config.MinSecretBytes)
			if strings.HasSuffix(e.Name, "_HS256_KEYS") { // kid:secret
				v = "k1:" + v
			}
		default:
			t.Errorf("%s: %s: unexpected valueFrom %+v", where, e.Name, e.ValueFrom)
		}
		inv.env[e.Name] = v
	}
	if f, ok := inv.env["RTM_CONFIG"]; ok {
		inv.env["RTM_CONFIG"] = configMapFile(t, where, pod, c, maps, f)
	}
	for _, e := range inv.check() {
		t.Error(e)
	}
	// Only what the pod sets: unset every other RTM_* variable (t.Setenv
	// restores them after the test).
	for _, f := range config.Fields {
		for _, n := range []string{f.Env, f.Env + "_FILE"} {
			t.Setenv(n, "")
			os.Unsetenv(n)
		}
	}
	t.Setenv("RTM_CONFIG", "")
	os.Unsetenv("RTM_CONFIG")
	for k, v := range inv.env {
		t.Setenv(k, v)
	}
	root := newRoot()
	cmd, rest, err := root.Find(c.Args)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	cfg, err := load(cmd)
	if err != nil {
		t.Fatalf("%s: its configuration does not load: %v", where, err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("%s: %v", where, err)
	}
	return cfg, inv
}

// configMapFile writes the ConfigMap key that file (a path in container c)
// names to a temporary file, and returns that file.
func configMapFile(t *testing.T, where string, pod corev1.PodSpec, c corev1.Container, maps map[string]*corev1.ConfigMap, file string) string {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if path.Dir(file) != m.MountPath {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			cm, ok := maps[v.ConfigMap.Name]
			if !ok {
				t.Fatalf("%s: ConfigMap %s is not in deploy/k8s", where, v.ConfigMap.Name)
			}
			data, ok := cm.Data[path.Base(file)]
			if !ok {
				t.Fatalf("%s: ConfigMap %s has no key %s", where, cm.Name, path.Base(file))
			}
			out := filepath.Join(t.TempDir(), path.Base(file))
			if err := os.WriteFile(out, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			return out
		}
	}
	t.Fatalf("%s: RTM_CONFIG=%s is on no ConfigMap volume", where, file)
	return ""
}

func port(addr string) int32 {
	_, p, _ := net.SplitHostPort(addr)
	var n int32
	fmt.Sscan(p, &n)
	return n
}

func containerPort(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// checkPod checks an rtm pod template against the configuration its
// command loads: probes, ports, grace period, mounts and resources.
func checkPod(t *testing.T, where string, pod corev1.PodSpec, cfg config.Config, inv invocation, claims []string) corev1.Container {
	t.Helper()
	c := pod.Containers[0]
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("%s: no cpu and memory requests", where)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsUser == nil || *pod.SecurityContext.RunAsUser != 65532 {
		t.Errorf("%s: must run as the image's user 65532", where)
	}
	mounts := map[string]bool{}
	for _, v := range pod.Volumes {
		mounts[v.Name] = true
	}
	for _, n := range claims {
		mounts[n] = true
	}
	for _, m := range c.VolumeMounts {
		if !mounts[m.Name] {
			t.Errorf("%s: mounts %s, which is no volume of the pod", where, m.Name)
		}
	}
	if !slices.Contains(longRunning, inv.command()) {
		return c
	}
	ops := containerPort(c, "ops")
	if host, _, _ := net.SplitHostPort(cfg.HTTPAddr); ops == 0 || ops != port(cfg.HTTPAddr) || host != "0.0.0.0" {
		t.Errorf("%s: port ops %d, but http_addr is %s (the kubelet probes the pod IP)", where, ops, cfg.HTTPAddr)
	}
	for _, p := range []struct {
		name, path string
		probe      *corev1.Probe
	}{{"readiness", "/readyz", c.ReadinessProbe}, {"liveness", "/healthz", c.LivenessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "ops" {
			t.Errorf("%s: %s probe must GET %s on port ops, is %+v", where, p.name, p.path, p.probe)
		}
	}
	var grace time.Duration
	if g := pod.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if grace <= cfg.ShutdownTimeout {
		t.Errorf("%s: terminationGracePeriodSeconds %v must exceed shutdown_timeout %v", where, grace, cfg.ShutdownTimeout)
	}
	return c
}

// TestKubernetesManifests decodes every manifest strictly and checks them
// against the rtm command: a StatefulSet per stage (a claim per replica on
// data_dir, instance_id from the pod name, probes on the ops port, a grace
// period above shutdown_timeout) with a headless Service and a
// PodDisruptionBudget; the collector a Deployment behind a Service on its
// listen port; the CDC bridge one replica, recreated; Jobs for topics and
// rules. Every container's configuration is loaded as the pod would load it.
func TestKubernetesManifests(t *testing.T) {
	objs := loadManifests(t)
	maps := map[string]*corev1.ConfigMap{}
	for _, cm := range findAll[corev1.ConfigMap](objs) {
		maps[cm.Name] = cm
	}
	services := findAll[corev1.Service](objs)
	pdbs := findAll[policyv1.PodDisruptionBudget](objs)
	selects := func(sel map[string]string, l map[string]string) bool {
		return len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(l))
	}
	pdbFor := func(l map[string]string) bool {
		for _, p := range pdbs {
			if p.Spec.Selector != nil && selects(p.Spec.Selector.MatchLabels, l) {
				return true
			}
		}
		return false
	}

	stages := map[string]bool{}
	for _, ss := range findAll[appsv1.StatefulSet](objs) {
		t.Run(ss.Name, func(t *testing.T) {
			tpl := ss.Spec.Template
			if ss.Spec.Selector == nil || !selects(ss.Spec.Selector.MatchLabels, tpl.Labels) {
				t.Errorf("selector does not select the template's labels")
			}
			cfg, inv := podConfig(t, ss.Name, tpl.Spec, tpl.Spec.Containers[0], maps, ss.Name+"-0")
			var claims []string
			for _, c := range ss.Spec.VolumeClaimTemplates {
				claims = append(claims, c.Name)
			}
			c := checkPod(t, ss.Name, tpl.Spec, cfg, inv, claims)
			st := inv.stage()
			if inv.command() != "rtm run" || st == "" {
				t.Fatalf("runs %q, not one stage", c.Args)
			}
			stages[st] = true
			if cfg.InstanceID != ss.Name+"-0" {
				t.Errorf("instance_id %q is not the pod name (downward API metadata.name)", cfg.InstanceID)
			}
			dataClaim := ""
			for _, m := range c.VolumeMounts {
				if m.MountPath == cfg.DataDir && slices.Contains(claims, m.Name) {
					dataClaim = m.Name
				}
			}
			if dataClaim == "" {
				t.Errorf("no volumeClaimTemplate is mounted on data_dir %s", cfg.DataDir)
			}
			if fs := tpl.Spec.SecurityContext.FSGroup; fs == nil || *fs != 65532 {
				t.Errorf("fsGroup must be 65532 so the volume is writable by the image's user")
			}
			if !pdbFor(tpl.Labels) {
				t.Errorf("no PodDisruptionBudget selects it")
			}
			headless := false
			for _, s := range services {
				headless = headless || (s.Name == ss.Spec.ServiceName && s.Spec.ClusterIP == "None" && selects(s.Spec.Selector, tpl.Labels))
			}
			if !headless {
				t.Errorf("no headless Service %q selects it", ss.Spec.ServiceName)
			}
		})
	}
	for _, st := range pipeline.Stages() {
		if !stages[st] {
			t.Errorf("no StatefulSet runs stage %s", st)
		}
	}

	deployments := map[string]bool{}
	for _, d := range findAll[appsv1.Deployment](objs) {
		t.Run(d.Name, func(t *testing.T) {
			tpl := d.Spec.Template
			cfg, inv := podConfig(t, d.Name, tpl.Spec, tpl.Spec.Containers[0], maps, d.Name+"-abc12")
			c := checkPod(t, d.Name, tpl.Spec, cfg, inv, nil)
			deployments[inv.command()] = true
			switch inv.command() {
			case "rtm collect":
				http := containerPort(c, "http")
				if http == 0 || http != port(cfg.Collector.Addr) {
					t.Errorf("port http %d, but collector.addr is %s", http, cfg.Collector.Addr)
				}
				served := false
				for _, s := range services {
					for _, p := range s.Spec.Ports {
						served = served || (selects(s.Spec.Selector, tpl.Labels) && p.TargetPort.String() == "http")
					}
				}
				if !served {
					t.Error("no Service sends traffic to the collector's http port")
				}
				if !pdbFor(tpl.Labels) {
					t.Error("no PodDisruptionBudget selects the collector")
				}
			case "rtm cdc":
				if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
					t.Error("the CDC bridge must be one replica, replaced with Recreate (its transactional ID fences a second)")
				}
			default:
				t.Errorf("unexpected Deployment running %s", inv.command())
			}
		})
	}
	for _, want := range []string{"rtm collect", "rtm cdc"} {
		if !deployments[want] {
			t.Errorf("no Deployment runs %s", want)
		}
	}

	jobs := map[string]bool{}
	for _, j := range findAll[batchv1.Job](objs) {
		t.Run(j.Name, func(t *testing.T) {
			tpl := j.Spec.Template
			cfg, inv := podConfig(t, j.Name, tpl.Spec, tpl.Spec.Containers[0], maps, j.Name+"-abc12")
			c := checkPod(t, j.Name, tpl.Spec, cfg, inv, nil)
			jobs[inv.command()] = true
			if inv.command() == "rtm rules publish" {
				wb := c.Args[len(c.Args)-1]
				mounted := false
				for _, m := range c.VolumeMounts {
					mounted = mounted || path.Dir(wb) == m.MountPath
				}
				if !mounted {
					t.Errorf("the workbook %s is on no mounted volume", wb)
				}
			}
		})
	}
	for _, want := range []string{"rtm topics apply", "rtm rules publish"} {
		if !jobs[want] {
			t.Errorf("no Job runs %s", want)
		}
	}
}
