package plugin_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/plugin"
)

// firstWrite records how many list requests had been sent when the command
// first wrote its output.
type firstWrite struct {
	bytes.Buffer
	requests *atomic.Int32
	at       int32 // -1 until the first write
}

func (w *firstWrite) Write(p []byte) (int, error) {
	if w.at < 0 {
		w.at = w.requests.Load()
	}
	return w.Buffer.Write(p)
}

// heldWriter holds its first write until release says so, or 20 s pass.
type heldWriter struct {
	bytes.Buffer
	release func() bool
	waited  bool
	gaveUp  bool
}

func (w *heldWriter) Write(p []byte) (int, error) {
	if !w.waited {
		w.waited = true
		deadline := time.Now().Add(20 * time.Second)
		for !w.release() && !w.gaveUp {
			w.gaveUp = time.Now().After(deadline)
			time.Sleep(10 * time.Millisecond)
		}
	}
	return w.Buffer.Write(p)
}

var _ = Describe("fleet on a large fleet", func() {
	const ns, clusters, chunk = "fleet-stream", 1050, 50

	BeforeEach(func() {
		ctx := context.Background()
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		for i := range clusters {
			// Upper and lower case alternate (UUIDs may have either): the
			// API lists reports by their lower-cased names, so every a...
			// before every B..., and fleet must print them in that order.
			id := fmt.Sprintf("a%07d-0000-4000-8000-00000000000c", i)
			if i%2 == 0 {
				id = strings.ToUpper(fmt.Sprintf("b%07d-0000-4000-8000-00000000000c", i))
			}
			Expect(k8sClient.Create(ctx, &trainyardv1.ClusterReport{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ClusterReportName(id)},
				Spec: trainyardv1.ClusterReportSpec{ClusterID: id,
					Components: []trainyardv1.ReportedComponent{{Name: "router", Train: "stable", Version: "1.0.0"}}}})).To(Succeed())
		}
	})

	It("prints rows page by page, in order, before it has read the last page", func() {
		var requests atomic.Int32
		count := func(rt http.RoundTripper) http.RoundTripper {
			return roundTripper(func(req *http.Request) (*http.Response, error) {
				if strings.HasSuffix(req.URL.Path, "/clusterreports") {
					requests.Add(1)
				}
				return rt.RoundTrip(req)
			})
		}
		out := &firstWrite{requests: &requests, at: -1}
		code := plugin.Run([]string{"fleet", "-n", ns, "--chunk-size", fmt.Sprint(chunk), "--kubeconfig", kubeconfig},
			plugin.Options{Streams: genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: out, ErrOut: GinkgoWriter},
				Now: func() time.Time { return now }, WrapTransport: count})
		Expect(code).To(Equal(0))
		pages := int32((clusters + chunk - 1) / chunk)
		Expect(requests.Load()).To(Equal(pages))
		Expect(out.at).To(BeNumerically(">", 0))
		Expect(out.at).To(BeNumerically("<", pages), "the first rows waited for the last page")

		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		Expect(lines).To(HaveLen(clusters + 1))
		Expect(lines[0]).To(HavePrefix("CLUSTER "))
		var ids []string
		for _, l := range lines[1:] {
			ids = append(ids, strings.Fields(l)[0])
		}
		Expect(slices.IsSortedFunc(ids, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })).To(BeTrue())
		Expect(ids[0]).To(Equal("a0000001-0000-4000-8000-00000000000c"))
		Expect(ids[len(ids)-1]).To(Equal("B0001048-0000-4000-8000-00000000000C"))

		// The same table as in one request, read whole.
		whole := run("fleet", "-n", ns, "--chunk-size", "0")
		Expect(whole.code).To(Equal(0))
		Expect(out.String()).To(Equal(whole.stdout))

		// A reader who holds the output (a pager) does not hold the list:
		// its continue token would expire meanwhile. The writer blocks
		// until every page has been requested (or gives up after 20 s).
		requests.Store(0)
		held := &heldWriter{release: func() bool { return requests.Load() == pages }}
		code = plugin.Run([]string{"fleet", "-n", ns, "--chunk-size", fmt.Sprint(chunk), "--kubeconfig", kubeconfig},
			plugin.Options{Streams: genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: held, ErrOut: GinkgoWriter},
				Now: func() time.Time { return now }, WrapTransport: count})
		Expect(code).To(Equal(0))
		Expect(held.gaveUp).To(BeFalse(), "the list waited for the held output")
		Expect(held.String()).To(Equal(whole.stdout))
	})
})
