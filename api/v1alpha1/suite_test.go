package v1alpha1_test

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/testenv"
)

// The schema suite installs the generated CRDs into a real kube-apiserver and
// checks what the OpenAPI and CEL validation accept and reject.
func TestAPISchema(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "API schema suite")
}

var (
	env       *envtest.Environment
	k8sClient client.Client
	ctx       = context.Background()
)

var _ = BeforeSuite(func() {
	env = testenv.New()
	cfg, err := testenv.Start(env)
	Expect(err).NotTo(HaveOccurred())
	scheme := runtime.NewScheme()
	Expect(trainyardv1.AddToScheme(scheme)).To(Succeed())
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
})

var _ = AfterSuite(func() {
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})

// CI shows only the tail of a run: the causes of its failures come last.
var _ = ReportAfterSuite("failure digest", testenv.FailureDigest(12))
