package upgrade

import (
	"fmt"
	"sync"

	"github.com/Masterminds/semver/v3"
	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"k8s.io/apimachinery/pkg/util/validation/field"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// Limits of a risk's rule: its length, what one evaluation may cost (CEL's
// cost units), and how many compiled rules are kept.
const (
	MaxRuleLength  = 2048
	maxRuleCost    = 10000
	maxCachedRules = 1024
)

// Rules compiles risk rules once and evaluates them on clusters. A rule is
// a CEL expression over `cluster`: its id, labels, properties (the report's
// spec.properties, such as kubernetesVersion) and components (name to
// version), with compareVersions(a, b) (-1, 0 or 1, as semantic versions).
type Rules struct {
	env *cel.Env

	mu    sync.Mutex
	cache map[string]cel.Program // keyed by rule text; bounded
}

// NewRules makes the rules' environment.
func NewRules() (*Rules, error) {
	env, err := cel.NewEnv(
		cel.Variable("cluster", cel.MapType(cel.StringType, cel.DynType)),
		cel.Function("compareVersions",
			cel.Overload("compare_versions_string_string", []*cel.Type{cel.StringType, cel.StringType}, cel.IntType,
				cel.BinaryBinding(compareVersions))),
	)
	if err != nil {
		return nil, err
	}
	return &Rules{env: env, cache: map[string]cel.Program{}}, nil
}

func compareVersions(a, b ref.Val) ref.Val {
	as, ok1 := a.(types.String)
	bs, ok2 := b.(types.String)
	if !ok1 || !ok2 {
		return types.NewErr("compareVersions takes two strings")
	}
	// Lenient, as clusters report them: "1.28", "v1.28.3+k3s1".
	va, err := semver.NewVersion(string(as))
	if err != nil {
		return types.NewErr("compareVersions: %q is not a semantic version", string(as))
	}
	vb, err := semver.NewVersion(string(bs))
	if err != nil {
		return types.NewErr("compareVersions: %q is not a semantic version", string(bs))
	}
	return types.Int(va.Compare(vb))
}

// Check compiles a rule, saying what is wrong with it (for the webhook).
func (r *Rules) Check(rule string) error {
	_, err := r.program(rule)
	return err
}

func (r *Rules) program(rule string) (cel.Program, error) {
	if len(rule) > MaxRuleLength {
		return nil, fmt.Errorf("the rule is longer than %d characters", MaxRuleLength)
	}
	r.mu.Lock()
	p, ok := r.cache[rule]
	r.mu.Unlock()
	if ok {
		return p, nil
	}
	ast, iss := r.env.Compile(rule)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
		return nil, fmt.Errorf("the rule must be a boolean expression, not %s", ast.OutputType())
	}
	p, err := r.env.Program(ast, cel.CostLimit(maxRuleCost))
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if len(r.cache) >= maxCachedRules {
		clear(r.cache)
	}
	r.cache[rule] = p
	r.mu.Unlock()
	return p, nil
}

// Applies evaluates a rule on a cluster. An error means the rule cannot be
// evaluated there (a property the cluster does not report, a version that
// does not parse): callers must not treat that as "does not apply".
func (r *Rules) Applies(rule string, c Cluster) (bool, error) {
	p, err := r.program(rule)
	if err != nil {
		return false, err
	}
	out, _, err := p.Eval(map[string]any{"cluster": c.activation()})
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("the rule gave %v, not true or false", out.Value())
	}
	return b, nil
}

func (c Cluster) activation() map[string]any {
	m := map[string]any{"id": c.ID}
	for k, v := range map[string]map[string]string{"labels": c.Labels, "properties": c.Properties, "components": c.Components} {
		if v == nil {
			v = map[string]string{}
		}
		m[k] = v
	}
	return m
}

// sharedRules compiles the rules the admission webhook checks once per
// process.
var sharedRules = sync.OnceValues(NewRules)

// ValidateRisks checks that each of a release's risks has a rule that
// compiles to a boolean CEL expression over `cluster`, naming the risk at
// fault. The form of a risk (lengths, names) is internal/validation's; the
// CEL is checked here, with the environment that evaluates it, so the
// agent, which links internal/validation, does not link CEL.
func ValidateRisks(r *trainyardv1.ComponentRelease) field.ErrorList {
	rules, err := sharedRules()
	if err != nil {
		return field.ErrorList{field.InternalError(field.NewPath("spec", "risks"), err)}
	}
	var errs field.ErrorList
	for i, risk := range r.Spec.Risks {
		if err := rules.Check(risk.Rule); err != nil {
			errs = append(errs, field.Invalid(field.NewPath("spec", "risks").Index(i).Child("rule"), risk.Rule, err.Error()))
		}
	}
	return errs
}
