package controllers

import (
	"context"
	"encoding/json"
	"slices"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// reconcileLabels keeps the report's stale label (trainyardv1.LabelStale)
// in line with its status, in a patch made only when it flips (a label
// write is a write apart from the status). The same patch removes the
// status labels an earlier manager kept (trainyardv1.RetiredStatusLabels)
// and clears the report's managedFields when it still has them (a report
// stored before trainyard cleared them at creation, see the report
// webhook): from then on the API server keeps none for it.
func (r *ClusterReportReconciler) reconcileLabels(ctx context.Context, rep *trainyardv1.ClusterReport, stale bool) error {
	changes := map[string]any{}
	switch v, has := rep.Labels[trainyardv1.LabelStale]; {
	case stale && v != "true":
		changes[trainyardv1.LabelStale] = "true"
	case !stale && has:
		changes[trainyardv1.LabelStale] = nil // a merge patch's null removes the key
	}
	for _, k := range trainyardv1.RetiredStatusLabels {
		if _, has := rep.Labels[k]; has {
			changes[k] = nil
		}
	}
	resetFields := len(rep.ManagedFields) > 0
	if len(changes) == 0 && !resetFields {
		return nil
	}
	md := map[string]any{}
	if len(changes) > 0 {
		md["labels"] = changes
	}
	if resetFields {
		// The documented way to clear them: a single empty entry.
		md["managedFields"] = []map[string]any{{}}
	}
	data, err := json.Marshal(map[string]any{"metadata": md})
	if err != nil {
		return err
	}
	patched := &trainyardv1.ClusterReport{}
	patched.Namespace, patched.Name = rep.Namespace, rep.Name
	if err := r.Patch(ctx, patched, client.RawPatch(types.MergePatchType, data)); err != nil {
		return err
	}
	r.own.record(types.NamespacedName{Namespace: rep.Namespace, Name: rep.Name}, rep.ResourceVersion, patched.ResourceVersion)
	return nil
}

// sameUserLabels tells whether two label sets are the same but for the
// status labels, which follow the status (a ring selects on users' labels;
// a report's status labels changing is no news to it).
func sameUserLabels(a, b map[string]string) bool {
	for k, v := range a {
		if w, ok := b[k]; !isStatusLabel(k) && (!ok || w != v) {
			return false
		}
	}
	for k := range b {
		if _, ok := a[k]; !isStatusLabel(k) && !ok {
			return false
		}
	}
	return true
}

func isStatusLabel(k string) bool {
	return slices.Contains(trainyardv1.StatusLabels, k) || slices.Contains(trainyardv1.RetiredStatusLabels, k)
}
