package v1alpha1_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/testenv"
)

// expectInvalid asserts that err is the apiserver's 422 Invalid answer and
// that its message names field and says msg.
func expectInvalid(err error, field, msg string) {
	GinkgoHelper()
	Expect(err).To(HaveOccurred(), "the apiserver accepted the object")
	Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422 Invalid, got: %v", err)
	Expect(err.Error()).To(ContainSubstring(field))
	Expect(err.Error()).To(ContainSubstring(msg))
}

func release(name string, mutate func(*trainyardv1.ComponentRelease)) *trainyardv1.ComponentRelease {
	r := &trainyardv1.ComponentRelease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       trainyardv1.ComponentReleaseSpec{Component: "router", Train: "stable", Version: "1.0.0"},
	}
	if mutate != nil {
		mutate(r)
	}
	return r
}

func report(id string, mutate func(*trainyardv1.ClusterReport)) *trainyardv1.ClusterReport {
	r := &trainyardv1.ClusterReport{
		ObjectMeta: metav1.ObjectMeta{Name: strings.ToLower(id), Namespace: "default"},
		Spec: trainyardv1.ClusterReportSpec{
			ClusterID:  id,
			Components: []trainyardv1.ReportedComponent{{Name: "router", Version: "1.0.0"}},
		},
	}
	if mutate != nil {
		mutate(r)
	}
	return r
}

var _ = Describe("samples", func() {
	It("accepts every object in config/samples", func() {
		files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "samples", "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(files).NotTo(BeEmpty())
		created := 0
		for _, f := range files {
			data, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
			for {
				u := &unstructured.Unstructured{}
				if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
					break
				} else {
					Expect(err).NotTo(HaveOccurred(), f)
				}
				if len(u.Object) == 0 {
					continue
				}
				u.SetNamespace("samples")
				Expect(ensureNamespace("samples")).To(Succeed())
				Expect(k8sClient.Create(ctx, u)).To(Succeed(), "%s: %s", f, u.GetName())
				created++
			}
		}
		Expect(created).To(BeNumerically(">=", 3))
	})

	It("fills in the schema defaults", func() {
		r := release("defaults.stable.1.0.0", func(r *trainyardv1.ComponentRelease) {
			r.Spec.Component, r.Spec.Train = "defaults", ""
		})
		Expect(k8sClient.Create(ctx, r)).To(Succeed())
		Expect(r.Spec.Train).To(Equal("stable"))

		t := &trainyardv1.ReleaseTrain{
			ObjectMeta: metav1.ObjectMeta{Name: "defaults.stable", Namespace: "default"},
			Spec:       trainyardv1.ReleaseTrainSpec{Component: "defaults"},
		}
		Expect(k8sClient.Create(ctx, t)).To(Succeed())
		Expect(t.Spec.Train).To(Equal("stable"))
		Expect(t.Spec.Ordering).To(Equal(trainyardv1.OrderingSemver))
		Expect(t.Spec.Prereleases).To(Equal(trainyardv1.PrereleasesInclude))
		Expect(t.Spec.HistoryLimit).To(HaveValue(BeEquivalentTo(trainyardv1.DefaultHistoryLimit)))

		c := report("defaults-cluster", nil)
		Expect(k8sClient.Create(ctx, c)).To(Succeed())
		Expect(c.Spec.Components[0].Train).To(Equal("stable"))
	})
})

