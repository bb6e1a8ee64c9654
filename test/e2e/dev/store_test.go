package dev

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/wire"
)

// store reads what the bridge stores, from the API server: the reports,
// releases and doctor dumps of the namespaces it serves.
type store struct {
	c          client.Client
	namespaces []string
	// background are reports written by others (the dev agent), left out.
	background map[string]bool
}

func newStore(state string, namespaces ...string) *store {
	GinkgoHelper()
	rc, err := clientcmd.BuildConfigFromFlags("", filepath.Join(state, "kubeconfig"))
	Expect(err).NotTo(HaveOccurred())
	// Each write of the sweep is read around: no client-side throttle.
	rc.QPS, rc.Burst = -1, 0
	s := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(s)).To(Succeed())
	Expect(trainyardv1.AddToScheme(s)).To(Succeed())
	c, err := client.New(rc, client.Options{Scheme: s})
	Expect(err).NotTo(HaveOccurred())
	return &store{c: c, namespaces: namespaces, background: map[string]bool{}}
}

// snapshot is what is stored, object by object ("kind ns/name" to a digest
// of what a client wrote: spec or data, labels and annotations; never the
// status, which the controllers write).
type snapshot map[string]string

func digest(v ...any) string {
	b, _ := json.Marshal(v)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

func (s *store) snapshot() snapshot {
	GinkgoHelper()
	ctx := context.Background()
	out := snapshot{}
	for _, ns := range s.namespaces {
		var reports trainyardv1.ClusterReportList
		Expect(s.c.List(ctx, &reports, client.InNamespace(ns))).To(Succeed())
		for _, r := range reports.Items {
			if !s.background[ns+"/"+r.Name] {
				out["ClusterReport "+ns+"/"+r.Name] = digest(r.Spec, r.Labels, r.Annotations)
			}
		}
		var releases trainyardv1.ComponentReleaseList
		Expect(s.c.List(ctx, &releases, client.InNamespace(ns))).To(Succeed())
		for _, r := range releases.Items {
			out["ComponentRelease "+ns+"/"+r.Name] = digest(r.Spec, r.Labels, r.Annotations)
		}
		var secrets corev1.SecretList
		Expect(s.c.List(ctx, &secrets, client.InNamespace(ns))).To(Succeed())
		for _, sec := range secrets.Items {
			// The registration Secrets' annotations are the bridge's record
			// of token use; their data is what clients could change.
			out["Secret "+ns+"/"+sec.Name] = digest(sec.Data, sec.Labels)
		}
	}
	return out
}

// diff lists the objects that differ between two snapshots.
func (a snapshot) diff(b snapshot) []string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			out = append(out, "deleted "+k)
		} else if w != v {
			out = append(out, "changed "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, "created "+k)
		}
	}
	sort.Strings(out)
	return out
}

// storedAsSent says how what an accepted write stored differs from what the
// request sent ("" when it is exactly that), reading the object the route
// writes. ns is the route's tenant namespace.
func (s *store) storedAsSent(ns string, r request) string {
	ctx := context.Background()
	segs := strings.Split(strings.TrimPrefix(r.path, "/"), "/")
	switch {
	case strings.HasSuffix(r.op.path, "/clusters/{id}") || r.op.path == "/v3/clusters":
		var c wire.Cluster
		if err := json.Unmarshal(r.body, &c); err != nil {
			return "an accepted check-in whose body is not a cluster: " + err.Error()
		}
		if strings.HasSuffix(r.op.path, "{id}") {
			c.ID = segs[len(segs)-1]
		}
		var rep trainyardv1.ClusterReport
		if err := s.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: trainyardv1.ClusterReportName(c.ID)}, &rep); err != nil {
			return fmt.Sprintf("the report of %q: %v", c.ID, err)
		}
		var want []trainyardv1.ReportedComponent
		for _, cv := range c.Components {
			rc := trainyardv1.ReportedComponent{Name: cv.Component.Name, Type: cv.Component.Type, Train: cv.Version.Train,
				Version: cv.Version.Version, Image: cv.Version.Data["image"]}
			if rc.Train == "" {
				rc.Train = trainyardv1.DefaultTrain
			}
			if r := cv.Readiness; r != nil {
				rc.Readiness = &trainyardv1.WorkloadReadiness{Ready: r.Ready, Desired: r.Desired}
				if r.Since != nil {
					t := metav1.NewTime(r.Since.UTC().Truncate(time.Second))
					rc.Readiness.Since = &t
				}
			}
			want = append(want, rc)
		}
		// Properties count only when sent (an old agent's check-in keeps
		// them: internal/checkin).
		if !equalJSON(rep.Spec.Components, want) || rep.Spec.ClusterID != c.ID ||
			(c.Properties != nil && !equalJSON(rep.Spec.Properties, c.Properties)) {
			return fmt.Sprintf("stored %s %+v %v, sent %s %+v %v", rep.Spec.ClusterID, rep.Spec.Components, rep.Spec.Properties,
				c.ID, want, c.Properties)
		}
	case strings.HasSuffix(r.op.path, "/versions/{train}/{component}/{release}"):
		var cv wire.ComponentVersion
		if err := json.Unmarshal(r.body, &cv); err != nil {
			return "an accepted publish whose body is not a release: " + err.Error()
		}
		train, component, version := segs[len(segs)-3], segs[len(segs)-2], segs[len(segs)-1]
		var rels trainyardv1.ComponentReleaseList
		if err := s.c.List(ctx, &rels, client.InNamespace(ns)); err != nil {
			return err.Error()
		}
		i := slices.IndexFunc(rels.Items, func(rel trainyardv1.ComponentRelease) bool {
			return rel.Spec.Component == component && rel.Spec.Train == train && rel.Spec.Version == version
		})
		if i < 0 {
			return fmt.Sprintf("no release %s %s %s is stored", component, train, version)
		}
		got := rels.Items[i].Spec
		want := map[string]string{}
		if cv.Component != nil && cv.Component.Description != "" {
			want["description"] = cv.Component.Description
		}
		if cv.Version != nil {
			for k, v := range cv.Version.Data {
				want[k] = v
			}
		}
		stored := map[string]string{}
		for k, v := range got.Data {
			stored[k] = v
		}
		for k, v := range map[string]string{"description": got.Description, "fixes": got.Fixes, "image": got.Image} {
			if v != "" {
				stored[k] = v
			}
		}
		if !equalJSON(stored, want) {
			return fmt.Sprintf("stored %v, sent %v", stored, want)
		}
	}
	return ""
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y) || (isEmptyJSON(x) && isEmptyJSON(y))
}

func isEmptyJSON(b []byte) bool {
	s := string(b)
	return s == "null" || s == "{}" || s == "[]"
}
