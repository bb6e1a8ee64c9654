package validation_test

import (
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/validation"
)

func TestValidation(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "validation suite")
}

// fieldsOf lists "<type> <field>" of each error, the shape the tests pin.
func fieldsOf(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, string(e.Type)+" "+e.Field)
	}
	return out
}

func goodRelease() *trainyardv1.ComponentRelease {
	return &trainyardv1.ComponentRelease{
		ObjectMeta: metav1.ObjectMeta{Name: "router.stable.v1.2.3"},
		Spec:       trainyardv1.ComponentReleaseSpec{Component: "router", Train: "stable", Version: "v1.2.3"},
	}
}

func goodTrain() *trainyardv1.ReleaseTrain {
	return &trainyardv1.ReleaseTrain{
		ObjectMeta: metav1.ObjectMeta{Name: "router.stable"},
		Spec:       trainyardv1.ReleaseTrainSpec{Component: "router", Train: "stable"},
	}
}

func goodReport() *trainyardv1.ClusterReport {
	return &trainyardv1.ClusterReport{
		ObjectMeta: metav1.ObjectMeta{Name: "f47ac10b-58cc-4372-a567-0e02b2c3d479"},
		Spec: trainyardv1.ClusterReportSpec{ClusterID: "F47AC10B-58CC-4372-A567-0E02B2C3D479",
			Components: []trainyardv1.ReportedComponent{{Name: "router", Train: "stable", Version: "v1.2.3"}}},
	}
}

