package validation

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/promotion"
)

// promotionPolicy checks a train's spec.promotion: a source that is another
// train, a soak that is not negative, a window that parses.
func promotionPolicy(p *field.Path, train string, pr *trainyardv1.PromotionPolicy) field.ErrorList {
	errs := Label(p.Child("from"), pr.From)
	if pr.From == train {
		errs = append(errs, field.Invalid(p.Child("from"), pr.From, "a train cannot promote from itself"))
	}
	if d := pr.Soak; d != nil && d.Duration < 0 {
		errs = append(errs, field.Invalid(p.Child("soak"), d.Duration.String(), "must not be negative"))
	}
	if a := pr.Adoption; a != nil && (a.MinPercent < 0 || a.MinPercent > 100 || a.MinClusters < 0) {
		errs = append(errs, field.Invalid(p.Child("adoption"), fmt.Sprintf("%d%%, %d", a.MinPercent, a.MinClusters),
			"minPercent must be 0 to 100 and minClusters at least 0"))
	}
	if w := pr.Window; w != nil {
		if _, _, err := promotion.Window(w, time.Unix(0, 0)); err != nil {
			errs = append(errs, field.Invalid(p.Child("window"), w.TimeZone+" "+w.Hours, err.Error()))
		}
	}
	return errs
}
