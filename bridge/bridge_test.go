package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/bridge"
	"github.com/trainyard-dev/trainyard/internal/checkin"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

const clusterID = "f47ac10b-58cc-4372-a567-0e02b2c3d479"

func checkinBody(id string, versions ...string) string {
	comps := ""
	for i, v := range versions {
		if i > 0 {
			comps += ","
		}
		comps += fmt.Sprintf(`{"component":{"name":"comp-%d","type":"Deployment"},"version":{"train":"stable","version":%q}}`, i, v)
	}
	return fmt.Sprintf(`{"id":%q,"components":[%s]}`, id, comps)
}

func report(ns, id string) *trainyardv1.ClusterReport {
	r := &trainyardv1.ClusterReport{}
	if err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: trainyardv1.ClusterReportName(id)}, r); err != nil {
		return nil
	}
	return r
}

var _ = Describe("the bridge over HTTP", func() {
	var (
		ns string
		m  *manager
	)
	BeforeEach(func() {
		ns = namespace()
		m = startManager(ns, time.Minute)
		DeferCleanup(func() { m.stop() })
	})

	It("answers ping, health and readiness", func() {
		for _, p := range []string{"/ping", "/healthz", "/readyz"} {
			r := get(m.url + p)
			Expect(r.code).To(Equal(http.StatusOK), p)
			Expect(r.body).To(BeEmpty())
		}
	})

	It("answers unknown paths with 404 and wrong methods with 405 and Allow, in JSON", func() {
		r := get(m.url + "/v3/nothing")
		Expect(r.code).To(Equal(http.StatusNotFound))
		Expect(r.errorOf().Message).To(ContainSubstring("/v3/nothing"))
		r = do(http.MethodDelete, m.url+"/v3/clusters/x", "", "")
		Expect(r.code).To(Equal(http.StatusMethodNotAllowed))
		Expect(r.header.Get("Allow")).To(Equal("GET"))
		r.errorOf()
		r = do(http.MethodPut, m.url+"/v3/versions/stable/router/v1", "", "")
		Expect(r.header.Get("Allow")).To(Equal("GET, POST"))
	})

	It("stores a check-in as a ClusterReport and serves it back", func() {
		r := post(m.url+"/v3/clusters", checkinBody(clusterID, "1.0.0", "2.0.0"))
		Expect(r.code).To(Equal(http.StatusOK), string(r.body))
		var c wire.Cluster
		r.json(&c)
		Expect(c.ID).To(Equal(clusterID))
		Expect(c.FirstSeen).NotTo(BeNil())
		Expect(c.Components).To(HaveLen(2))

		rep := report(ns, clusterID)
		Expect(rep).NotTo(BeNil())
		Expect(rep.Spec.Components).To(ConsistOf(
			trainyardv1.ReportedComponent{Name: "comp-0", Train: "stable", Version: "1.0.0", Type: "Deployment"},
			trainyardv1.ReportedComponent{Name: "comp-1", Train: "stable", Version: "2.0.0", Type: "Deployment"}))
		// The controller records the creation as the first check-in, in the
		// status it writes anyway (two writes per new cluster, not three).
		Eventually(func() int64 { return report(ns, clusterID).Status.CheckIns }).Should(BeEquivalentTo(1))

		Eventually(func() int { return get(m.url + "/v3/clusters/" + clusterID).code }).Should(Equal(http.StatusOK))
		r = get(m.url + "/v3/clusters/" + clusterID)
		r.json(&c)
		Expect(c.FirstSeen).NotTo(BeNil())
		Expect(c.LastSeen).NotTo(BeNil())
		Expect(get(m.url + "/v3/clusters/count").body).To(MatchJSON("1"))
	})

	It("accepts v2 check-ins with the ID in the path, and refuses a disagreeing body", func() {
		r := post(m.url+"/v2/clusters/edge-1", `{"components":[]}`)
		Expect(r.code).To(Equal(http.StatusOK), string(r.body))
		r = post(m.url+"/v2/clusters/edge-1", checkinBody("edge-2"))
		Expect(r.code).To(Equal(http.StatusBadRequest))
		Expect(r.errorOf().Message).To(Equal(`the path names cluster "edge-1" but the body names "edge-2"`))
	})

	DescribeTable("refuses bad check-ins precisely",
		func(contentType, body string, code int, msg string) {
			r := do(http.MethodPost, m.url+"/v3/clusters", contentType, body)
			Expect(r.code).To(Equal(code), string(r.body))
			Expect(r.errorOf().Message).To(ContainSubstring(msg))
		},
		Entry("no JSON content type", "text/plain", checkinBody(clusterID), http.StatusUnsupportedMediaType, "Content-Type must be application/json"),
		Entry("not JSON", "application/json", `{"id":`, http.StatusBadRequest, "invalid JSON body"),
		Entry("two JSON values", "application/json", `{} {}`, http.StatusBadRequest, "more than one JSON value"),
		Entry("no id", "application/json", `{"components":[]}`, http.StatusUnprocessableEntity, "id in body is required"),
		Entry("no components", "application/json", `{"id":"c1"}`, http.StatusUnprocessableEntity, "components in body is required"),
		Entry("a component without a name", "application/json", `{"id":"c1","components":[{"version":{"version":"1"}}]}`,
			http.StatusUnprocessableEntity, "components[0].component.name in body is required"),
		Entry("a component without a version", "application/json", `{"id":"c1","components":[{"component":{"name":"x"}}]}`,
			http.StatusUnprocessableEntity, "components[0].version.version in body is required"),
		Entry("a bad cluster ID", "application/json", `{"id":"Not_OK","components":[]}`,
			http.StatusUnprocessableEntity, "spec.clusterID: Invalid value"),
		Entry("a body over 1 MiB", "application/json", `{"id":"c1","components":[],"x":"`+string(make([]byte, 1<<20))+`"}`,
			http.StatusRequestEntityTooLarge, "request body larger than"),
	)

	It("writes a changed component list before answering, and coalesces check-ins that change nothing", func() {
		Expect(post(m.url+"/v3/clusters", checkinBody(clusterID, "1.0.0")).code).To(Equal(http.StatusOK))
		Eventually(func() int { return get(m.url + "/v3/clusters/" + clusterID).code }).Should(Equal(http.StatusOK))
		rv := report(ns, clusterID).ResourceVersion
		for range 5 {
			Expect(post(m.url+"/v3/clusters", checkinBody(clusterID, "1.0.0")).code).To(Equal(http.StatusOK))
		}
		// Within the heartbeat granularity: no write.
		Expect(report(ns, clusterID).ResourceVersion).To(Equal(rv))
		var stats struct {
			Data []bridge.CheckinStat `json:"data"`
		}
		get(m.url + "/v3/clusters/checkins").json(&stats)
		Expect(stats.Data).To(HaveLen(1))
		Expect(stats.Data[0].Checkins).To(BeEquivalentTo(6))

		// A changed component list is stored before the answer.
		Expect(post(m.url+"/v3/clusters", checkinBody(clusterID, "1.1.0")).code).To(Equal(http.StatusOK))
		rep := report(ns, clusterID)
		Expect(rep.Spec.Components[0].Version).To(Equal("1.1.0"))
		Expect(rep.Status.CheckIns).To(BeEquivalentTo(7))
	})

	It("stores the optional properties, keeps them for check-ins without, and refuses bad keys", func() {
		body := `{"id":"c1","components":[],"properties":{"kubernetesVersion":"v1.37.2","nodes":"3"}}`
		Expect(post(m.url+"/v3/clusters", body).code).To(Equal(http.StatusOK))
		Expect(report(ns, "c1").Spec.Properties).To(Equal(map[string]string{"kubernetesVersion": "v1.37.2", "nodes": "3"}))
		Eventually(func() int { return get(m.url + "/v3/clusters/c1").code }).Should(Equal(http.StatusOK))
		Expect(post(m.url+"/v3/clusters", `{"id":"c1","components":[]}`).code).To(Equal(http.StatusOK))
		Expect(report(ns, "c1").Spec.Properties).To(HaveKeyWithValue("nodes", "3"))
		r := post(m.url+"/v3/clusters", `{"id":"c1","components":[],"properties":{"node count":"3"}}`)
		Expect(r.code).To(Equal(http.StatusUnprocessableEntity))
		Expect(r.errorOf().Message).To(ContainSubstring("spec.properties[node count]"))
	})

	It("refuses control characters in what a cluster reports, and stores nothing of it", func() {
		Expect(post(m.url+"/v3/clusters", `{"id":"c1","components":[],"properties":{"provider":"aws"}}`).code).To(Equal(http.StatusOK))
		before := report(ns, "c1")
		// Cursor up, erase line, window title, OSC 52 clipboard write.
		attack := `aws\u001b[1A\u001b[2K\u001b]0;owned\u0007\u001b]52;c;Y3VybA==\u0007`
		r := post(m.url+"/v3/clusters", `{"id":"c1","components":[],"properties":{"provider":"`+attack+`"}}`)
		Expect(r.code).To(Equal(http.StatusUnprocessableEntity), string(r.body))
		Expect(r.errorOf().Message).To(ContainSubstring("spec.properties[provider]: Invalid value"))
		Expect(r.errorOf().Message).To(ContainSubstring("must not contain control characters (found U+001B at byte 3)"))
		Expect(string(r.body)).NotTo(ContainSubstring("\x1b"), "the answer does not repeat the raw bytes")
		r = post(m.url+"/v3/clusters", `{"id":"c2","components":[{"component":{"name":"router","type":"Deploy\u009bment"},"version":{"version":"1.0.0"}}]}`)
		Expect(r.code).To(Equal(http.StatusUnprocessableEntity), string(r.body))
		Expect(r.errorOf().Message).To(ContainSubstring("spec.components[0].type"))

		// Nothing stored (the status the controller writes may move on).
		after := report(ns, "c1")
		Expect(after.Spec).To(Equal(before.Spec))
		Expect(after.Spec.Properties).To(Equal(map[string]string{"provider": "aws"}))
		Expect(report(ns, "c2")).To(BeNil())

		// kubectl and GitOps writes meet the same wall at the webhook.
		// A merge patch: the controller may write the status meanwhile, and
		// an update of a stale version would be refused before the webhook.
		rep := after.DeepCopy()
		rep.Spec.Properties["provider"] = "aws\x1b]0;owned\a"
		err := k8sClient.Patch(context.Background(), rep, client.MergeFrom(after))
		Expect(err).To(MatchError(ContainSubstring("spec.properties[provider]: Invalid value")))
		Expect(report(ns, "c1").Spec).To(Equal(before.Spec))
	})

	It("takes many concurrent check-ins of one cluster without an error", func() {
		var wg sync.WaitGroup
		codes := make([]int, 20)
		for i := range codes {
			wg.Go(func() {
				defer GinkgoRecover()
				codes[i] = post(m.url+"/v3/clusters", checkinBody(clusterID, fmt.Sprintf("1.0.%d", i%3))).code
			})
		}
		wg.Wait()
		Expect(codes).To(HaveEach(http.StatusOK))
	})

	It("keeps every acknowledged check-in across a restart of the manager", func() {
		Expect(post(m.url+"/v3/clusters", checkinBody(clusterID, "1.0.0")).code).To(Equal(http.StatusOK))
		Eventually(func() int { return get(m.url + "/v3/clusters/" + clusterID).code }).Should(Equal(http.StatusOK))
		Expect(post(m.url+"/v3/clusters", checkinBody(clusterID, "1.0.0")).code).To(Equal(http.StatusOK)) // coalesced
		m.stop()
		m = startManager(ns, time.Minute)
		var c wire.Cluster
		Eventually(func() int { return get(m.url + "/v3/clusters/" + clusterID).code }).Should(Equal(http.StatusOK))
		get(m.url + "/v3/clusters/" + clusterID).json(&c)
		Expect(c.Components).To(HaveLen(1))
		Expect(report(ns, clusterID).Status.CheckIns).To(BeEquivalentTo(2))
	})

	It("answers 404 for an unknown cluster", func() {
		r := get(m.url + "/v3/clusters/nope")
		Expect(r.code).To(Equal(http.StatusNotFound))
		Expect(r.errorOf().Message).To(Equal("404 cluster not found"))
	})

	It("filters clusters by age, refusing impossible and malformed filters", func() {
		Expect(post(m.url+"/v3/clusters", checkinBody("c1")).code).To(Equal(http.StatusOK))
		Eventually(func() int { return get(m.url + "/v3/clusters/c1").code }).Should(Equal(http.StatusOK))
		past, future := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		var list struct {
			Data []wire.Cluster `json:"data"`
		}
		// The age query reads the reports' names, which an informer handler
		// keeps: it may see the report a moment after the cache does.
		Eventually(func() []wire.Cluster {
			get(m.url + "/v3/clusters/age?created_after=" + past + "&checked_in_before=" + future).json(&list)
			return list.Data
		}).Should(HaveLen(1))
		get(m.url + "/v3/clusters/age?created_after=" + future).json(&list)
		Expect(list.Data).To(BeEmpty())

		r := get(m.url + "/v3/clusters/age?created_after=" + future + "&created_before=" + past)
		Expect(r.code).To(Equal(http.StatusBadRequest))
		Expect(r.errorOf().Message).To(Equal(fmt.Sprintf("impossible filter: created_after=%s is not before created_before=%s", future, past)))
		r = get(m.url + "/v3/clusters/age?checked_in_after=yesterday")
		Expect(r.code).To(Equal(http.StatusUnprocessableEntity))
		Expect(r.errorOf().Message).To(ContainSubstring(`checked_in_after="yesterday" is not an RFC 3339 time`))
	})

	It("pages what the report is now, not what it was when it first came", func() {
		// The pages read the informer's objects as an event handler keeps
		// them: an update must replace the one it holds.
		Expect(post(m.url+"/v3/clusters", checkinBody("c1", "1.0.0")).code).To(Equal(http.StatusOK))
		versions := func() []string {
			var list struct {
				Data []wire.Cluster `json:"data"`
			}
			get(m.url + "/v3/clusters/age?limit=10").json(&list)
			var out []string
			for _, c := range list.Data {
				for _, cv := range c.Components {
					if cv.Version != nil {
						out = append(out, cv.Version.Version)
					}
				}
			}
			return out
		}
		Eventually(versions).Should(Equal([]string{"1.0.0"}))
		Expect(post(m.url+"/v3/clusters", checkinBody("c1", "2.0.0")).code).To(Equal(http.StatusOK))
		Eventually(versions).Should(Equal([]string{"2.0.0"}))
	})

	It("lists persistent clusters and requires its parameters", func() {
		r := get(m.url + "/v3/clusters/persistent?epoch=2026-01-01T00:00:00Z")
		Expect(r.code).To(Equal(http.StatusBadRequest))
		Expect(r.errorOf().Message).To(Equal("query parameter timestamp is required (an RFC 3339 time)"))

		Expect(post(m.url+"/v3/clusters", checkinBody("c1")).code).To(Equal(http.StatusOK))
		Eventually(func() int { return get(m.url + "/v3/clusters/c1").code }).Should(Equal(http.StatusOK))
		epoch, ts := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		var stats struct {
			Count int `json:"count"`
		}
		get(m.url + "/v3/clusters/persistent?epoch=" + epoch + "&timestamp=" + ts).json(&stats)
		Expect(stats.Count).To(Equal(0)) // one check-in only
		Expect(post(m.url+"/v3/clusters", checkinBody("c1")).code).To(Equal(http.StatusOK))
		get(m.url + "/v3/clusters/persistent?epoch=" + epoch + "&timestamp=" + ts).json(&stats)
		Expect(stats.Count).To(Equal(1))
	})
})

