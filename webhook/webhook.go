// Package webhook defaults and validates every trainyard object that enters
// through the API (kubectl, GitOps controllers, agents, the bridge). The
// rules are the pure functions of internal/validation and internal/upgrade
// (the risks' CEL), wired here into the manager's admission webhook server.
package webhook

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/index"
	"github.com/trainyard-dev/trainyard/internal/ordering"
	"github.com/trainyard-dev/trainyard/internal/upgrade"
	"github.com/trainyard-dev/trainyard/internal/validation"
)

// Setup registers the defaulting and validating webhooks of every kind.
// reader is the manager's cache, with the controllers' field indexes.
func Setup(mgr ctrl.Manager, c clock.PassiveClock) error {
	if c == nil {
		c = clock.RealClock{}
	}
	rw := &releaseWebhook{reader: mgr.GetClient(), clock: c}
	srv, scheme := mgr.GetWebhookServer(), mgr.GetScheme()
	// Registered by hand, at the paths the builder would choose (and the
	// markers name), so that each handler checks the object's JSON against
	// its kind before Go's decoder does (precise).
	mutate := func(kind string, w *admission.Webhook, h func(admission.Handler) admission.Handler) {
		w.Handler = h(w.Handler)
		srv.Register("/mutate-trainyard-dev-v1alpha1-"+strings.ToLower(kind), w.WithRecoverPanic(true))
	}
	validate := func(kind string, w *admission.Webhook, h func(admission.Handler) admission.Handler) {
		w.Handler = h(w.Handler)
		srv.Register("/validate-trainyard-dev-v1alpha1-"+strings.ToLower(kind), w.WithRecoverPanic(true))
	}
	mutate("ComponentRelease", admission.WithDefaulter[*trainyardv1.ComponentRelease](scheme, rw), wrap[*trainyardv1.ComponentRelease]("ComponentRelease"))
	validate("ComponentRelease", admission.WithValidator[*trainyardv1.ComponentRelease](scheme, rw), wrap[*trainyardv1.ComponentRelease]("ComponentRelease"))
	validate("ReleaseTrain", admission.WithValidator[*trainyardv1.ReleaseTrain](scheme, trainWebhook{}), wrap[*trainyardv1.ReleaseTrain]("ReleaseTrain"))
	mutate("ClusterReport", admission.WithDefaulter[*trainyardv1.ClusterReport](scheme, reportWebhook{}), wrap[*trainyardv1.ClusterReport]("ClusterReport"))
	validate("ClusterReport", admission.WithValidator[*trainyardv1.ClusterReport](scheme, reportWebhook{}), wrap[*trainyardv1.ClusterReport]("ClusterReport"))
	validate("NotificationTarget", admission.WithValidator[*trainyardv1.NotificationTarget](scheme, targetWebhook{}), wrap[*trainyardv1.NotificationTarget]("NotificationTarget"))
	validate("NotificationRule", admission.WithValidator[*trainyardv1.NotificationRule](scheme, ruleWebhook{}), wrap[*trainyardv1.NotificationRule]("NotificationRule"))
	validate("Advisory", admission.WithValidator[*trainyardv1.Advisory](scheme, advisoryWebhook{}), wrap[*trainyardv1.Advisory]("Advisory"))
	validate("TrustPolicy", admission.WithValidator[*trainyardv1.TrustPolicy](scheme, trustPolicyWebhook{}), wrap[*trainyardv1.TrustPolicy]("TrustPolicy"))
	return nil
}

// wrap is precise for kind T, as a handler wrapper.
func wrap[T runtime.Object](kind string) func(admission.Handler) admission.Handler {
	return func(h admission.Handler) admission.Handler { return precise[T](kind, h) }
}

func invalid(kind string, name string, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(schema.GroupKind{Group: trainyardv1.GroupVersion.Group, Kind: kind}, name, errs)
}

// +kubebuilder:webhook:path=/mutate-trainyard-dev-v1alpha1-componentrelease,mutating=true,failurePolicy=fail,sideEffects=None,groups=trainyard.dev,resources=componentreleases,verbs=create;update,versions=v1alpha1,name=mcomponentrelease.trainyard.dev,admissionReviewVersions=v1,timeoutSeconds=5
// +kubebuilder:webhook:path=/validate-trainyard-dev-v1alpha1-componentrelease,mutating=false,failurePolicy=fail,sideEffects=None,groups=trainyard.dev,resources=componentreleases,verbs=create;update,versions=v1alpha1,name=vcomponentrelease.trainyard.dev,admissionReviewVersions=v1,timeoutSeconds=5

type releaseWebhook struct {
	reader client.Reader
	clock  clock.PassiveClock
}

