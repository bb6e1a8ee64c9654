package ordering_test

import (
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/internal/ordering"
)

func TestOrdering(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "ordering suite")
}

type rel struct {
	version   string
	day       int // released on day N
	retracted bool
}

func candidates(rs []rel) []ordering.Candidate {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var cs []ordering.Candidate
	for _, r := range rs {
		cs = append(cs, ordering.NewCandidate("r-"+r.version, r.version,
			base.AddDate(0, 0, r.day).UnixNano(), r.retracted))
	}
	return cs
}

var _ = Describe("Parse", func() {
	DescribeTable("accepts semantic versions, with an optional leading v",
		func(in string, want trainyardv1.ParsedVersion) {
			Expect(ordering.Parsed(in)).To(HaveValue(Equal(want)))
		},
		Entry("plain", "1.2.3", trainyardv1.ParsedVersion{Major: 1, Minor: 2, Patch: 3}),
		Entry("leading v", "v2.0.0", trainyardv1.ParsedVersion{Major: 2}),
		Entry("pre-release and build", "1.0.0-beta.2+sha.1", trainyardv1.ParsedVersion{Major: 1, Prerelease: "beta.2", Metadata: "sha.1"}),
	)
	DescribeTable("rejects what is not a full semantic version",
		func(in string) { Expect(ordering.Parsed(in)).To(BeNil()) },
		Entry("two parts", "1.2"),
		Entry("a date", "2026-11-24"),
		Entry("a name", "latest"),
		Entry("two vs", "vv1.0.0"),
		Entry("leading zero", "01.0.0"),
	)
})

var _ = Describe("Latest", func() {
	DescribeTable("picks the latest release",
		func(spec trainyardv1.ReleaseTrainSpec, rs []rel, want string) {
			p, err := ordering.PolicyOf(spec)
			Expect(err).NotTo(HaveOccurred())
			cs := candidates(rs)
			i := p.Latest(cs)
			if want == "" {
				Expect(i).To(Equal(-1))
				return
			}
			Expect(i).To(BeNumerically(">=", 0), "no latest")
			Expect(cs[i].Version).To(Equal(want))
		},
		Entry("semver: highest wins, whatever the release order",
			trainyardv1.ReleaseTrainSpec{}, []rel{{"1.10.0", 1, false}, {"1.9.0", 5, false}, {"v1.2.0", 9, false}}, "1.10.0"),
		Entry("release time: newest wins, as in Deis",
			trainyardv1.ReleaseTrainSpec{Ordering: trainyardv1.OrderingReleaseTime}, []rel{{"1.10.0", 1, false}, {"1.9.0", 5, false}}, "1.9.0"),
		Entry("release time: a tie is broken by semver",
			trainyardv1.ReleaseTrainSpec{Ordering: trainyardv1.OrderingReleaseTime}, []rel{{"1.9.0", 5, false}, {"1.10.0", 5, false}}, "1.10.0"),
		Entry("release time: a non-semver version can be latest",
			trainyardv1.ReleaseTrainSpec{Ordering: trainyardv1.OrderingReleaseTime}, []rel{{"1.9.0", 5, false}, {"nightly-2026", 6, false}}, "nightly-2026"),
		Entry("semver: a non-semver version is never latest",
			trainyardv1.ReleaseTrainSpec{}, []rel{{"1.0.0", 1, false}, {"zzz", 6, false}}, "1.0.0"),
		Entry("semver: only non-semver versions means no latest",
			trainyardv1.ReleaseTrainSpec{}, []rel{{"zzz", 6, false}}, ""),
		Entry("pre-releases count by default (the train is the channel)",
			trainyardv1.ReleaseTrainSpec{}, []rel{{"1.0.0", 1, false}, {"1.1.0-beta.1", 2, false}}, "1.1.0-beta.1"),
		Entry("a release beats its own pre-releases",
			trainyardv1.ReleaseTrainSpec{}, []rel{{"1.1.0", 1, false}, {"1.1.0-rc.1", 2, false}}, "1.1.0"),
		Entry("pre-releases excluded",
			trainyardv1.ReleaseTrainSpec{Prereleases: trainyardv1.PrereleasesExclude}, []rel{{"1.0.0", 1, false}, {"1.1.0-beta.1", 2, false}}, "1.0.0"),
		Entry("versionRange pins a major line",
			trainyardv1.ReleaseTrainSpec{VersionRange: ">=1.0.0, <2.0.0"}, []rel{{"1.4.0", 1, false}, {"2.0.0", 2, false}}, "1.4.0"),
		Entry("versionRange with tilde",
			trainyardv1.ReleaseTrainSpec{VersionRange: "~1.4"}, []rel{{"1.4.7", 1, false}, {"1.5.0", 2, false}}, "1.4.7"),
		Entry("versionRange admits its pre-releases when they are included",
			trainyardv1.ReleaseTrainSpec{VersionRange: "<2.0.0"}, []rel{{"1.4.0", 1, false}, {"1.5.0-beta.1", 2, false}}, "1.5.0-beta.1"),
		Entry("versionRange excludes non-semver under release time",
			trainyardv1.ReleaseTrainSpec{Ordering: trainyardv1.OrderingReleaseTime, VersionRange: "<2"}, []rel{{"1.4.0", 1, false}, {"nightly", 2, false}}, "1.4.0"),
		Entry("a retracted latest falls back",
			trainyardv1.ReleaseTrainSpec{}, []rel{{"1.0.0", 1, false}, {"1.1.0", 2, true}}, "1.0.0"),
		Entry("everything retracted means no latest",
			trainyardv1.ReleaseTrainSpec{}, []rel{{"1.0.0", 1, true}}, ""),
		Entry("no releases", trainyardv1.ReleaseTrainSpec{}, nil, ""),
	)

	It("breaks equal precedence by name, independent of order", func() {
		p, _ := ordering.PolicyOf(trainyardv1.ReleaseTrainSpec{})
		a := ordering.NewCandidate("a", "1.0.0", 0, false)
		b := ordering.NewCandidate("b", "v1.0.0", 0, false)
		Expect(p.Latest([]ordering.Candidate{a, b})).To(Equal(1))
		Expect(p.Latest([]ordering.Candidate{b, a})).To(Equal(0))
	})

	It("rejects a versionRange that does not parse", func() {
		_, err := ordering.PolicyOf(trainyardv1.ReleaseTrainSpec{VersionRange: ">>1"})
		Expect(err).To(MatchError(ContainSubstring(`versionRange ">>1" is not a semantic-version constraint`)))
	})
})