var _ = Describe("releases over HTTP", func() {
	var (
		ns string
		m  *manager
	)
	BeforeEach(func() {
		ns = namespace()
		m = startManager(ns, time.Minute)
		DeferCleanup(func() { m.stop() })
	})

	publish := func(train, component, version, body string) response {
		return m.publish(train, component, version, body)
	}

	It("publishes a ComponentRelease, idempotently, and refuses other content for the same version", func() {
		body := `{"component":{"name":"router"},"version":{"train":"stable","version":"v1.0.0","released":"2026-11-01T00:00:00Z",
			"data":{"description":"first","image":"example/router:v1","changelog":"https://example.com"}}}`
		r := publish("stable", "router", "v1.0.0", body)
		Expect(r.code).To(Equal(http.StatusOK), string(r.body))
		rel := &trainyardv1.ComponentRelease{}
		Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "router.stable.v1.0.0"}, rel)).To(Succeed())
		Expect(rel.Spec.Description).To(Equal("first"))
		Expect(rel.Spec.Image).To(Equal("example/router:v1"))
		Expect(rel.Spec.Data).To(Equal(map[string]string{"changelog": "https://example.com"}))

		Expect(publish("stable", "router", "v1.0.0", body).code).To(Equal(http.StatusOK))
		r = publish("stable", "router", "v1.0.0", `{"version":{"data":{"description":"changed"}}}`)
		Expect(r.code).To(Equal(http.StatusConflict))
		Expect(r.errorOf().Message).To(ContainSubstring(`already published on stable as ComponentRelease "router.stable.v1.0.0" with a different data, description, image`))
	})

	It("stores a release's Sigstore bundle from version.data.signatureBundle, and never serves it back", func() {
		bundle := `{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{}}`
		quoted, err := json.Marshal(bundle)
		Expect(err).NotTo(HaveOccurred())
		body := `{"version":{"data":{"image":"example/router@sha256:` + strings.Repeat("ab", 32) + `","signatureBundle":` + string(quoted) + `}}}`
		r := publish("stable", "router", "v3.0.0", body)
		Expect(r.code).To(Equal(http.StatusOK), string(r.body))
		Expect(string(r.body)).NotTo(ContainSubstring("signatureBundle"))
		rel := &trainyardv1.ComponentRelease{}
		Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "router.stable.v3.0.0"}, rel)).To(Succeed())
		Expect(rel.Spec.SignatureBundle).To(Equal(bundle))
		Expect(rel.Spec.Data).To(BeEmpty())
		// The same again is a harmless retry; another bundle is a conflict.
		Expect(publish("stable", "router", "v3.0.0", body).code).To(Equal(http.StatusOK))
		r = publish("stable", "router", "v3.0.0", strings.Replace(body, "verificationMaterial", "other", 1))
		Expect(r.code).To(Equal(http.StatusConflict))
		Expect(r.errorOf().Message).To(ContainSubstring("with a different signatureBundle"))
	})

	It("refuses an invalid release and a multi-get without data", func() {
		r := publish("stable", "Router", "v1.0.0", `{}`)
		Expect(r.code).To(Equal(http.StatusBadRequest))
		Expect(r.errorOf().Message).To(ContainSubstring("path.component: Invalid value: \"Router\""))
		r = publish("stable", "router", "v1.0.0", `{"version":{"released":"last week"}}`)
		Expect(r.code).To(Equal(http.StatusUnprocessableEntity))
		Expect(r.errorOf().Message).To(Equal(`version.released "last week" is not an RFC 3339 time`))
		r = post(m.url+"/v3/versions/latest", `{}`)
		Expect(r.code).To(Equal(http.StatusUnprocessableEntity))
		Expect(r.errorOf().Message).To(Equal("data in body is required"))
		r = post(m.url+"/v3/versions/latest", `{"data":[{"version":{"train":"stable"}}]}`)
		Expect(r.errorOf().Message).To(Equal("data[0].component.name in body is required"))
	})

	It("serves its OpenAPI document", func() {
		r := get(m.url + "/openapi.json")
		Expect(r.code).To(Equal(http.StatusOK))
		var doc map[string]any
		r.json(&doc)
		Expect(doc).To(HaveKeyWithValue("openapi", "3.0.3"))
	})

	It("refuses a body that disagrees with the path", func() {
		r := publish("stable", "router", "v1.0.0", `{"component":{"name":"dns"},"version":{"version":"v2.0.0"}}`)
		Expect(r.code).To(Equal(http.StatusBadRequest))
		Expect(r.errorOf().Message).To(Equal(`the body disagrees with the path: component "dns" (path "router"), version "v2.0.0" (path "v1.0.0")`))
	})

	It("serves releases, the latest, and the multi-get in request order with updateAvailable", func() {
		Expect(publish("stable", "router", "v1.0.0", `{}`).code).To(Equal(http.StatusOK))
		Expect(publish("stable", "router", "v1.1.0", `{}`).code).To(Equal(http.StatusOK))
		Expect(publish("beta", "dns", "2.0.0-beta.1", `{}`).code).To(Equal(http.StatusOK))
		Eventually(func() int { return get(m.url + "/v3/versions/stable/router/latest").code }).Should(Equal(http.StatusOK))
		Eventually(func() string {
			var cv wire.ComponentVersion
			get(m.url + "/v3/versions/stable/router/latest").json(&cv)
			return cv.Version.Version
		}).Should(Equal("v1.1.0"))

		Eventually(func() int { return get(m.url + "/v3/versions/beta/dns/latest").code }).Should(Equal(http.StatusOK))
		var list struct {
			Data []wire.ComponentVersion `json:"data"`
		}
		Eventually(func() int {
			get(m.url + "/v3/versions/stable/router").json(&list)
			return len(list.Data)
		}).Should(Equal(2))
		Expect(list.Data[0].Version.Version).To(Equal("v1.1.0"))
		get(m.url + "/v3/versions/stable/nothing").json(&list)
		Expect(list.Data).To(BeEmpty())
		Expect(get(m.url + "/v3/versions/stable/router/v9.9.9").errorOf().Message).To(Equal("404 release not found"))

		r := post(m.url+"/v3/versions/latest", `{"data":[
			{"component":{"name":"dns"},"version":{"train":"beta"}},
			{"component":{"name":"router"},"version":{"version":"v1.0.0"}},
			{"component":{"name":"router"},"version":{"version":"v1.1.0"}}]}`)
		Expect(r.code).To(Equal(http.StatusOK), string(r.body))
		r.json(&list)
		Expect(list.Data).To(HaveLen(3))
		Expect(list.Data[0].Version.Version).To(Equal("2.0.0-beta.1"))
		Expect(list.Data[1].UpdateAvailable).To(Equal("v1.1.0"))
		Expect(list.Data[2].UpdateAvailable).To(BeEmpty())

		// v2: an empty train means beta.
		post(m.url+"/v2/versions/latest", `{"data":[{"component":{"name":"dns"}}]}`).json(&list)
		Expect(list.Data[0].Version.Version).To(Equal("2.0.0-beta.1"))
	})

	It("stores doctor reports in a Secret and serves them with basic auth", func() {
		r := post(m.url+"/v3/doctor/"+clusterID, `{"workflow":{"id":"x","components":[]},"nodes":[{"name":"n1"}]}`)
		Expect(r.code).To(Equal(http.StatusUnprocessableEntity))
		Expect(r.errorOf().Message).To(Equal("namespaces in body is required"))
		Expect(post(m.url+"/v3/doctor/"+clusterID, `{"workflow":{"id":"x","components":[]},"nodes":[{"name":"n1"}],"namespaces":["default"]}`).code).To(Equal(http.StatusOK))

		Expect(k8sClient.Create(context.Background(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "doctor-auth"},
			Data:       map[string][]byte{"username": []byte("ops"), "password": []byte("s3cret")},
		})).To(Succeed())
		r = get(m.url + "/v3/doctor/" + clusterID)
		Expect(r.code).To(Equal(http.StatusUnauthorized))
		Expect(r.errorOf().Message).To(Equal("unauthenticated for invalid credentials"))
		auth := func(u, p string) func(*http.Request) { return func(r *http.Request) { r.SetBasicAuth(u, p) } }
		Expect(do(http.MethodGet, m.url+"/v3/doctor/"+clusterID, "", "", auth("ops", "wrong")).code).To(Equal(http.StatusUnauthorized))
		r = do(http.MethodGet, m.url+"/v3/doctor/"+clusterID, "", "", auth("ops", "s3cret"))
		Expect(r.code).To(Equal(http.StatusOK))
		Expect(r.body).To(MatchJSON(`{"workflow":{"id":"x","components":[]},"nodes":[{"name":"n1"}],"namespaces":["default"]}`))
		r = do(http.MethodGet, m.url+"/v3/doctor/00000000-0000-0000-0000-000000000000", "", "", auth("ops", "s3cret"))
		Expect(r.code).To(Equal(http.StatusNotFound))
	})
})