var _ = Describe("ComponentRelease validation", func() {
	DescribeTable("rejects a bad spec with a message naming the field",
		func(mutate func(*trainyardv1.ComponentRelease), field, msg string) {
			expectInvalid(k8sClient.Create(ctx, release("bad-release", mutate)), field, msg)
		},
		Entry("upper-case component", func(r *trainyardv1.ComponentRelease) { r.Spec.Component = "Router" },
			"spec.component", "component must be a DNS-1123 label"),
		Entry("component with a dot", func(r *trainyardv1.ComponentRelease) { r.Spec.Component = "my.router" },
			"spec.component", "component must be a DNS-1123 label"),
		Entry("component too long", func(r *trainyardv1.ComponentRelease) { r.Spec.Component = strings.Repeat("a", 64) },
			"spec.component", "may not be more than 63 bytes"),
		Entry("train ending in a dash", func(r *trainyardv1.ComponentRelease) { r.Spec.Train = "beta-" },
			"spec.train", "train must be a DNS-1123 label"),
		Entry("train with a slash", func(r *trainyardv1.ComponentRelease) { r.Spec.Train = "a/b" },
			"spec.train", "train must be a DNS-1123 label"),
		Entry("empty version", func(r *trainyardv1.ComponentRelease) { r.Spec.Version = "" },
			"spec.version", "at least 1 chars long"),
		Entry("version over 64 characters", func(r *trainyardv1.ComponentRelease) { r.Spec.Version = strings.Repeat("1", 65) },
			"spec.version", "may not be more than 64 bytes"),
		Entry("version with a space", func(r *trainyardv1.ComponentRelease) { r.Spec.Version = "1.0 beta" },
			"spec.version", "version must be printable characters without whitespace or '/'"),
		Entry("version with a slash", func(r *trainyardv1.ComponentRelease) { r.Spec.Version = "1.0/2" },
			"spec.version", "version must be printable characters without whitespace or '/'"),
		Entry("too many data keys", func(r *trainyardv1.ComponentRelease) {
			r.Spec.Data = map[string]string{}
			for i := range trainyardv1.MaxDataEntries + 1 {
				r.Spec.Data[strings.Repeat("k", i+1)] = "v"
			}
		}, "spec.data", "must have at most 32 items"),
		Entry("over-long data value", func(r *trainyardv1.ComponentRelease) {
			r.Spec.Data = map[string]string{"notes": strings.Repeat("x", trainyardv1.MaxDataValueLength+1)}
		}, "spec.data", "data values must be at most 2048 characters"),
		Entry("over-long description", func(r *trainyardv1.ComponentRelease) {
			r.Spec.Description = strings.Repeat("x", trainyardv1.MaxDescriptionLength+1)
		}, "spec.description", "may not be more than 8192 bytes"),
		Entry("retraction without a reason", func(r *trainyardv1.ComponentRelease) { r.Spec.Retracted = &trainyardv1.Retraction{} },
			"spec.retracted.reason", "at least 1 chars long"),
	)

	DescribeTable("keeps identity fields immutable",
		func(field, msg string, mutate func(*trainyardv1.ComponentRelease)) {
			r := release("immutable-"+strings.TrimPrefix(field, "spec."), nil)
			Expect(k8sClient.Create(ctx, r)).To(Succeed())
			mutate(r)
			expectInvalid(k8sClient.Update(ctx, r), field, msg)
		},
		Entry("component", "spec.component", "component is immutable", func(r *trainyardv1.ComponentRelease) { r.Spec.Component = "other" }),
		Entry("train", "spec.train", "train is immutable", func(r *trainyardv1.ComponentRelease) { r.Spec.Train = "beta" }),
		Entry("version", "spec.version", "version is immutable", func(r *trainyardv1.ComponentRelease) { r.Spec.Version = "2.0.0" }),
	)

	It("lets the mutable fields change (retraction)", func() {
		r := release("retract-me", nil)
		Expect(k8sClient.Create(ctx, r)).To(Succeed())
		r.Spec.Retracted = &trainyardv1.Retraction{Reason: "broken"}
		r.Spec.Description = "now described"
		Expect(k8sClient.Update(ctx, r)).To(Succeed())
	})
})

