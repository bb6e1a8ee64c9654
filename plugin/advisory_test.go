package plugin_test

import (
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// Issue 30: `advisory import` turns a real OSV record into an Advisory that
// the API server, with the webhook installed, stores as printed.
var _ = Describe("advisory import", func() {
	record := filepath.Join("..", "internal", "osv", "testdata", "GO-2021-0072.json")

	DescribeTable("golden output",
		func(name string, code int, args ...string) {
			r := run(args...)
			golden(name, r)
			Expect(r.code).To(Equal(code), "exit code; stderr: %s", r.stderr)
		},
		Entry(nil, "advisory-import", 0, "advisory", "import", record, "--component", "registry", "--train", "stable"),
		Entry(nil, "advisory-import-json", 0, "advisory", "import", record, "--component", "registry", "-o", "json"),
		Entry("no component: exit 3", "error-advisory-no-component", 3, "advisory", "import", record),
		Entry("not a name: refused as the webhook would", "error-advisory-component", 3, "advisory", "import", record, "--component", "Registry_1"),
		Entry("not OSV: exit 3", "error-advisory-not-osv", 3, "advisory", "import", filepath.Join("testdata", "advisory-import.golden"), "--component", "registry"),
	)

	It("prints what the API server stores as it is, through the webhook", func(ctx SpecContext) {
		r := run("advisory", "import", record, "--component", "registry", "--train", "stable")
		Expect(r.code).To(Equal(0), r.stderr)
		a := &trainyardv1.Advisory{}
		Expect(yaml.UnmarshalStrict([]byte(r.stdout), a)).To(Succeed())
		a.Namespace = "publish"
		Expect(k8sClient.Create(ctx, a)).To(Succeed())
		got := &trainyardv1.Advisory{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(a), got)).To(Succeed())
		Expect(got.Spec).To(Equal(a.Spec))
		DeferCleanup(func(ctx SpecContext) { Expect(k8sClient.Delete(ctx, got)).To(Succeed()) })
	})
})