var _ = Describe("caching and traffic control", func() {
	It("answers GETs and the multi-get with an ETag, and 304 when it still matches", func() {
		ns := namespace()
		m := startManager(ns, time.Minute)
		DeferCleanup(func() { m.stop() })
		Expect(m.publish("stable", "router", "v1.0.0", `{}`).code).To(Equal(http.StatusOK))
		Eventually(func() int { return get(m.url + "/v3/versions/stable/router/latest").code }).Should(Equal(http.StatusOK))

		r := get(m.url + "/v3/versions/stable/router/latest")
		etag := r.header.Get("ETag")
		Expect(etag).To(MatchRegexp(`^"[0-9a-f]{24}"$`))
		ifNoneMatch := func(tag string) func(*http.Request) {
			return func(r *http.Request) { r.Header.Set("If-None-Match", tag) }
		}
		r = do(http.MethodGet, m.url+"/v3/versions/stable/router/latest", "", "", ifNoneMatch(etag))
		Expect(r.code).To(Equal(http.StatusNotModified))
		Expect(r.body).To(BeEmpty())

		multi := `{"data":[{"component":{"name":"router"}}]}`
		r = post(m.url+"/v3/versions/latest", multi)
		multiTag := r.header.Get("ETag")
		Expect(multiTag).NotTo(BeEmpty())
		Expect(do(http.MethodPost, m.url+"/v3/versions/latest", "application/json", multi, ifNoneMatch(multiTag)).code).
			To(Equal(http.StatusNotModified))

		// A new latest changes the answer, so the old tag no longer matches.
		Expect(m.publish("stable", "router", "v1.1.0", `{}`).code).To(Equal(http.StatusOK))
		Eventually(func() int {
			return do(http.MethodGet, m.url+"/v3/versions/stable/router/latest", "", "", ifNoneMatch(etag)).code
		}).Should(Equal(http.StatusOK))
		// So does the multi-get's, whose answer per train is memoised until
		// the train or its releases change.
		Eventually(func() string {
			return string(do(http.MethodPost, m.url+"/v3/versions/latest", "application/json", multi, ifNoneMatch(multiTag)).body)
		}).Should(ContainSubstring(`"version":"v1.1.0"`))
		// Retracted, the release stops being the latest: the memo hears it.
		rel := &trainyardv1.ComponentRelease{}
		Expect(k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: trainyardv1.ReleaseName("router", "stable", "v1.1.0")}, rel)).To(Succeed())
		before := rel.DeepCopy()
		rel.Spec.Retracted = &trainyardv1.Retraction{Reason: "broken"}
		Expect(k8sClient.Patch(context.Background(), rel, client.MergeFrom(before))).To(Succeed())
		Eventually(func() string {
			return string(post(m.url+"/v3/versions/latest", multi).body)
		}).Should(ContainSubstring(`"version":"v1.0.0"`))
	})

	It("answers a burst over the per-client rate with 429 and Retry-After, never a 5xx", func() {
		ns := namespace()
		m := startManager(ns, time.Minute, func(o *bridge.Options) { o.RateLimit, o.RateBurst = 1, 5 })
		DeferCleanup(func() { m.stop() })
		codes := map[int]int{}
		var retry string
		for range 20 {
			r := get(m.url + "/v3/clusters/count")
			codes[r.code]++
			if r.code == http.StatusTooManyRequests {
				retry = r.header.Get("Retry-After")
				Expect(r.errorOf().Message).To(ContainSubstring("too many requests"))
			}
		}
		Expect(codes[http.StatusOK]).To(BeNumerically(">=", 5))
		Expect(codes[http.StatusTooManyRequests]).To(BeNumerically(">=", 10))
		Expect(codes[http.StatusOK] + codes[http.StatusTooManyRequests]).To(Equal(20))
		Expect(retry).To(Equal("1"))
		// A made-up bearer token is no other client: anonymous reads are
		// limited by their source address.
		r := do(http.MethodGet, m.url+"/v3/clusters/count", "", "", func(r *http.Request) { r.Header.Set("Authorization", "Bearer other") })
		Expect(r.code).To(Equal(http.StatusTooManyRequests))
	})

	It("sheds requests beyond their level's concurrency with 429 and Retry-After, and never a health probe", func() {
		ns := namespace()
		m := startManager(ns, time.Minute, func(o *bridge.Options) { o.MaxInFlight, o.MaxInFlightPerClient = 1, 8 })
		DeferCleanup(func() { m.stop() })
		// A slow upload holds the anonymous level's only seat.
		pr, pw := io.Pipe()
		done := make(chan int)
		go func() {
			defer GinkgoRecover()
			req, _ := http.NewRequest(http.MethodPost, m.url+"/v3/clusters", pr)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		_, err := pw.Write([]byte(`{"id":"slow","components":[`))
		Expect(err).NotTo(HaveOccurred())
		// An anonymous read shares the anonymous level's only seat: it waits
		// in its queue, then is refused.
		var shed response
		Eventually(func() int { shed = get(m.url + "/v3/clusters/count"); return shed.code }).Should(Equal(http.StatusTooManyRequests))
		Expect(shed.header.Get("Retry-After")).To(Equal("1"))
		Expect(shed.errorOf().Message).To(Equal("the bridge is at its limit of concurrent requests for anonymous clients; retry"))
		// Health probes are exempt: a flood never fails kubelet's probes.
		Expect(get(m.url + "/ping").code).To(Equal(http.StatusOK))
		Expect(get(m.url + "/readyz").code).To(Equal(http.StatusOK))
		_, _ = pw.Write([]byte(`]}`))
		Expect(pw.Close()).To(Succeed())
		Eventually(done).Should(Receive(Equal(http.StatusOK)))
		Expect(get(m.url + "/v3/clusters/count").code).To(Equal(http.StatusOK))
	})
})

