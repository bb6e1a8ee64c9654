package notify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// noTargetRetry is how soon a delivery whose target or Secret is missing
// is looked at again.
const noTargetRetry = 30 * time.Second

// secretTimeout bounds the read of a target's Secret at each attempt.
const secretTimeout = 10 * time.Second

// kickTargetLocked makes sure a worker delivers a target's queue: one
// goroutine per target with deliveries, so a slow receiver holds up only
// its own, and each target's deliveries go out in order.
func (n *Notifier) kickTargetLocked(tkey types.NamespacedName) {
	if n.ctx == nil || n.ctx.Err() != nil {
		return // Start kicks the targets with queued deliveries; a stopping leader starts none
	}
	if wake, ok := n.running[tkey]; ok {
		select {
		case wake <- struct{}{}:
		default:
		}
		return
	}
	wake := make(chan struct{}, 1)
	n.running[tkey] = wake
	n.workers.Add(1)
	go func() {
		defer n.workers.Done()
		n.work(n.ctx, tkey, wake)
	}()
}

// work delivers a target's queue, due entries first, until it is empty.
func (n *Notifier) work(ctx context.Context, tkey types.NamespacedName, wake chan struct{}) {
	for {
		n.mu.Lock()
		rs, e := n.nextLocked(tkey)
		if e == nil || ctx.Err() != nil {
			delete(n.running, tkey)
			n.mu.Unlock()
			return
		}
		wait := time.Until(e.next)
		id, ruleKey := e.ID, rs.key
		n.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-wake:
				t.Stop()
			case <-ctx.Done():
				t.Stop()
			}
			continue
		}
		n.attempt(ctx, tkey, ruleKey, id)
	}
}

// nextLocked finds the target's entry due first: the oldest queued among
// the earliest due.
func (n *Notifier) nextLocked(tkey types.NamespacedName) (*ruleState, *entry) {
	var best *entry
	var bestRule *ruleState
	for key, rs := range n.rules {
		if key.Namespace != tkey.Namespace || rs.spec.TargetRef.Name != tkey.Name {
			continue
		}
		for _, e := range rs.queue {
			if best == nil || e.next.Before(best.next) ||
				(e.next.Equal(best.next) && e.Queued.Before(&best.Queued)) {
				best, bestRule = e, rs
			}
		}
	}
	return bestRule, best
}

// attempt makes one delivery attempt and records its outcome. Losing the
// leadership does not cut it short: the receiver may already have accepted
// it, and only a recorded delivery is not sent again by the next leader.
// The target's timeout bounds it (and the Secret's read, secretTimeout).
func (n *Notifier) attempt(ctx context.Context, tkey, ruleKey types.NamespacedName, id string) {
	ctx = context.WithoutCancel(ctx)
	n.mu.Lock()
	rs := n.rules[ruleKey]
	var e *entry
	if rs != nil {
		if i := slices.IndexFunc(rs.queue, func(q *entry) bool { return q.ID == id }); i >= 0 {
			e = rs.queue[i]
		}
	}
	n.mu.Unlock()
	if e == nil {
		return
	}

	var target trainyardv1.NotificationTarget
	if err := n.client.Get(ctx, tkey, &target); err != nil {
		n.waitForTarget(rs, e, fmt.Sprintf("NotificationTarget %s: %v", tkey.Name, err))
		return
	}
	sctx, cancel := context.WithTimeout(ctx, secretTimeout)
	rc, err := n.receiver(sctx, &target)
	cancel()
	var o outcome
	start := time.Now()
	if err != nil {
		o = outcome{err: err, retry: true}
	} else {
		body, ctype, berr := Body(target.Spec.Type, e.Event)
		if berr != nil {
			o = outcome{err: berr} // cannot get better: drop it
		} else {
			o = rc.post(ctx, e.ID, ctype, body, start)
			duration.WithLabelValues(tkey.Namespace, tkey.Name).Observe(time.Since(start).Seconds())
		}
	}
	n.record(&target, tkey, rs, e, o, start, time.Now())
}

// waitForTarget postpones an entry whose target cannot be read.
func (n *Notifier) waitForTarget(rs *ruleState, e *entry, msg string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	e.next = now.Add(noTargetRetry)
	rs.lastError = &trainyardv1.DeliveryAttempt{Time: metav1.NewTime(now), ID: e.ID, Type: e.Type, Message: msg}
	n.ruleKicks.kick(rs.key)
}

