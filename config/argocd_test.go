package config_test

import (
	"os"
	"testing"

	lua "github.com/yuin/gopher-lua"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/regwire/regwire/api/v1alpha1"
)

// toLua turns a JSON-like value into Lua values, as Argo CD hands objects to health
// scripts.
func toLua(ls *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := ls.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(ls, e))
		}
		return t
	case []any:
		t := ls.NewTable()
		for _, e := range v {
			t.Append(toLua(ls, e))
		}
		return t
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	}
	return lua.LNil
}

// TestTheArgoCDHealthCheckReadsRegwiresConditions runs config/argocd/health.lua with
// gopher-lua (the interpreter Argo CD runs health checks in) over the states the
// controllers set.
func TestTheArgoCDHealthCheckReadsRegwiresConditions(t *testing.T) {
	t.Parallel()
	script, err := os.ReadFile("argocd/health.lua")
	if err != nil {
		t.Fatal(err)
	}
	cond := func(typ string, status metav1.ConditionStatus, reason string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: typ + " " + reason, LastTransitionTime: metav1.Now()}
	}
	for _, tc := range []struct {
		name                 string
		generation, observed int64
		conds                []metav1.Condition
		want                 string
	}{
		{name: "not reconciled yet", generation: 1, want: "Progressing"},
		{name: "ready", generation: 1, observed: 1, conds: []metav1.Condition{cond("Ready", metav1.ConditionTrue, "Reconciled")}, want: "Healthy"},
		{name: "ready, but a newer spec is not observed yet", generation: 2, observed: 1, conds: []metav1.Condition{cond("Ready", metav1.ConditionTrue, "Reconciled")}, want: "Progressing"},
		{name: "nodes converging", generation: 1, observed: 1, conds: []metav1.Condition{cond("Ready", metav1.ConditionFalse, "NodesNotReady"), cond("Reconciling", metav1.ConditionTrue, "NodesNotReady")}, want: "Progressing"},
		{name: "stalled on an invalid CA", generation: 1, observed: 1, conds: []metav1.Condition{cond("Ready", metav1.ConditionFalse, "CAInvalid"), cond("Stalled", metav1.ConditionTrue, "CAInvalid")}, want: "Degraded"},
		{name: "suspended", generation: 1, observed: 1, conds: []metav1.Condition{cond("Ready", metav1.ConditionFalse, "Suspended")}, want: "Suspended"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := &v1alpha1.ImageSync{ObjectMeta: metav1.ObjectMeta{Name: "busybox", Generation: tc.generation},
				Status: v1alpha1.ImageSyncStatus{ObservedGeneration: tc.observed, Conditions: tc.conds}}
			m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(is)
			if err != nil {
				t.Fatal(err)
			}
			L := lua.NewState(lua.Options{SkipOpenLibs: false})
			defer L.Close()
			L.SetGlobal("obj", toLua(L, m))
			if err := L.DoString(string(script)); err != nil {
				t.Fatalf("health.lua: %v", err)
			}
			ret, ok := L.Get(-1).(*lua.LTable)
			if !ok {
				t.Fatalf("health.lua returned %v", L.Get(-1))
			}
			if got := ret.RawGetString("status").String(); got != tc.want {
				t.Errorf("status %s (%s), want %s", got, ret.RawGetString("message"), tc.want)
			}
		})
	}
}
