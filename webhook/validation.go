package webhook

import (
	"sync"

	"k8s.io/apimachinery/pkg/util/validation/field"

	v1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/upgrade"
	"github.com/trainyard-dev/trainyard/internal/validation"
)

// The rules the webhook applies are the pure functions of
// internal/validation, which the bridge applies too.
var (
	ValidateComponentRelease = validation.ComponentRelease
	ValidateReleaseTrain     = validation.ReleaseTrain
	ValidateClusterReport    = validation.ClusterReport
	ValidateLabel            = validation.Label
	ValidateVersion          = validation.Version
	ValidateClusterID        = validation.ClusterID
)

// The notification kinds' rules, also in internal/validation.
var (
	ValidateNotificationTarget = validation.NotificationTarget
	ValidateNotificationRule   = validation.NotificationRule
)

// riskRules compiles the risks' rules once per process.
var riskRules = sync.OnceValues(upgrade.NewRules)

// ValidateRiskRules checks that each risk's rule compiles to a boolean CEL
// expression over `cluster`, naming the risk at fault.
func ValidateRiskRules(r *v1.ComponentRelease) field.ErrorList {
	rules, err := riskRules()
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