var _ = Describe("long-poll and pagination", func() {
	It("wakes a long-poll on latest as soon as a newer release is published", func() {
		ns := namespace()
		m := startManager(ns, time.Minute)
		DeferCleanup(func() { m.stop() })
		Expect(m.publish("stable", "router", "v1.0.0", `{}`).code).To(Equal(http.StatusOK))
		Eventually(func() int { return get(m.url + "/v3/versions/stable/router/latest").code }).Should(Equal(http.StatusOK))
		etag := get(m.url + "/v3/versions/stable/router/latest").header.Get("ETag")
		withTag := func(r *http.Request) { r.Header.Set("If-None-Match", etag) }

		// Nothing new: 304 after the wait.
		start := time.Now()
		r := do(http.MethodGet, m.url+"/v3/versions/stable/router/latest?wait=300ms", "", "", withTag)
		Expect(r.code).To(Equal(http.StatusNotModified))
		Expect(time.Since(start)).To(BeNumerically(">=", 300*time.Millisecond))

		// A publish during the wait answers it with the new latest.
		got := make(chan response, 1)
		go func() {
			defer GinkgoRecover()
			got <- do(http.MethodGet, m.url+"/v3/versions/stable/router/latest?wait=30s", "", "", withTag)
		}()
		Consistently(got, "200ms").ShouldNot(Receive())
		start = time.Now()
		Expect(m.publish("stable", "router", "v1.1.0", `{}`).code).To(Equal(http.StatusOK))
		var answer response
		Eventually(got, 10*time.Second).Should(Receive(&answer))
		Expect(time.Since(start)).To(BeNumerically("<", 10*time.Second))
		Expect(answer.code).To(Equal(http.StatusOK))
		var cv wire.ComponentVersion
		answer.json(&cv)
		Expect(cv.Version.Version).To(Equal("v1.1.0"))

		r = get(m.url + "/v3/versions/stable/router/latest?wait=2m")
		Expect(r.code).To(Equal(http.StatusUnprocessableEntity))
	})

	It("pages through 1,000 clusters with no duplicates or gaps", func() {
		ns := namespace()
		m := startManager(ns, time.Minute)
		DeferCleanup(func() { m.stop() })
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				defer GinkgoRecover()
				for i := w; i < 1000; i += 8 {
					id := fmt.Sprintf("c-%04d", i)
					Expect(k8sClient.Create(context.Background(), &trainyardv1.ClusterReport{
						ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: id},
						Spec:       trainyardv1.ClusterReportSpec{ClusterID: id},
					})).To(Succeed())
				}
			})
		}
		wg.Wait()
		Eventually(func() []byte { return get(m.url + "/v3/clusters/count").body }).Should(MatchJSON("1000"))

		seen := map[string]bool{}
		var order []string
		next, pages := "/v3/clusters/age?limit=128", 0
		for next != "" {
			r := get(m.url + next)
			Expect(r.code).To(Equal(http.StatusOK), string(r.body))
			var list struct {
				Data []wire.Cluster `json:"data"`
			}
			r.json(&list)
			Expect(len(list.Data)).To(BeNumerically("<=", 128))
			for _, c := range list.Data {
				Expect(seen).NotTo(HaveKey(c.ID), "duplicate")
				seen[c.ID] = true
				order = append(order, c.ID)
			}
			next = ""
			if link := r.header.Get("Link"); link != "" {
				Expect(link).To(MatchRegexp(`^<(/v3/clusters/age\?[^>]+)>; rel="next"$`))
				next = link[1:strings.Index(link, ">")]
			}
			pages++
		}
		Expect(seen).To(HaveLen(1000))
		Expect(pages).To(Equal(8))
		Expect(slices.IsSorted(order)).To(BeTrue(), "the pages are in name order")
		// A page after a marker starts right after it; a filter that keeps
		// the marker out refuses it (as before: the marker names no item).
		r := get(m.url + "/v3/clusters/age?limit=2&marker=" + order[500])
		Expect(r.code).To(Equal(http.StatusOK))
		var after struct {
			Data []wire.Cluster `json:"data"`
		}
		r.json(&after)
		Expect([]string{after.Data[0].ID, after.Data[1].ID}).To(Equal(order[501:503]))
		r = get(m.url + "/v3/clusters/age?limit=2&created_after=2100-01-01T00:00:00Z&marker=" + order[500])
		Expect(r.code).To(Equal(http.StatusBadRequest), string(r.body))

		r = get(m.url + "/v3/clusters/age?limit=0")
		Expect(r.code).To(Equal(http.StatusUnprocessableEntity))
		r = get(m.url + "/v3/clusters/checkins?limit=10&marker=nope")
		Expect(r.code).To(Equal(http.StatusBadRequest))
		Expect(r.errorOf().Message).To(ContainSubstring(`marker "nope" names no item of this list`))
	})
})

