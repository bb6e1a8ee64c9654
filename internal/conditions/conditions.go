// Package conditions sets the kstatus conditions (Ready, Reconciling,
// Stalled) and per-kind conditions on a status, so that Argo CD, Flux and
// kstatus-based tools read every trainyard object the same way.
package conditions

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// Set sets one condition; its lastTransitionTime changes only when its
// status does (meta.SetStatusCondition's rule), so re-setting an unchanged
// condition leaves the status equal and the reconcile writes nothing.
func Set(conds *[]metav1.Condition, generation int64, typ string, status bool, reason, message string) {
	s := metav1.ConditionFalse
	if status {
		s = metav1.ConditionTrue
	}
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: typ, Status: s, ObservedGeneration: generation, Reason: reason, Message: message,
	})
}

// MarkReady says the status reflects the spec: Ready=True, and neither
// Reconciling nor Stalled (kstatus reads their absence as False).
func MarkReady(conds *[]metav1.Condition, generation int64, reason, message string) {
	Set(conds, generation, trainyardv1.ConditionReady, true, reason, message)
	meta.RemoveStatusCondition(conds, trainyardv1.ConditionReconciling)
	meta.RemoveStatusCondition(conds, trainyardv1.ConditionStalled)
}

// MarkStalled says progress needs a human: Ready=False and Stalled=True with
// the same reason and message.
func MarkStalled(conds *[]metav1.Condition, generation int64, reason, message string) {
	Set(conds, generation, trainyardv1.ConditionReady, false, reason, message)
	Set(conds, generation, trainyardv1.ConditionStalled, true, reason, message)
	meta.RemoveStatusCondition(conds, trainyardv1.ConditionReconciling)
}

// IsTrue tells whether the condition of that type is present and True.
func IsTrue(conds []metav1.Condition, typ string) bool {
	return meta.IsStatusConditionTrue(conds, typ)
}

// IsFalse tells whether the condition of that type is present and False.
func IsFalse(conds []metav1.Condition, typ string) bool {
	return meta.IsStatusConditionFalse(conds, typ)
}
