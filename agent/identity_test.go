package agent_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/trainyard-dev/trainyard/agent"
	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/bridge"
	"github.com/trainyard-dev/trainyard/internal/credential"
)

// Issue 14: a cluster's agent keeps the credential its registration got, in
// a Secret of its own cluster, and no longer needs the registration token.
var _ = Describe("the agent's credential", func() {
	It("keeps two registered clusters checking in across a registration token rotation; the old token then registers nothing", func() {
		// A hub namespace of its own, whose registration token this spec rotates.
		hubNS := namespace(hub)
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: hubNS, Name: "trainyard-registration"},
			Data: map[string][]byte{"t1": []byte("rotation-token-1")}}
		Expect(hub.Create(ctx, secret)).To(Succeed())
		srv := httptest.NewServer(bridge.New(hubCache, hub, hubAPIReader, bridge.Options{Namespace: hubNS}).Handler())
		DeferCleanup(srv.Close)

		ns := namespace(workload)
		Expect(workload.Create(ctx, deployment(ns, "api", "api", "1.0.0", nil))).To(Succeed())
		credentials := func(name string) agent.SecretCredentials {
			return agent.SecretCredentials{Kube: newKube(nil), Namespace: ns, Name: name}
		}
		var agents []*agent.Agent
		for i := 1; i <= 2; i++ {
			a := newAgent(agent.Options{HubURL: srv.URL, Token: "rotation-token-1", ClusterID: fmt.Sprintf("rotated-%d", i),
				Credentials: credentials(fmt.Sprintf("credential-%d", i))}, []string{ns})
			Expect(a.CheckIn(ctx)).To(Succeed())
			agents = append(agents, a)
		}
		stored := &corev1.Secret{}
		Expect(workload.Get(ctx, types.NamespacedName{Namespace: ns, Name: "credential-1"}, stored)).To(Succeed())
		Expect(string(stored.Data[agent.CredentialKey])).To(HavePrefix("tyc."))
		rep := &trainyardv1.ClusterReport{}
		Expect(hub.Get(ctx, types.NamespacedName{Namespace: hubNS, Name: "rotated-1"}, rep)).To(Succeed())
		Expect(rep.Annotations).To(HaveKey(trainyardv1.AnnotationCredentialHash))

		// T1 is replaced by T2 in the Secret.
		Eventually(func() error { // the bridge annotates the Secret (expiry, uses)
			if err := hub.Get(ctx, types.NamespacedName{Namespace: hubNS, Name: "trainyard-registration"}, secret); err != nil {
				return err
			}
			secret.Data = map[string][]byte{"t2": []byte("rotation-token-2")}
			return hub.Update(ctx, secret)
		}).Should(Succeed())
		// A third cluster registers with T2 once the bridge has re-read the
		// Secret; meanwhile and after, the first two never see a 401 or 403
		// (CheckIn returns an error for those).
		third := newAgent(agent.Options{HubURL: srv.URL, Token: "rotation-token-2", ClusterID: "rotated-3"}, []string{ns})
		Eventually(func() error {
			for _, a := range agents {
				Expect(a.CheckIn(ctx)).To(Succeed())
			}
			return third.CheckIn(ctx)
		}, 20*time.Second, 500*time.Millisecond).Should(Succeed())
		for _, a := range agents {
			Expect(a.CheckIn(ctx)).To(Succeed())
		}
		// T1 registers nothing any more.
		late := newAgent(agent.Options{HubURL: srv.URL, Token: "rotation-token-1", ClusterID: "rotated-4"}, []string{ns})
		err := late.CheckIn(ctx)
		Expect(err).To(MatchError(ContainSubstring("refused the check-in (401")))
		// The refusal names the bridge's request, as the bridge's logs do.
		Expect(err).To(MatchError(MatchRegexp(`\(request [0-9a-f]{32}\)`)))

		// A restarted agent reads its credential from its Secret: no
		// registration token needed.
		restarted := newAgent(agent.Options{HubURL: srv.URL, ClusterID: "rotated-1", Credentials: credentials("credential-1")}, []string{ns})
		Expect(restarted.CheckIn(ctx)).To(Succeed())
	})

	It("registers again after a revocation only with the reissue token an operator put in its token file (issue 27 #4)", func() {
		ns := namespace(workload)
		creds := agent.SecretCredentials{Kube: newKube(nil), Namespace: ns, Name: "credential"}
		tokenFile := filepath.Join(GinkgoT().TempDir(), "token")
		Expect(os.WriteFile(tokenFile, []byte(registrationToken), 0o600)).To(Succeed())
		a := newAgent(agent.Options{HubURL: hubURL, TokenFile: tokenFile, ClusterID: "revoked-1", Credentials: creds}, []string{ns})
		Expect(a.CheckIn(ctx)).To(Succeed())
		first, err := creds.Load(ctx)
		Expect(err).NotTo(HaveOccurred())

		revoke := func() {
			GinkgoHelper()
			rep := hubReport("revoked-1")
			Expect(hub.Patch(ctx, rep, client.RawPatch(types.MergePatchType,
				[]byte(`{"metadata":{"annotations":{"`+trainyardv1.AnnotationCredentialRevoked+`":"test"}}}`)))).To(Succeed())
		}
		revoke()
		// Refused three times in a row, it tries to register again; the
		// registration token does not take a revoked cluster back, and the
		// error says what the operator does. The credential stays stored.
		Eventually(func() error { return a.CheckIn(ctx) }).Should(MatchError(ContainSubstring("kubectl trainyard cluster reissue revoked-1")))
		Expect(creds.Load(ctx)).To(Equal(first))
		Expect(hubReport("revoked-1").Annotations).To(HaveKey(trainyardv1.AnnotationCredentialRevoked))

		// The operator's reissue token, put where the registration token was.
		token, hash := credential.New(credential.ReissuePrefix)
		rep := hubReport("revoked-1")
		Expect(hub.Patch(ctx, rep, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"`+
			trainyardv1.AnnotationReissueHash+`":"`+hash+`","`+trainyardv1.AnnotationReissueExpires+`":"`+time.Now().Add(time.Hour).UTC().Format(time.RFC3339)+`"}}}`)))).To(Succeed())
		Expect(os.WriteFile(tokenFile, []byte(token), 0o600)).To(Succeed())
		Eventually(func(g Gomega) string {
			g.Expect(a.CheckIn(ctx)).To(Succeed())
			c, _ := creds.Load(ctx)
			return c
		}).ShouldNot(Equal(first))
		Expect(hubReport("revoked-1").Annotations).NotTo(HaveKey(trainyardv1.AnnotationCredentialRevoked))
		Expect(hubReport("revoked-1").Annotations).NotTo(HaveKey(trainyardv1.AnnotationReissueHash))

		// Without a registration token, a refused credential is an error
		// that names what is missing.
		revoke()
		tokenless := newAgent(agent.Options{HubURL: hubURL, ClusterID: "revoked-1", Credentials: creds}, []string{ns})
		Eventually(func() error { return tokenless.CheckIn(ctx) }).Should(MatchError(ContainSubstring("no registration token is mounted")))
	})

	It("keeps a valid credential through a replica's passing 401s, and never stores less than it had (issue 27 #3)", func() {
		ns := namespace(workload)
		creds := agent.SecretCredentials{Kube: newKube(nil), Namespace: ns, Name: "credential"}
		// A bridge replica whose cache has not yet seen the cluster's
		// credential: in front of the real bridge, it refuses the next
		// refuse credentialed check-ins with the bridge's own 401.
		target, err := url.Parse(hubURL)
		Expect(err).NotTo(HaveOccurred())
		var refuse atomic.Int64
		proxy := httputil.NewSingleHostReverseProxy(target)
		lagging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v3/clusters" && strings.HasPrefix(r.Header.Get("Authorization"), "Bearer tyc.") && refuse.Add(-1) >= 0 {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, `{"code":401,"message":"unauthenticated for invalid credentials"}`)
				return
			}
			proxy.ServeHTTP(w, r)
		}))
		DeferCleanup(lagging.Close)
		a := newAgent(agent.Options{HubURL: lagging.URL, Token: registrationToken, ClusterID: "lagging-1", Credentials: creds}, []string{ns})
		Expect(a.CheckIn(ctx)).To(Succeed())
		first, err := creds.Load(ctx)
		Expect(err).NotTo(HaveOccurred())
		hash := hubReport("lagging-1").Annotations[trainyardv1.AnnotationCredentialHash]

		refuse.Store(maxRefusalsSeen - 1)
		for range maxRefusalsSeen - 1 {
			err := a.CheckIn(ctx)
			Expect(err).To(MatchError(ContainSubstring("before it registers again")))
			Expect(creds.Load(ctx)).To(Equal(first), "the credential is kept")
		}
		// The replica has caught up: the same credential checks in.
		Expect(a.CheckIn(ctx)).To(Succeed())
		Expect(creds.Load(ctx)).To(Equal(first))
		Expect(hubReport("lagging-1").Annotations).To(HaveKeyWithValue(trainyardv1.AnnotationCredentialHash, hash), "no new registration")
	})
})

// maxRefusalsSeen is the agent's maxRefusals, as this spec observes it.
const maxRefusalsSeen = 3
