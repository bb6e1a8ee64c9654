package v1alpha1_test

import (
	"encoding/json"
	"slices"
	"strings"
	"unsafe"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

var _ = Describe("ComponentStatus", func() {
	It("costs at most 136 bytes a component in memory (issue 32: 100,000 reports of 10 components)", func() {
		// 232 bytes with the rare fields inline: 10 of them took a
		// 2,688-byte allocation per report, 277 MB of a 100k manager.
		Expect(int(unsafe.Sizeof(trainyardv1.ComponentStatus{}))).To(BeNumerically("<=", 136))
	})

	It("keeps its JSON: the details are inline", func() {
		t := metav1.Unix(1764928800, 0)
		cs := trainyardv1.ComponentStatus{Name: "router", Installed: "1.0.0", Latest: "1.2.0", State: trainyardv1.StateUpdateAvailable,
			Recommended: "1.2.0", Ring: "early"}
		d := cs.Details()
		d.Path = []string{"1.1.0", "1.2.0"}
		d.History = []trainyardv1.VersionChange{{From: "0.9.0", To: "1.0.0", At: t}}
		d.HeldBack = &trainyardv1.HeldBack{Version: "1.2.0", Ring: "early", Reason: "soak"}
		d.Advisories = []trainyardv1.ComponentAdvisory{{ID: "GHSA-1", Since: t}}
		b, err := json.Marshal(cs)
		Expect(err).NotTo(HaveOccurred())
		var flat map[string]any
		Expect(json.Unmarshal(b, &flat)).To(Succeed())
		Expect(flat).To(HaveKey("path"))
		Expect(flat).To(HaveKey("history"))
		Expect(flat).To(HaveKey("heldBack"))
		Expect(flat).To(HaveKey("advisories"))
		Expect(flat).NotTo(HaveKey("ComponentStatusDetails"))

		var back trainyardv1.ComponentStatus
		Expect(json.Unmarshal(b, &back)).To(Succeed())
		Expect(back).To(Equal(cs))
	})

	It("has no details when none are set, so a computed status equals the stored one", func() {
		var back trainyardv1.ComponentStatus
		Expect(json.Unmarshal([]byte(`{"name":"dns","installed":"1.0.0","state":"UpToDate"}`), &back)).To(Succeed())
		Expect(back.ComponentStatusDetails).To(BeNil())
		Expect(back.GetPath()).To(BeNil())
		Expect(back.GetHeldBack()).To(BeNil())

		computed := trainyardv1.ComponentStatus{Name: "dns", Installed: "1.0.0", State: trainyardv1.StateUpToDate}
		computed.Details().Path = nil // a recommendation that came to nothing
		Expect(equality.Semantic.DeepEqual(computed, back)).To(BeFalse(), "empty details differ from none")
		computed.Compact()
		Expect(equality.Semantic.DeepEqual(computed, back)).To(BeTrue())
	})

	It("stores nothing the getters derive, and reads every value back through them", func() {
		first := metav1.Unix(1764928800, 0)
		later := metav1.Unix(1764932400, 0)
		path2 := &trainyardv1.ComponentStatusDetails{Path: []string{"1.1.0", "1.2.0"}}
		for _, tc := range []struct {
			name    string
			in      trainyardv1.ComponentStatus
			dropped []string // what OmitDerived leaves out
		}{
			{"up to date", trainyardv1.ComponentStatus{Name: "a", Installed: "1.2.0", Latest: "1.2.0", State: trainyardv1.StateUpToDate, Since: &first},
				[]string{`"latest"`, `"since"`}},
			{"up to date as v1.2.0 (kept: not the same string)", trainyardv1.ComponentStatus{Name: "a", Installed: "v1.2.0", Latest: "1.2.0", State: trainyardv1.StateUpToDate, Since: &later}, nil},
			{"one hop to latest", trainyardv1.ComponentStatus{Name: "a", Installed: "1.0.0", Latest: "1.2.0", State: trainyardv1.StateUpdateAvailable,
				Recommended: "1.2.0", Since: &first, ComponentStatusDetails: &trainyardv1.ComponentStatusDetails{Path: []string{"1.2.0"}}},
				[]string{`"latest"`, `"path"`, `"since"`}},
			{"two hops", trainyardv1.ComponentStatus{Name: "a", Installed: "1.0.0", Latest: "1.2.0", State: trainyardv1.StateUpdateAvailable,
				Recommended: "1.2.0", ComponentStatusDetails: path2}, []string{`"latest"`}},
			{"held below latest", trainyardv1.ComponentStatus{Name: "a", Installed: "1.0.0", Latest: "1.2.0", State: trainyardv1.StateUpdateAvailable,
				Recommended: "1.1.0", ComponentStatusDetails: &trainyardv1.ComponentStatusDetails{Path: []string{"1.1.0"}}}, []string{`"path"`}},
			{"behind, no way up", trainyardv1.ComponentStatus{Name: "a", Installed: "1.0.0", Latest: "1.2.0", State: trainyardv1.StateUpdateAvailable}, nil},
			{"retracted", trainyardv1.ComponentStatus{Name: "a", Installed: "1.1.0", Latest: "1.2.0", State: trainyardv1.StateRetracted,
				Recommended: "1.2.0", ComponentStatusDetails: &trainyardv1.ComponentStatusDetails{Path: []string{"1.2.0"}}}, []string{`"path"`}},
			{"unknown, a recommendation but no latest yet", trainyardv1.ComponentStatus{Name: "a", Installed: "0.9.0", State: trainyardv1.StateUnknown,
				Recommended: "1.2.0", ComponentStatusDetails: &trainyardv1.ComponentStatusDetails{Path: []string{"1.2.0"}}}, []string{`"path"`}},
		} {
			full, err := json.Marshal(tc.in)
			Expect(err).NotTo(HaveOccurred())
			stored := tc.in
			stored.ComponentStatusDetails = tc.in.ComponentStatusDetails.DeepCopy()
			stored.OmitDerived(&first)
			raw, err := json.Marshal(stored)
			Expect(err).NotTo(HaveOccurred())
			for _, key := range []string{`"latest"`, `"path"`, `"since"`} {
				if slices.Contains(tc.dropped, key) {
					Expect(string(full)).To(ContainSubstring(key), tc.name)
					Expect(string(raw)).NotTo(ContainSubstring(key), tc.name)
				} else {
					Expect(strings.Contains(string(raw), key)).To(Equal(strings.Contains(string(full), key)), "%s: %s", tc.name, key)
				}
			}
			var back trainyardv1.ComponentStatus
			Expect(json.Unmarshal(raw, &back)).To(Succeed())
			Expect(back.GetLatest()).To(Equal(tc.in.GetLatest()), tc.name)
			Expect(back.GetPath()).To(Equal(tc.in.GetPath()), tc.name)
			Expect(back.SinceOr(&first)).To(Equal(tc.in.SinceOr(&first)), tc.name)
		}
	})
})
