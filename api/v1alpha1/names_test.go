package v1alpha1_test

import (
	"crypto/sha256"
	"encoding/hex"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/util/validation"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// hash16 is the hash part of a hashed release name.
func hash16(canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return hex.EncodeToString(sum[:8])
}

var _ = Describe("ReleaseName", func() {
	DescribeTable("is <component>.<train>.<canonical version>, DNS-safe",
		func(version, want string) {
			name := trainyardv1.ReleaseName("router", "stable", version)
			Expect(name).To(Equal(want))
			Expect(validation.IsDNS1123Subdomain(name)).To(BeEmpty())
		},
		Entry("a plain version", "v1.2.3", "router.stable.v1.2.3"),
		Entry("a semantic version without v", "1.2.3", "router.stable.v1.2.3"),
		Entry("a pre-release", "1.0.0-beta.1", "router.stable.v1.0.0-beta.1"),
		Entry("not a semantic version", "2024.01", "router.stable.2024.01"),
		Entry("build metadata", "1.0.0+sha.5114f85", "router.stable.v1-0-0-sha-5114f85--"+hash16("v1.0.0+sha.5114f85")),
		Entry("upper case", "1.0.0-RC1", "router.stable.v1-0-0-rc1--"+hash16("v1.0.0-RC1")),
		Entry("nothing DNS-safe", "~~", "router.stable.v--"+hash16("~~")),
		Entry("double dots", "1..0", "router.stable.1-0--"+hash16("1..0")),
		Entry("a double dash", "a--b", "router.stable.a-b--"+hash16("a--b")),
	)

	It("gives one semantic version one name, whatever its spelling", func() {
		Expect(trainyardv1.ReleaseName("a", "b", "3.0.0")).To(Equal(trainyardv1.ReleaseName("a", "b", "v3.0.0")))
	})

	It("gives different versions different names", func() {
		Expect(trainyardv1.ReleaseName("a", "b", "1.0.0-RC1")).NotTo(Equal(trainyardv1.ReleaseName("a", "b", "1.0.0-rc1")))
		Expect(trainyardv1.ReleaseName("a", "b", "1.0.0+x")).NotTo(Equal(trainyardv1.ReleaseName("a", "b", "1.0.0_x")))
		// The readable part of a hashed name is itself a valid version, but
		// its plain name has no "--": the two forms never meet.
		hashed := trainyardv1.ReleaseName("x", "stable", "1.0.0-RC1")
		readable := hashed[len("x.stable."):]
		Expect(trainyardv1.ReleaseName("x", "stable", readable)).NotTo(Equal(hashed))
	})

	It("keeps every version of the longest component and train within a name's length", func() {
		long := "a123456789012345678901234567890123456789012345678901234567890bc"
		version := "1.0.0-X234567890123456789012345678901234567890123456789012345678"
		name := trainyardv1.ReleaseName(long, long, version)
		Expect(validation.IsDNS1123Subdomain(name)).To(BeEmpty(), name)
	})
})

var _ = Describe("CanonicalVersion", func() {
	DescribeTable("spells a semantic version with v, anything else as it is",
		func(in, want string) { Expect(trainyardv1.CanonicalVersion(in)).To(Equal(want)) },
		Entry(nil, "3.0.0", "v3.0.0"),
		Entry(nil, "v3.0.0", "v3.0.0"),
		Entry(nil, "v3.0.0-RC1+b.2", "v3.0.0-RC1+b.2"),
		Entry("no coercion", "1.2", "1.2"),
		Entry("two v", "vv1.0.0", "vv1.0.0"),
	)
})