var _ = Describe("ValidateComponentRelease", func() {
	DescribeTable("on create",
		func(mutate func(*trainyardv1.ComponentRelease), want []string) {
			r := goodRelease()
			mutate(r)
			Expect(fieldsOf(validation.ComponentRelease(r, nil))).To(Equal(want))
		},
		Entry("valid", func(*trainyardv1.ComponentRelease) {}, nil),
		Entry("valid with an odd version and its hashed name", func(r *trainyardv1.ComponentRelease) {
			r.Spec.Version = "1.0.0+Build.7"
			r.Name = trainyardv1.ReleaseName("router", "stable", "1.0.0+Build.7")
		}, nil),
		Entry("not the canonical name", func(r *trainyardv1.ComponentRelease) { r.Name = "my-release" },
			[]string{"FieldValueInvalid metadata.name"}),
		Entry("empty component", func(r *trainyardv1.ComponentRelease) { r.Spec.Component = "" },
			[]string{"FieldValueRequired spec.component"}),
		Entry("component not a label", func(r *trainyardv1.ComponentRelease) { r.Spec.Component = "Router_1" },
			[]string{"FieldValueInvalid spec.component"}),
		Entry("train not a label", func(r *trainyardv1.ComponentRelease) { r.Spec.Train = "be.ta" },
			[]string{"FieldValueInvalid spec.train"}),
		Entry("empty version", func(r *trainyardv1.ComponentRelease) { r.Spec.Version = "" },
			[]string{"FieldValueRequired spec.version"}),
		Entry("version with a space", func(r *trainyardv1.ComponentRelease) { r.Spec.Version = "1 2" },
			[]string{"FieldValueInvalid spec.version"}),
		Entry("version with a slash", func(r *trainyardv1.ComponentRelease) { r.Spec.Version = "1/2" },
			[]string{"FieldValueInvalid spec.version"}),
		Entry("version with a tab", func(r *trainyardv1.ComponentRelease) { r.Spec.Version = "1\t2" },
			[]string{"FieldValueInvalid spec.version"}),
		Entry("version with non-ASCII", func(r *trainyardv1.ComponentRelease) { r.Spec.Version = "1.0.0-β" },
			[]string{"FieldValueInvalid spec.version"}),
		Entry("version too long", func(r *trainyardv1.ComponentRelease) { r.Spec.Version = strings.Repeat("1", 65) },
			[]string{"FieldValueTooLong spec.version"}),
		Entry("description too long", func(r *trainyardv1.ComponentRelease) { r.Spec.Description = strings.Repeat("x", 8193) },
			[]string{"FieldValueTooLong spec.description"}),
		Entry("fixes too long", func(r *trainyardv1.ComponentRelease) { r.Spec.Fixes = strings.Repeat("x", 8193) },
			[]string{"FieldValueTooLong spec.fixes"}),
		Entry("image too long", func(r *trainyardv1.ComponentRelease) { r.Spec.Image = strings.Repeat("x", 513) },
			[]string{"FieldValueTooLong spec.image"}),
		Entry("data key with a space", func(r *trainyardv1.ComponentRelease) { r.Spec.Data = map[string]string{"a b": "v"} },
			[]string{"FieldValueInvalid spec.data[a b]"}),
		Entry("data key too long", func(r *trainyardv1.ComponentRelease) { r.Spec.Data = map[string]string{strings.Repeat("k", 64): "v"} },
			[]string{"FieldValueInvalid spec.data[" + strings.Repeat("k", 64) + "]"}),
		Entry("data value too long", func(r *trainyardv1.ComponentRelease) { r.Spec.Data = map[string]string{"k": strings.Repeat("v", 2049)} },
			[]string{"FieldValueTooLong spec.data[k]"}),
		Entry("too many data keys", func(r *trainyardv1.ComponentRelease) {
			r.Spec.Data = map[string]string{}
			for i := range 33 {
				r.Spec.Data[strings.Repeat("k", i+1)] = "v"
			}
		}, []string{"FieldValueTooMany spec.data"}),
		Entry("retraction without reason", func(r *trainyardv1.ComponentRelease) { r.Spec.Retracted = &trainyardv1.Retraction{Reason: " "} },
			[]string{"FieldValueRequired spec.retracted.reason"}),
	)

	DescribeTable("on update, identity is immutable",
		func(mutate func(*trainyardv1.ComponentRelease), want []string) {
			old, r := goodRelease(), goodRelease()
			mutate(r)
			Expect(fieldsOf(validation.ComponentRelease(r, old))).To(ContainElements(want))
		},
		Entry("component", func(r *trainyardv1.ComponentRelease) { r.Spec.Component = "other" }, []string{"FieldValueInvalid spec.component"}),
		Entry("train", func(r *trainyardv1.ComponentRelease) { r.Spec.Train = "beta" }, []string{"FieldValueInvalid spec.train"}),
		Entry("version", func(r *trainyardv1.ComponentRelease) { r.Spec.Version = "v9.9.9" }, []string{"FieldValueInvalid spec.version"}),
	)

	It("says the field is immutable", func() {
		old, r := goodRelease(), goodRelease()
		r.Spec.Version = "v9.9.9"
		Expect(validation.ComponentRelease(r, old).ToAggregate().Error()).To(ContainSubstring("field is immutable"))
	})

	It("lets description, retraction and data change", func() {
		old, r := goodRelease(), goodRelease()
		r.Spec.Description, r.Spec.Retracted, r.Spec.Data = "new", &trainyardv1.Retraction{Reason: "bad"}, map[string]string{"k": "v"}
		Expect(validation.ComponentRelease(r, old)).To(BeEmpty())
	})

	It("lets a release named before names were canonical be retracted", func() {
		old, r := goodRelease(), goodRelease()
		old.Name, r.Name = "router.stable.1.2.3-legacy", "router.stable.1.2.3-legacy"
		r.Spec.Retracted = &trainyardv1.Retraction{Reason: "bad"}
		Expect(validation.ComponentRelease(r, old)).To(BeEmpty())
	})

	It("names the canonical name in its message", func() {
		r := goodRelease()
		r.Name = "x"
		Expect(validation.ComponentRelease(r, nil).ToAggregate().Error()).To(ContainSubstring(`must be "router.stable.v1.2.3"`))
	})
})

var _ = Describe("ValidateReleaseTrain", func() {
	DescribeTable("on create",
		func(mutate func(*trainyardv1.ReleaseTrain), want []string) {
			t := goodTrain()
			mutate(t)
			Expect(fieldsOf(validation.ReleaseTrain(t, nil))).To(Equal(want))
		},
		Entry("valid", func(*trainyardv1.ReleaseTrain) {}, nil),
		Entry("valid range", func(t *trainyardv1.ReleaseTrain) { t.Spec.VersionRange = ">=1.2, <2" }, nil),
		Entry("name not <component>.<train>", func(t *trainyardv1.ReleaseTrain) { t.Name = "router.beta" },
			[]string{"FieldValueInvalid metadata.name"}),
		Entry("range that does not parse", func(t *trainyardv1.ReleaseTrain) { t.Spec.VersionRange = ">>1" },
			[]string{"FieldValueInvalid spec.versionRange"}),
		Entry("range too long", func(t *trainyardv1.ReleaseTrain) { t.Spec.VersionRange = strings.Repeat(">1 ", 100) },
			[]string{"FieldValueTooLong spec.versionRange"}),
		Entry("unknown ordering", func(t *trainyardv1.ReleaseTrain) { t.Spec.Ordering = "Random" },
			[]string{"FieldValueNotSupported spec.ordering"}),
		Entry("unknown prereleases", func(t *trainyardv1.ReleaseTrain) { t.Spec.Prereleases = "Some" },
			[]string{"FieldValueNotSupported spec.prereleases"}),
		Entry("negative history", func(t *trainyardv1.ReleaseTrain) { t.Spec.HistoryLimit = new(int32(-1)) },
			[]string{"FieldValueInvalid spec.historyLimit"}),
		Entry("bad component", func(t *trainyardv1.ReleaseTrain) { t.Spec.Component = "-x" },
			[]string{"FieldValueInvalid spec.component"}),
	)

	It("keeps component and train immutable", func() {
		old, t := goodTrain(), goodTrain()
		t.Spec.Train, t.Name = "beta", "router.beta"
		Expect(fieldsOf(validation.ReleaseTrain(t, old))).To(Equal([]string{"FieldValueInvalid spec.train"}))
	})
})