// Default sets the train to "stable" and the release time to now.
func (w *releaseWebhook) Default(_ context.Context, r *trainyardv1.ComponentRelease) error {
	if r.Spec.Train == "" {
		r.Spec.Train = trainyardv1.DefaultTrain
	}
	if r.Spec.Released == nil {
		now := metav1.NewTime(w.clock.Now().UTC().Truncate(time.Second))
		r.Spec.Released = &now
	}
	return nil
}

func (w *releaseWebhook) ValidateCreate(ctx context.Context, r *trainyardv1.ComponentRelease) (admission.Warnings, error) {
	errs := append(validation.ComponentRelease(r, nil), upgrade.ValidateRisks(r)...)
	if len(errs) == 0 {
		dup, err := w.duplicate(ctx, r)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		errs = append(errs, dup...)
	}
	if len(errs) == 0 {
		signed, err := w.signed(ctx, r)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		errs = append(errs, signed...)
	}
	if err := invalid("ComponentRelease", r.Name, errs); err != nil {
		return nil, err
	}
	return w.warnings(ctx, r), nil
}

func (w *releaseWebhook) ValidateUpdate(ctx context.Context, old, r *trainyardv1.ComponentRelease) (admission.Warnings, error) {
	errs := append(validation.ComponentRelease(r, old), upgrade.ValidateRisks(r)...)
	// A release published before its policy keeps its image: it can still
	// be retracted or described; a new image or bundle is checked.
	if len(errs) == 0 && (r.Spec.Image != old.Spec.Image || r.Spec.SignatureBundle != old.Spec.SignatureBundle) {
		signed, err := w.signed(ctx, r)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		errs = append(errs, signed...)
	}
	return nil, invalid("ComponentRelease", r.Name, errs)
}

// signed checks a release that a TrustPolicy of its namespace covers:
// named by digest, with a bundle that is one (issue 31).
func (w *releaseWebhook) signed(ctx context.Context, r *trainyardv1.ComponentRelease) (field.ErrorList, error) {
	var policies trainyardv1.TrustPolicyList
	if err := w.reader.List(ctx, &policies, client.InNamespace(r.Namespace)); err != nil {
		return nil, err
	}
	for i := range policies.Items {
		if validation.Covers(&policies.Items[i].Spec, r.Spec.Component, r.Spec.Train) {
			return validation.SignedRelease(r, policies.Items[i].Name), nil
		}
	}
	return nil, nil
}

func (w *releaseWebhook) ValidateDelete(context.Context, *trainyardv1.ComponentRelease) (admission.Warnings, error) {
	return nil, nil
}

// duplicate finds a release of the same semantic version of the train under
// another name: one created before names were canonical. A duplicate with
// the same name is the API server's to refuse (409 AlreadyExists, atomically
// even when creates race), not this cache-based check's: a client that
// retries a create must see AlreadyExists, not a validation error.
func (w *releaseWebhook) duplicate(ctx context.Context, r *trainyardv1.ComponentRelease) (field.ErrorList, error) {
	var existing trainyardv1.ComponentReleaseList
	key := index.VersionKey(trainyardv1.TrainName(r.Spec.Component, r.Spec.Train), r.Spec.Version)
	if err := w.reader.List(ctx, &existing, client.InNamespace(r.Namespace),
		client.MatchingFields{index.ReleaseVersion: key}); err != nil {
		return nil, err
	}
	for _, e := range existing.Items {
		if e.Name == r.Name {
			continue
		}
		return field.ErrorList{field.Invalid(field.NewPath("spec", "version"), r.Spec.Version, fmt.Sprintf(
			"%s %s is already published on %s as ComponentRelease %q",
			r.Spec.Component, e.Spec.Version, r.Spec.Train, e.Name))}, nil
	}
	return nil, nil
}

// warnings point out what is allowed but likely a mistake.
func (w *releaseWebhook) warnings(ctx context.Context, r *trainyardv1.ComponentRelease) admission.Warnings {
	train := &trainyardv1.ReleaseTrain{}
	err := w.reader.Get(ctx, types.NamespacedName{Namespace: r.Namespace,
		Name: trainyardv1.TrainName(r.Spec.Component, r.Spec.Train)}, train)
	semverTrain := err != nil || train.Spec.Ordering != trainyardv1.OrderingReleaseTime
	sv, perr := ordering.Parse(r.Spec.Version)
	var warns admission.Warnings
	if perr != nil {
		msg := fmt.Sprintf("version %q is not a semantic version (MAJOR.MINOR.PATCH, optional leading v)", r.Spec.Version)
		if semverTrain {
			msg += "; it will never be latest on a Semver train"
		}
		warns = append(warns, msg)
	}
	if err == nil && perr == nil && semverTrain && train.Status.Latest != nil {
		if latest, lerr := ordering.Parse(train.Status.Latest.Version); lerr == nil && sv.LessThan(latest) {
			warns = append(warns, fmt.Sprintf("version %s is lower than %s, the latest on %s; it will not become latest",
				r.Spec.Version, train.Status.Latest.Version, train.Name))
		}
	}
	return warns
}