var _ = Describe("ReleaseTrain validation", func() {
	train := func(name string, mutate func(*trainyardv1.ReleaseTrain)) *trainyardv1.ReleaseTrain {
		t := &trainyardv1.ReleaseTrain{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec:       trainyardv1.ReleaseTrainSpec{Component: "router", Train: "beta"},
		}
		if mutate != nil {
			mutate(t)
		}
		return t
	}

	DescribeTable("rejects a bad spec with a message naming the field",
		func(name string, mutate func(*trainyardv1.ReleaseTrain), field, msg string) {
			expectInvalid(k8sClient.Create(ctx, train(name, mutate)), field, msg)
		},
		Entry("name not <component>.<train>", "router.stable", nil,
			"metadata.name", "metadata.name must be <spec.component>.<spec.train>"),
		Entry("unknown ordering", "router.beta", func(t *trainyardv1.ReleaseTrain) { t.Spec.Ordering = "Alphabetical" },
			"spec.ordering", `supported values: "Semver", "ReleaseTime"`),
		Entry("unknown prerelease policy", "router.beta", func(t *trainyardv1.ReleaseTrain) { t.Spec.Prereleases = "Maybe" },
			"spec.prereleases", `supported values: "Include", "Exclude"`),
		Entry("history limit over 100", "router.beta", func(t *trainyardv1.ReleaseTrain) { t.Spec.HistoryLimit = new(int32(101)) },
			"spec.historyLimit", "less than or equal to 100"),
		Entry("bad component", "Router.beta", func(t *trainyardv1.ReleaseTrain) { t.Spec.Component = "Router" },
			"spec.component", "component must be a DNS-1123 label"),
	)

	It("keeps component and train immutable", func() {
		t := train("immutable.beta", func(t *trainyardv1.ReleaseTrain) { t.Spec.Component = "immutable" })
		Expect(k8sClient.Create(ctx, t)).To(Succeed())
		t.Spec.Train = "edge"
		err := k8sClient.Update(ctx, t)
		expectInvalid(err, "spec.train", "train is immutable")
	})
})

var _ = Describe("ClusterReport validation", func() {
	DescribeTable("rejects a bad spec with a message naming the field",
		func(id string, mutate func(*trainyardv1.ClusterReport), field, msg string) {
			expectInvalid(k8sClient.Create(ctx, report(id, mutate)), field, msg)
		},
		Entry("cluster ID neither UUID nor DNS label", "Cluster_1", nil,
			"spec.clusterID", "clusterID must be a UUID or a DNS-1123 label"),
		Entry("name not the cluster ID", "c1", func(r *trainyardv1.ClusterReport) { r.Name = "c2" },
			"metadata.name", "metadata.name must be spec.clusterID in lower case"),
		Entry("component with a bad name", "c1", func(r *trainyardv1.ClusterReport) { r.Spec.Components[0].Name = "Router!" },
			"spec.components[0].name", "name must be a DNS-1123 label"),
		Entry("component with a bad train", "c1", func(r *trainyardv1.ClusterReport) { r.Spec.Components[0].Train = "-beta" },
			"spec.components[0].train", "train must be a DNS-1123 label"),
		Entry("component with an empty version", "c1", func(r *trainyardv1.ClusterReport) { r.Spec.Components[0].Version = "" },
			"spec.components[0].version", "at least 1 chars long"),
		Entry("the same component twice", "c1", func(r *trainyardv1.ClusterReport) {
			r.Spec.Components = append(r.Spec.Components, r.Spec.Components[0])
		}, "spec.components[1]", "Duplicate value"),
		Entry("more than 256 components", "c1", func(r *trainyardv1.ClusterReport) {
			r.Spec.Components = nil
			for i := range trainyardv1.MaxClusterComponents + 1 {
				r.Spec.Components = append(r.Spec.Components, trainyardv1.ReportedComponent{
					Name: "c" + strings.Repeat("x", i%50) + string(rune('a'+i%26)) + string(rune('a'+i/26)), Version: "1"})
			}
		}, "spec.components", "must have at most 256 items"),
		Entry("more than 64 properties", "c1", func(r *trainyardv1.ClusterReport) {
			r.Spec.Properties = map[string]string{}
			for i := range trainyardv1.MaxClusterProperties + 1 {
				r.Spec.Properties[strings.Repeat("p", i+1)] = "v"
			}
		}, "spec.properties", "must have at most 64 items"),
	)

	It("accepts an upper-case UUID as the cluster ID of a lower-case name", func() {
		id := "0F1C2A4E-3B7D-4C8E-A1F0-5D6E7F8A9B0C"
		Expect(k8sClient.Create(ctx, report(id, nil))).To(Succeed())
	})

	It("keeps the cluster ID immutable", func() {
		r := report("immutable-cluster", nil)
		Expect(k8sClient.Create(ctx, r)).To(Succeed())
		r.Spec.ClusterID = "IMMUTABLE-CLUSTER"
		expectInvalid(k8sClient.Update(ctx, r), "spec.clusterID", "clusterID is immutable")
	})
})

func ensureNamespace(name string) error {
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(name)
	if err := k8sClient.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

var _ client.Object = &trainyardv1.ComponentRelease{}