var _ = Describe("ValidateClusterReport", func() {
	DescribeTable("on create",
		func(mutate func(*trainyardv1.ClusterReport), want []string) {
			r := goodReport()
			mutate(r)
			Expect(fieldsOf(validation.ClusterReport(r, nil))).To(Equal(want))
		},
		Entry("valid", func(*trainyardv1.ClusterReport) {}, nil),
		Entry("valid DNS-label ID", func(r *trainyardv1.ClusterReport) { r.Name, r.Spec.ClusterID = "prod-eu-1", "prod-eu-1" }, nil),
		Entry("no cluster ID", func(r *trainyardv1.ClusterReport) { r.Spec.ClusterID = "" },
			[]string{"FieldValueRequired spec.clusterID"}),
		Entry("bad cluster ID", func(r *trainyardv1.ClusterReport) { r.Spec.ClusterID = "Prod_1" },
			[]string{"FieldValueInvalid spec.clusterID"}),
		Entry("name not the cluster ID", func(r *trainyardv1.ClusterReport) { r.Name = "other" },
			[]string{"FieldValueInvalid metadata.name"}),
		Entry("empty version", func(r *trainyardv1.ClusterReport) { r.Spec.Components[0].Version = "" },
			[]string{"FieldValueRequired spec.components[0].version"}),
		Entry("bad component name", func(r *trainyardv1.ClusterReport) { r.Spec.Components[0].Name = "Router" },
			[]string{"FieldValueInvalid spec.components[0].name"}),
		Entry("bad train", func(r *trainyardv1.ClusterReport) { r.Spec.Components[0].Train = "Beta" },
			[]string{"FieldValueInvalid spec.components[0].train"}),
		Entry("type too long", func(r *trainyardv1.ClusterReport) { r.Spec.Components[0].Type = strings.Repeat("t", 64) },
			[]string{"FieldValueTooLong spec.components[0].type"}),
		Entry("a component twice", func(r *trainyardv1.ClusterReport) {
			r.Spec.Components = append(r.Spec.Components, r.Spec.Components[0])
		}, []string{"FieldValueDuplicate spec.components[1].name"}),
		Entry("too many components", func(r *trainyardv1.ClusterReport) {
			r.Spec.Components = nil
			for i := range 257 {
				r.Spec.Components = append(r.Spec.Components, trainyardv1.ReportedComponent{
					Name: "c" + strings.Repeat("x", i%60) + string(rune('a'+i%26)) + string(rune('a'+i/26)), Version: "1"})
			}
		}, []string{"FieldValueTooMany spec.components"}),
		Entry("too many properties", func(r *trainyardv1.ClusterReport) {
			r.Spec.Properties = map[string]string{}
			for i := range 65 {
				r.Spec.Properties[strings.Repeat("p", i%60+1)+string(rune('a'+i/60))] = "v"
			}
		}, []string{"FieldValueTooMany spec.properties"}),
		Entry("property value too long", func(r *trainyardv1.ClusterReport) {
			r.Spec.Properties = map[string]string{"k": strings.Repeat("v", 1025)}
		}, []string{"FieldValueTooLong spec.properties[k]"}),
	)

	It("keeps the cluster ID immutable", func() {
		old, r := goodReport(), goodReport()
		r.Spec.ClusterID = "f47ac10b-58cc-4372-a567-0e02b2c3d479"
		Expect(fieldsOf(validation.ClusterReport(r, old))).To(Equal([]string{"FieldValueInvalid spec.clusterID"}))
	})
})