// +kubebuilder:webhook:path=/validate-trainyard-dev-v1alpha1-releasetrain,mutating=false,failurePolicy=fail,sideEffects=None,groups=trainyard.dev,resources=releasetrains,verbs=create;update,versions=v1alpha1,name=vreleasetrain.trainyard.dev,admissionReviewVersions=v1,timeoutSeconds=5

type trainWebhook struct{}

func (trainWebhook) ValidateCreate(_ context.Context, t *trainyardv1.ReleaseTrain) (admission.Warnings, error) {
	return nil, invalid("ReleaseTrain", t.Name, validation.ReleaseTrain(t, nil))
}

func (trainWebhook) ValidateUpdate(_ context.Context, old, t *trainyardv1.ReleaseTrain) (admission.Warnings, error) {
	return nil, invalid("ReleaseTrain", t.Name, validation.ReleaseTrain(t, old))
}

func (trainWebhook) ValidateDelete(context.Context, *trainyardv1.ReleaseTrain) (admission.Warnings, error) {
	return nil, nil
}

// +kubebuilder:webhook:path=/mutate-trainyard-dev-v1alpha1-clusterreport,mutating=true,failurePolicy=fail,sideEffects=None,groups=trainyard.dev,resources=clusterreports,verbs=create;update,versions=v1alpha1,name=mclusterreport.trainyard.dev,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"matchConditions":[{"name":"has-managed-fields","expression":"has(object.metadata.managedFields) && size(object.metadata.managedFields) > 0"}]}`
// +kubebuilder:webhook:path=/validate-trainyard-dev-v1alpha1-clusterreport,mutating=false,failurePolicy=fail,sideEffects=None,groups=trainyard.dev,resources=clusterreports,verbs=create;update,versions=v1alpha1,name=vclusterreport.trainyard.dev,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"matchConditions":[{"name":"spec-or-annotations-change","expression":"request.operation != 'UPDATE' || request.userInfo.username.matches('^system:serviceaccount:[^:]+:trainyard-cluster-') || object.spec != oldObject.spec || (has(object.metadata.annotations) ? object.metadata.annotations : {}) != (has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {})"}]}`

// reportWebhook's validation reads a report's name, spec and annotations
// (validation.ClusterReport, validation.ReportWriter), and a name cannot
// change: so the configuration skips an update that changes neither spec
// nor annotations (its matchConditions), such as the report controller's
// label patches; the call cost more than the write (docs/performance.md,
// issue 32). A cluster's own ServiceAccount (ClusterServiceAccountPrefix)
// is always validated: whatever its RBAC, it writes no other report.
type reportWebhook struct{}

// Default clears a report's managedFields. (It sets no train: the schema's
// default fills in an omitted one, and an empty one sent on purpose is
// refused, not guessed at.)
//
// managedFields were half the bytes of a stored report (2,124 of 4,464 for
// three components), which every list of the fleet sends and every write
// recomputes; nothing reads them (trainyard's writers patch, none applies).
// The API server computes them before admission; once a report has none,
// it keeps none through updates and patches (it tracks fields again only
// after a server-side apply). So the configuration calls this only for a
// write whose object has some (its matchConditions): a report's creation,
// and the first write of a report stored before this. The report controller
// clears those of older reports too, once (controllers.reconcileLabels).
func (reportWebhook) Default(_ context.Context, r *trainyardv1.ClusterReport) error {
	r.ManagedFields = nil
	return nil
}

func (reportWebhook) ValidateCreate(ctx context.Context, r *trainyardv1.ClusterReport) (admission.Warnings, error) {
	if err := ownReport(ctx, r, nil); err != nil {
		return nil, err
	}
	return nil, invalid("ClusterReport", r.Name, validation.ClusterReport(r, nil))
}

func (reportWebhook) ValidateUpdate(ctx context.Context, old, r *trainyardv1.ClusterReport) (admission.Warnings, error) {
	if err := ownReport(ctx, r, old); err != nil {
		return nil, err
	}
	return nil, invalid("ClusterReport", r.Name, validation.ClusterReport(r, old))
}

// ownReport forbids a cluster's direct-mode identity to write another
// cluster's report (validation.ReportWriter).
func ownReport(ctx context.Context, r, old *trainyardv1.ClusterReport) error {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return nil // not through the API server (a unit test)
	}
	if why := validation.ReportWriter(req.UserInfo.Username, r, old); why != "" {
		return apierrors.NewForbidden(trainyardv1.GroupVersion.WithResource("clusterreports").GroupResource(), r.Name, errors.New(why))
	}
	return nil
}

