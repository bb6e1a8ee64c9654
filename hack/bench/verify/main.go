// Command verify measures release verification (issue 31's target: 1,000
// releases verified in under 10 s on these machines, each digest verified
// once per policy generation).
//
// One train holds N releases, each image signed by a key made here
// (Sigstore bundles, offline). A TrustPolicy trusting that key is created
// last; the bench measures from its creation until every release's
// Verified condition is True and the newest is latest, and reads how many
// verifications the manager made. It then changes the policy (a new
// generation, which must verify everything once more) and measures that,
// then forces more reconciles of the train (which must verify nothing).
//
// What dominates: the N release status PATCHes the train controller makes
// (one per release, in one reconcile); each verification (a bundle's
// decoding and one ECDSA P-256 check) is a fraction of a millisecond.
//
//	make bench-verify
//	go run ./hack/bench/verify -releases 200
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/hack/bench/benchenv"
	"github.com/trainyard-dev/trainyard/internal/verification/verificationtest"
)

const ns = "fleet"

func main() {
	n := flag.Int("releases", 1000, "Signed releases on the train.")
	manager := flag.String("manager", "bin/trainyard", "The manager binary (make build).")
	flag.Parse()
	log.SetLogger(logr.Discard())
	if err := run(*n, *manager); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func version(i int) string { return fmt.Sprintf("1.%d.0", i) }

func run(n int, binary string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err := benchenv.Start(ctx, ns)
	if err != nil {
		return err
	}
	defer env.Stop()
	cl := env.Client
	mgr, metrics, err := env.StartReportManager(binary, 16)
	if err != nil {
		return err
	}
	defer benchenv.StopManager(mgr)

	key, err := verificationtest.NewKey()
	if err != nil {
		return err
	}
	if err := cl.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cosign-pub"},
		Data: map[string][]byte{"cosign.pub": key.PEM()}}); err != nil {
		return err
	}
	fmt.Printf("publishing %d signed releases ...\n", n)
	t0 := time.Now()
	var firstErr atomic.Value
	benchenv.Parallel(n, 16, func(i int) {
		m, digest := verificationtest.Manifest(version(i))
		b, err := key.Sign(m)
		if err == nil {
			err = cl.Create(ctx, &trainyardv1.ComponentRelease{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ReleaseName("app", "stable", version(i))},
				Spec: trainyardv1.ComponentReleaseSpec{Component: "app", Train: "stable", Version: version(i),
					Image: "registry.example/app@" + digest, SignatureBundle: string(b)}})
		}
		if err != nil {
			firstErr.CompareAndSwap(nil, err)
		}
	})
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	newest := version(n - 1)
	if err := waitFor(ctx, cl, n, func(l trainyardv1.ReleaseTrain, verified int) bool {
		return l.Status.Latest != nil && l.Status.Latest.Version == newest
	}); err != nil {
		return err
	}
	fmt.Printf("published in %s; %s is latest (no policy yet)\n", time.Since(t0).Round(time.Millisecond), newest)

	count := func() float64 {
		v, err := benchenv.Scrape(metrics, "trainyard_release_verifications_total")
		if err != nil {
			return -1
		}
		return v
	}
	tp := &trainyardv1.TrustPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-signed"},
		Spec: trainyardv1.TrustPolicySpec{Components: []string{"app"}, Keys: []trainyardv1.SecretKeyRef{{Name: "cosign-pub", Key: "cosign.pub"}}}}
	before := count()
	t := time.Now()
	if err := cl.Create(ctx, tp); err != nil {
		return err
	}
	if err := waitFor(ctx, cl, n, func(l trainyardv1.ReleaseTrain, verified int) bool { return verified == n }); err != nil {
		return err
	}
	first := time.Since(t)
	firstCount := count() - before
	fmt.Printf("policy created: %d releases Verified after %s; verifications: %.0f\n", n, first.Round(time.Millisecond), firstCount)

	// A new generation: every release verified once more.
	if err := cl.Get(ctx, client.ObjectKeyFromObject(tp), tp); err != nil {
		return err
	}
	patch := client.MergeFrom(tp.DeepCopy())
	tp.Spec.Trains = []string{"stable"}
	before = count()
	t = time.Now()
	if err := cl.Patch(ctx, tp, patch); err != nil {
		return err
	}
	var second time.Duration
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if count()-before >= float64(n) {
			second = time.Since(t)
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the new generation verified %.0f of %d", count()-before, n)
		}
	}
	time.Sleep(2 * time.Second)
	secondCount := count() - before
	fmt.Printf("policy changed: %.0f verifications after %s\n", secondCount, second.Round(time.Millisecond))

	// More reconciles of the train (a release published): nothing verified again.
	before = count()
	m, digest := verificationtest.Manifest("0.0.1")
	b, err := key.Sign(m)
	if err != nil {
		return err
	}
	if err := cl.Create(ctx, &trainyardv1.ComponentRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ReleaseName("app", "stable", "0.0.1")},
		Spec: trainyardv1.ComponentReleaseSpec{Component: "app", Train: "stable", Version: "0.0.1", Image: "registry.example/app@" + digest, SignatureBundle: string(b)}}); err != nil {
		return err
	}
	if err := waitFor(ctx, cl, n+1, func(l trainyardv1.ReleaseTrain, verified int) bool { return verified == n+1 }); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	third := count() - before
	fmt.Printf("one more release: %.0f verifications (1 expected: only the new digest)\n", third)

	fmt.Printf("\nRESULT releases=%d\n", n)
	fmt.Printf("  a new policy: %d releases verified and written in %.2f s (target < 10 s); verifications %.0f (one per digest)\n", n, first.Seconds(), firstCount)
	fmt.Printf("  a new policy generation: %.0f verifications in %.2f s; one more release: %.0f verification\n", secondCount, second.Seconds(), third)
	return nil
}

// waitFor polls the train and counts its releases' Verified=True until ok.
func waitFor(ctx context.Context, cl client.Client, n int, ok func(trainyardv1.ReleaseTrain, int) bool) error {
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(250 * time.Millisecond) {
		train := trainyardv1.ReleaseTrain{}
		var rels trainyardv1.ComponentReleaseList
		if err := cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app.stable"}, &train); err == nil {
			if err := cl.List(ctx, &rels, client.InNamespace(ns)); err != nil {
				return err
			}
			verified := 0
			for i := range rels.Items {
				if c := meta.FindStatusCondition(rels.Items[i].Status.Conditions, trainyardv1.ConditionVerified); c != nil &&
					c.Status == metav1.ConditionTrue && c.ObservedGeneration == rels.Items[i].Generation {
					verified++
				}
			}
			if len(rels.Items) >= n && ok(train, verified) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for the train")
		}
	}
}
