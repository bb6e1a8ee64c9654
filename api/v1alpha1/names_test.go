package v1alpha1_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/util/validation"

	v1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

var _ = Describe("ReleaseName", func() {
	DescribeTable("is <component>.<train>.<version>, DNS-safe and distinct per version",
		func(version, want string) {
			name := v1.ReleaseName("router", "stable", version)
			Expect(name).To(Equal(want))
			Expect(validation.IsDNS1123Subdomain(name)).To(BeEmpty())
		},
		Entry("a plain version", "v1.2.3", "router.stable.v1.2.3"),
		Entry("a pre-release", "1.0.0-beta.1", "router.stable.1.0.0-beta.1"),
		Entry("build metadata", "1.0.0+sha.5114f85", "router.stable.1-0-0-sha-5114f85-430a7675"),
		Entry("upper case", "1.0.0-RC1", "router.stable.1-0-0-rc1-101cd8f0"),
		Entry("nothing DNS-safe", "~~", "router.stable.v-4970013d"),
		// The hash is sha256 of the exact version (printf 1..0 | sha256sum).
		Entry("double dots", "1..0", "router.stable.1-0-0804f64d"),
	)

	It("gives different versions different names even when their safe forms agree", func() {
		Expect(v1.ReleaseName("a", "b", "1.0.0-RC1")).NotTo(Equal(v1.ReleaseName("a", "b", "1.0.0-rc1")))
		Expect(v1.ReleaseName("a", "b", "1.0.0+x")).NotTo(Equal(v1.ReleaseName("a", "b", "1.0.0_x")))
	})
})
