package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	lua "github.com/yuin/gopher-lua"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// ArgoHealthLua is the health check docs/argocd.md tells users to put in
// argocd-cm, read from that file, so that what is tested is what is
// documented.
func ArgoHealthLua() (string, error) {
	doc, err := os.ReadFile(filepath.Join(RepoRoot(), "docs", "argocd.md"))
	if err != nil {
		return "", err
	}
	block := regexp.MustCompile("(?s)```yaml\n(apiVersion: v1\nkind: ConfigMap\n.*?)```").FindSubmatch(doc)
	if block == nil {
		return "", fmt.Errorf("docs/argocd.md has no argocd-cm block")
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(block[1], &cm); err != nil {
		return "", err
	}
	var custom map[string]map[string]string
	if err := yaml.UnmarshalStrict([]byte(cm.Data["resource.customizations"]), &custom); err != nil {
		return "", err
	}
	script := custom["trainyard.dev/*"]["health.lua"]
	if script == "" {
		return "", fmt.Errorf("docs/argocd.md has no health.lua for trainyard.dev/*")
	}
	return script, nil
}

// ArgoHealth runs the documented check as Argo CD does: obj is the object's
// JSON (as the API server serves it) as a Lua table; the script returns
// {status, message}.
func ArgoHealth(obj map[string]any) (status, message string, err error) {
	script, err := ArgoHealthLua()
	if err != nil {
		return "", "", err
	}
	L := lua.NewState()
	defer L.Close()
	v, err := toLua(L, obj)
	if err != nil {
		return "", "", err
	}
	L.SetGlobal("obj", v)
	if err := L.DoString(script); err != nil {
		return "", "", err
	}
	hs, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("the script returns no table")
	}
	return lua.LVAsString(hs.RawGetString("status")), lua.LVAsString(hs.RawGetString("message")), nil
}

func toLua(L *lua.LState, v any) (lua.LValue, error) {
	switch v := v.(type) {
	case map[string]any:
		t := L.NewTable()
		for k, x := range v {
			lv, err := toLua(L, x)
			if err != nil {
				return nil, err
			}
			t.RawSetString(k, lv)
		}
		return t, nil
	case []any:
		t := L.NewTable()
		for _, x := range v {
			lv, err := toLua(L, x)
			if err != nil {
				return nil, err
			}
			t.Append(lv)
		}
		return t, nil
	case string:
		return lua.LString(v), nil
	case bool:
		return lua.LBool(v), nil
	case int64:
		return lua.LNumber(v), nil
	case float64:
		return lua.LNumber(v), nil
	case nil:
		return lua.LNil, nil
	}
	return nil, fmt.Errorf("no Lua value for %T", v)
}