func (reportWebhook) ValidateDelete(context.Context, *trainyardv1.ClusterReport) (admission.Warnings, error) {
	return nil, nil
}

// +kubebuilder:webhook:path=/validate-trainyard-dev-v1alpha1-notificationtarget,mutating=false,failurePolicy=fail,sideEffects=None,groups=trainyard.dev,resources=notificationtargets,verbs=create;update,versions=v1alpha1,name=vnotificationtarget.trainyard.dev,admissionReviewVersions=v1,timeoutSeconds=5

type targetWebhook struct{}

func (targetWebhook) ValidateCreate(_ context.Context, t *trainyardv1.NotificationTarget) (admission.Warnings, error) {
	return nil, invalid("NotificationTarget", t.Name, validation.NotificationTarget(t))
}

func (targetWebhook) ValidateUpdate(_ context.Context, _, t *trainyardv1.NotificationTarget) (admission.Warnings, error) {
	return nil, invalid("NotificationTarget", t.Name, validation.NotificationTarget(t))
}

func (targetWebhook) ValidateDelete(context.Context, *trainyardv1.NotificationTarget) (admission.Warnings, error) {
	return nil, nil
}

// +kubebuilder:webhook:path=/validate-trainyard-dev-v1alpha1-notificationrule,mutating=false,failurePolicy=fail,sideEffects=None,groups=trainyard.dev,resources=notificationrules,verbs=create;update,versions=v1alpha1,name=vnotificationrule.trainyard.dev,admissionReviewVersions=v1,timeoutSeconds=5

type ruleWebhook struct{}

func (ruleWebhook) ValidateCreate(_ context.Context, r *trainyardv1.NotificationRule) (admission.Warnings, error) {
	return nil, invalid("NotificationRule", r.Name, validation.NotificationRule(r))
}

func (ruleWebhook) ValidateUpdate(_ context.Context, _, r *trainyardv1.NotificationRule) (admission.Warnings, error) {
	return nil, invalid("NotificationRule", r.Name, validation.NotificationRule(r))
}

func (ruleWebhook) ValidateDelete(context.Context, *trainyardv1.NotificationRule) (admission.Warnings, error) {
	return nil, nil
}

// +kubebuilder:webhook:path=/validate-trainyard-dev-v1alpha1-advisory,mutating=false,failurePolicy=fail,sideEffects=None,groups=trainyard.dev,resources=advisories,verbs=create;update,versions=v1alpha1,name=vadvisory.trainyard.dev,admissionReviewVersions=v1,timeoutSeconds=5

type advisoryWebhook struct{}

func (advisoryWebhook) ValidateCreate(_ context.Context, a *trainyardv1.Advisory) (admission.Warnings, error) {
	return nil, invalid("Advisory", a.Name, validation.Advisory(a))
}

func (advisoryWebhook) ValidateUpdate(_ context.Context, _, a *trainyardv1.Advisory) (admission.Warnings, error) {
	return nil, invalid("Advisory", a.Name, validation.Advisory(a))
}

func (advisoryWebhook) ValidateDelete(context.Context, *trainyardv1.Advisory) (admission.Warnings, error) {
	return nil, nil
}

// +kubebuilder:webhook:path=/validate-trainyard-dev-v1alpha1-trustpolicy,mutating=false,failurePolicy=fail,sideEffects=None,groups=trainyard.dev,resources=trustpolicies,verbs=create;update,versions=v1alpha1,name=vtrustpolicy.trainyard.dev,admissionReviewVersions=v1,timeoutSeconds=5
// +kubebuilder:rbac:groups=trainyard.dev,resources=trustpolicies,verbs=get;list;watch

type trustPolicyWebhook struct{}

func (trustPolicyWebhook) ValidateCreate(_ context.Context, tp *trainyardv1.TrustPolicy) (admission.Warnings, error) {
	if err := invalid("TrustPolicy", tp.Name, validation.TrustPolicy(tp)); err != nil {
		return nil, err
	}
	return validation.TrustPolicyWarnings(tp), nil
}

func (trustPolicyWebhook) ValidateUpdate(_ context.Context, _, tp *trainyardv1.TrustPolicy) (admission.Warnings, error) {
	if err := invalid("TrustPolicy", tp.Name, validation.TrustPolicy(tp)); err != nil {
		return nil, err
	}
	return validation.TrustPolicyWarnings(tp), nil
}

func (trustPolicyWebhook) ValidateDelete(context.Context, *trainyardv1.TrustPolicy) (admission.Warnings, error) {
	return nil, nil
}