var _ = Describe("authentication and authorization", func() {
	var (
		ns string
		m  *manager
	)
	BeforeEach(func() {
		ns = namespace()
		m = startManager(ns, time.Minute, func(o *bridge.Options) {
			o.CheckInAuth, o.RegistrationSecret = bridge.CheckInToken, "registration"
		})
		DeferCleanup(func() { m.stop() })
		Expect(k8sClient.Create(context.Background(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "registration"},
			Data:       map[string][]byte{"fleet-a": []byte("token-a"), "fleet-b": []byte("token-b")},
		})).To(Succeed())
	})

	It("lets publish only a token RBAC allows to create componentreleases", func() {
		Expect(m.publish("stable", "router", "v1.0.0", `{}`).code).To(Equal(http.StatusOK))

		r := post(m.url+"/v3/versions/stable/router/v1.1.0", `{}`)
		Expect(r.code).To(Equal(http.StatusUnauthorized))
		Expect(r.errorOf().Message).To(ContainSubstring("a bearer token is required"))

		r = do(http.MethodPost, m.url+"/v3/versions/stable/router/v1.1.0", "application/json", `{}`, bearerAuth("not-a-token"))
		Expect(r.code).To(Equal(http.StatusUnauthorized))
		Expect(r.errorOf().Message).To(Equal("the bearer token is not valid"))

		reader := serviceAccountToken(ns, "no-rbac", nil)
		r = do(http.MethodPost, m.url+"/v3/versions/stable/router/v1.1.0", "application/json", `{}`, bearerAuth(reader))
		Expect(r.code).To(Equal(http.StatusForbidden))
		Expect(r.errorOf().Message).To(Equal("the token's identity may not create componentreleases in namespace " + ns))
		Expect(r.body).NotTo(ContainSubstring(reader))
	})

	It("in legacy mode, binds a cluster ID to its registration token: a hijack is refused, the agent still accepted", func() {
		m.stop()
		m = startManager(ns, time.Minute, func(o *bridge.Options) {
			o.CheckInAuth, o.RegistrationSecret, o.LegacyTokenBinding = bridge.CheckInToken, "registration", true
		})
		checkIn := func(token string) response {
			var auth []func(*http.Request)
			if token != "" {
				auth = append(auth, bearerAuth(token))
			}
			return do(http.MethodPost, m.url+"/v3/clusters", "application/json", checkinBody(clusterID, "1.0.0"), auth...)
		}
		r := checkIn("")
		Expect(r.code).To(Equal(http.StatusUnauthorized))
		Expect(r.errorOf().Message).To(ContainSubstring("registration token is required"))
		Expect(checkIn("wrong").code).To(Equal(http.StatusUnauthorized))

		Expect(checkIn("token-a").code).To(Equal(http.StatusOK))
		Expect(report(ns, clusterID).Annotations).To(HaveKey(checkin.AnnotationTokenHash))
		Expect(report(ns, clusterID).Annotations[checkin.AnnotationTokenHash]).NotTo(ContainSubstring("token-a"))

		r = checkIn("token-b")
		Expect(r.code).To(Equal(http.StatusForbidden))
		Expect(r.errorOf().Message).To(Equal("cluster " + clusterID + " is registered with another registration token; a cluster ID cannot be taken over"))
		Expect(r.body).NotTo(ContainSubstring("token-"))

		Expect(checkIn("token-a").code).To(Equal(http.StatusOK))
	})

	It("requires a token for reads when asked to", func() {
		m.stop()
		m = startManager(ns, time.Minute, func(o *bridge.Options) {
			o.CheckInAuth, o.RegistrationSecret, o.ReadAuth = bridge.CheckInToken, "registration", true
		})
		Expect(get(m.url + "/v3/clusters/count").code).To(Equal(http.StatusUnauthorized))
		Expect(do(http.MethodGet, m.url+"/v3/clusters/count", "", "", bearerAuth("token-a")).code).To(Equal(http.StatusOK))
		Expect(get(m.url + "/ping").code).To(Equal(http.StatusOK))
	})
})

