// Command kstatus prints how GitOps tools judge one Kubernetes object, read as JSON on stdin.
//
//	kstatus < obj.json             kstatus's computed status (sigs.k8s.io/cli-utils
//	                               pkg/kstatus/status.Compute: what Flux, `kubectl wait` and
//	                               kpt read), e.g. {"status":"Current","message":"..."}
//	kstatus lua health.lua < obj   the Argo CD health of the object by that script, run as
//	                               Argo CD runs a script from argocd-cm: gopher-lua with only
//	                               the package, base and table libraries, `obj` global, 1 s
//	                               (Argo CD adds a reduced os library; no script here uses it)
//
// Test-only (tests/e2e/test_gitops_health.py); built by hack/kstatus/build.sh.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(args []string, in io.Reader, out io.Writer) error {
	raw, err := io.ReadAll(io.LimitReader(in, 16<<20))
	if err != nil {
		return err
	}
	// Unstructured's own decoder keeps integers as int64, as the apiserver client does;
	// kstatus reads metadata.generation with NestedInt64 and fails on float64.
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(raw); err != nil {
		return fmt.Errorf("stdin is not a Kubernetes object: %w", err)
	}
	var v verdict
	switch {
	case len(args) == 0:
		res, err := status.Compute(obj)
		if err != nil {
			return err
		}
		v = verdict{Status: res.Status.String(), Message: res.Message}
	case len(args) == 2 && args[0] == "lua":
		script, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		if v, err = argoHealth(obj, string(script)); err != nil {
			return err
		}
	default:
		return fmt.Errorf("usage: kstatus [lua SCRIPT] < object.json")
	}
	return json.NewEncoder(out).Encode(v)
}

// argoHealth runs a health.lua the way Argo CD's util/lua runs one configured in argocd-cm
// (resource.customizations.useOpenLibs unset): no string, math, io or os library.
func argoHealth(obj *unstructured.Unstructured, script string) (verdict, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	// Argo CD opens these three in this order, and a reduced os library no script here uses.
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), Protect: true}, lua.LString(lib.name)); err != nil {
			return verdict{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj.Object))
	if err := l.DoString(script); err != nil {
		return verdict{}, err
	}
	table, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return verdict{}, fmt.Errorf("the script returned %s, not a table", l.Get(-1).Type())
	}
	v := verdict{Status: lua.LVAsString(table.RawGetString("status")), Message: lua.LVAsString(table.RawGetString("message"))}
	switch v.Status {
	case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
		return v, nil
	}
	return verdict{}, fmt.Errorf("the script returned the health status %q, which Argo CD rejects", v.Status)
}

// toLua converts decoded JSON as Argo CD does: objects and arrays to tables (arrays from 1),
// numbers to numbers, null to nil.
func toLua(l *lua.LState, value any) lua.LValue {
	switch x := value.(type) {
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case int64:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case []any:
		arr := l.CreateTable(len(x), 0)
		for _, item := range x {
			arr.Append(toLua(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(x))
		for key, item := range x {
			tbl.RawSetH(lua.LString(key), toLua(l, item))
		}
		return tbl
	}
	return lua.LNil
}
