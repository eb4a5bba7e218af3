package bootstrap

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// DryRun holds stand-ins for every outside effect of a Stack: each prints what it would do
// ("+ docker …", "+ kind …", "+ kubectl apply …", "+ PUT https://…") and answers as a
// fresh machine would, so that a dry run walks every step.
type DryRun struct {
	Out io.Writer
}

// Apply sets s up for a dry run.
func (d DryRun) Apply(s *Stack) {
	s.DryRun = true
	s.Docker = dryDocker(d)
	s.Kind = dryKind(d)
	s.NewKube = func(string) (Kube, error) { return dryKube(d), nil }
	s.NexusHTTP = &http.Client{Transport: &dryNexus{d: d, repos: map[string][]byte{}}}
}

func (d DryRun) say(format string, args ...any) {
	_, _ = fmt.Fprintf(d.Out, "    + "+format+"\n", args...)
}

type dryDocker DryRun

func (d dryDocker) Run(_ context.Context, _ io.Reader, args ...string) (string, error) {
	DryRun(d).say("docker %s", strings.Join(args, " "))
	switch {
	case len(args) > 0 && args[0] == "inspect":
		return "172.18.0.100", nil // the proxy's address on the kind network
	case strings.Contains(strings.Join(args, " "), "admin.password"):
		return "<initial-admin-password>", nil
	}
	return "", nil
}

type dryKind DryRun

func (d dryKind) Create(name, configPath, kubeconfigPath string) error {
	DryRun(d).say("kind create cluster --name %s --config %s --kubeconfig %s (sigs.k8s.io/kind/pkg/cluster)", name, configPath, kubeconfigPath)
	return nil
}

func (d dryKind) Delete(name, kubeconfigPath string) error {
	DryRun(d).say("kind delete cluster --name %s --kubeconfig %s (sigs.k8s.io/kind/pkg/cluster)", name, kubeconfigPath)
	return nil
}

// Clusters answers as a machine without clusters.
func (d dryKind) Clusters() ([]string, error) {
	DryRun(d).say("kind get clusters (sigs.k8s.io/kind/pkg/cluster; a dry run assumes none)")
	return nil, nil
}

func (d dryKind) Nodes(name string) ([]string, error) {
	DryRun(d).say("kind get nodes --name %s (sigs.k8s.io/kind/pkg/cluster)", name)
	return []string{name + "-control-plane", name + "-worker"}, nil
}

type dryKube DryRun

func (d dryKube) Apply(_ context.Context, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		name := o.GetName()
		if o.GetNamespace() != "" {
			name = o.GetNamespace() + "/" + name
		}
		DryRun(d).say("kubectl apply --server-side --field-manager=%s: %s %s", FieldManager, o.GetKind(), name)
	}
	return nil
}

func (d dryKube) Ready(context.Context, *unstructured.Unstructured) (bool, string, error) {
	return true, "dry run", nil
}

// dryNexus answers Nexus's REST API as a Nexus after its first start would, and keeps
// the repositories the run creates so that reading one back finds it.
type dryNexus struct {
	d     DryRun
	mu    sync.Mutex
	repos map[string][]byte // by path
}

func (n *dryNexus) RoundTrip(r *http.Request) (*http.Response, error) {
	n.d.say("%s %s", r.Method, r.URL)
	n.mu.Lock()
	defer n.mu.Unlock()
	status, body := http.StatusNoContent, ""
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/realms/active"):
		status, body = http.StatusOK, `["NexusAuthenticatingRealm"]`
	case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/repositories/"):
		status = http.StatusNotFound
		if b, ok := n.repos[r.URL.Path]; ok {
			status, body = http.StatusOK, string(b)
		}
	case r.Method == http.MethodGet:
		status = http.StatusOK
	case r.Method == http.MethodPost:
		status = http.StatusCreated
		if r.Body != nil && strings.HasSuffix(r.URL.Path, "/repositories/docker/hosted") {
			b, _ := io.ReadAll(r.Body)
			var repo struct {
				Name string `json:"name"`
			}
			if json.Unmarshal(b, &repo) == nil {
				n.repos[r.URL.Path+"/"+repo.Name] = b
			}
		}
	}
	return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
}