var _ = Describe("an API server outage", func() {
	It("answers writes 503 with Retry-After, keeps serving reads from the cache, and loses nothing after", func() {
		ns := namespace()
		m := startManager(ns, time.Minute)
		DeferCleanup(func() { m.stop() })
		_, base, cut := behindOutage(m, bridge.Options{Namespace: ns, CheckInAuth: bridge.CheckInOpen,
			RateLimit: 1e6, RateBurst: 1e6}, true, true)

		first := post(base+"/v3/clusters", checkinBody(clusterID, "1.0.0"))
		Expect(first.code).To(Equal(http.StatusOK), string(first.body))
		Eventually(func() int { return get(base + "/v3/clusters/" + clusterID).code }).Should(Equal(http.StatusOK))

		cut.cut(true)
		r := post(base+"/v3/clusters", checkinBody(clusterID, "2.0.0"))
		Expect(r.code).To(Equal(http.StatusServiceUnavailable))
		Expect(r.header.Get("Retry-After")).NotTo(BeEmpty())
		Expect(r.errorOf().Message).To(ContainSubstring("nothing was stored, retry"))
		r = get(base + "/v3/clusters/" + clusterID)
		Expect(r.code).To(Equal(http.StatusOK))
		var c wire.Cluster
		r.json(&c)
		Expect(c.Components[0].Version.Version).To(Equal("1.0.0"))

		cut.cut(false)
		Eventually(func() int { return post(base+"/v3/clusters", checkinBody(clusterID, "2.0.0")).code }).Should(Equal(http.StatusOK))
		Eventually(func() string {
			get(base + "/v3/clusters/" + clusterID).json(&c)
			return c.Components[0].Version.Version
		}).Should(Equal("2.0.0"))
		Expect(report(ns, clusterID).Spec.Components[0].Version).To(Equal("2.0.0"))
	})

	It("lets a token RBAC allows to get secrets read doctor dumps", func() {
		ns := namespace()
		m := startManager(ns, time.Minute)
		DeferCleanup(func() { m.stop() })
		Expect(post(m.url+"/v3/doctor/"+clusterID, `{"nodes":[],"namespaces":[]}`).code).To(Equal(http.StatusOK))
		reader := serviceAccountToken(ns, "doctor-reader", []string{"get"}, "secrets")
		r := do(http.MethodGet, m.url+"/v3/doctor/"+clusterID, "", "", bearerAuth(reader))
		Expect(r.code).To(Equal(http.StatusOK))
		// The dump is stored and served as it was sent.
		Expect(r.body).To(MatchJSON(`{"nodes":[],"namespaces":[]}`))
		Expect(do(http.MethodGet, m.url+"/v3/doctor/"+clusterID, "", "", bearerAuth(m.token)).code).To(Equal(http.StatusForbidden))
	})
})