// receiver reads the target's Secret at each attempt (uncached, so the
// manager needs only get on Secrets, and a rotated URL applies at once).
func (n *Notifier) receiver(ctx context.Context, t *trainyardv1.NotificationTarget) (*receiver, error) {
	var s corev1.Secret
	key := types.NamespacedName{Namespace: t.Namespace, Name: t.Spec.SecretRef.Name}
	if err := n.reader.Get(ctx, key, &s); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return nil, errConfig{fmt.Sprintf("Secret %s not found", key.Name)}
		case apierrors.IsForbidden(err):
			return nil, errConfig{fmt.Sprintf("the manager may not read Secret %s in namespace %s "+
				"(add the namespace to the chart's notifications.namespaces)", key.Name, key.Namespace)}
		}
		return nil, err
	}
	return resolve(&s, deliveryTimeout(&t.Spec), n.dest)
}

func deliveryTimeout(spec *trainyardv1.NotificationTargetSpec) time.Duration {
	if spec.Timeout != nil && spec.Timeout.Duration > 0 {
		return spec.Timeout.Duration
	}
	d, _ := time.ParseDuration(trainyardv1.DefaultDeliveryTimeout)
	return d
}

func retryFor(spec *trainyardv1.NotificationTargetSpec) time.Duration {
	if spec.RetryFor != nil && spec.RetryFor.Duration > 0 {
		return spec.RetryFor.Duration
	}
	d, _ := time.ParseDuration(trainyardv1.DefaultRetryFor)
	return d
}

// record applies an attempt's outcome to the rule's queue and both
// objects' records: the attempt made at at, answered at answered (a
// Retry-After counts from the answer, not from the request).
func (n *Notifier) record(t *trainyardv1.NotificationTarget, tkey types.NamespacedName, rs *ruleState, e *entry, o outcome, at, answered time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ts := n.targetLocked(tkey)
	defer n.ruleKicks.kick(rs.key)
	defer n.targetKicks.kick(tkey)
	rec := &trainyardv1.DeliveryAttempt{Time: metav1.NewTime(at), ID: e.ID, Type: e.Type, StatusCode: int32(o.code)}
	remove := func() {
		rs.queue = slices.DeleteFunc(rs.queue, func(q *entry) bool { return q == e })
	}
	if o.err == nil {
		remove()
		rs.counts.Delivered++
		ts.counts.Delivered++
		rs.lastDelivery, ts.lastDelivery = rec, rec
		rs.recent = append(rs.recent, e.ID)
		if len(rs.recent) > maxRecent {
			rs.recent = slices.Clone(rs.recent[len(rs.recent)-maxRecent:])
		}
		deliveries.WithLabelValues(tkey.Namespace, tkey.Name, "delivered").Inc()
		return
	}
	rec.Message = o.err.Error()
	e.Attempts++
	var cfg errConfig
	isConfig := errors.As(o.err, &cfg)
	wait := o.retryAfter
	if wait == 0 {
		wait = backoff(e.Attempts)
	}
	next := answered.Add(wait)
	deadline := e.Queued.Add(retryFor(&t.Spec))
	switch {
	case !o.retry:
		rec.Message = fmt.Sprintf("dropped: %s", rec.Message)
	case next.After(deadline):
		rec.Message = fmt.Sprintf("dropped after %d attempts (retryFor %s): %s", e.Attempts, retryFor(&t.Spec), rec.Message)
	default:
		e.next = next
		mt := metav1.NewMicroTime(next)
		e.NextAttempt = &mt
		rs.counts.Retried++
		ts.counts.Retried++
		rs.lastError, ts.lastError = rec, rec
		deliveries.WithLabelValues(tkey.Namespace, tkey.Name, "retried").Inc()
		if !isConfig {
			n.log.V(1).Info("delivery failed, will retry", "target", tkey, "id", e.ID, "in", wait, "error", o.err)
		}
		return
	}
	remove()
	rs.counts.Dropped++
	ts.counts.Dropped++
	rs.lastError, ts.lastError = rec, rec
	deliveries.WithLabelValues(tkey.Namespace, tkey.Name, "dropped").Inc()
	n.log.Info("notification dropped", "target", tkey, "rule", rs.key, "id", e.ID, "error", rec.Message)
}
