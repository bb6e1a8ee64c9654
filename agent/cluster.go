package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"
)

// What the agent reads to name and describe the cluster, cluster-wide, and
// only reads. Every discovery source (agent/source/...) has a role of its own.
// +kubebuilder:rbac:groups="",resources=namespaces;nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=about.k8s.io,resources=clusterproperties,verbs=get;list;watch

// ClusterID is the ID the agent reports: explicit, else the About API's
// ClusterProperty cluster.clusterset.k8s.io, else the kube-system
// namespace's UID (stable across agent restarts and reinstalls).
func ClusterID(ctx context.Context, k *Kube, explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	raw, err := k.Core.Get().AbsPath("/apis/about.k8s.io/v1alpha1/clusterproperties/cluster.clusterset.k8s.io").DoRaw(ctx)
	if err == nil {
		var cp struct {
			Spec struct {
				Value string `json:"value"`
			} `json:"spec"`
		}
		if json.Unmarshal(raw, &cp) == nil && cp.Spec.Value != "" {
			return cp.Spec.Value, nil
		}
	}
	ns := &corev1.Namespace{}
	if err := k.get(ctx, "namespaces", metav1.NamespaceSystem, ns); err != nil {
		return "", fmt.Errorf("no cluster ID configured and the kube-system namespace cannot be read: %w", err)
	}
	return string(ns.UID), nil
}

// ServerVersion is the cluster's Kubernetes version (GET /version, as
// client-go's discovery client reads it, which links every API group).
func (k *Kube) ServerVersion(ctx context.Context) (string, error) {
	raw, err := k.Core.Get().AbsPath("/version").Timeout(30 * time.Second).DoRaw(ctx)
	if err != nil {
		return "", err
	}
	var info version.Info
	if err := json.Unmarshal(raw, &info); err != nil {
		return "", fmt.Errorf("reading /version: %w", err)
	}
	return info.GitVersion, nil
}

// cacheNodes caches the nodes as Properties reads them.
func (k *Kube) cacheNodes() (*Cache, error) {
	k.mu.Lock()
	c := k.nodes
	k.mu.Unlock()
	if c != nil {
		return c, nil
	}
	// A node joining or leaving triggers no check-in: the count can wait
	// for the next one.
	c, err := k.Cache(Kind{Client: k.Core, Resource: "nodes", Object: &corev1.Node{}, Transform: slimNode,
		Reported: func(any) string { return "" }}, func() {})
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.nodes = c
	k.mu.Unlock()
	return c, nil
}

// Properties describe the workload cluster: its Kubernetes version (when
// serverVersion is given), node count, and provider (the most common prefix
// of the nodes' spec.providerID, such as "aws" or "gce"). The nodes are
// read from the cache once synced, else listed.
func Properties(ctx context.Context, k *Kube, serverVersion func() (string, error)) (map[string]string, error) {
	props := map[string]string{}
	if serverVersion != nil {
		if v, err := serverVersion(); err == nil && v != "" {
			props["kubernetesVersion"] = v
		}
	}
	var nodes []*corev1.Node
	k.mu.Lock()
	cached := k.nodes
	k.mu.Unlock()
	if cached != nil && k.HasSynced() {
		for _, o := range cached.List() {
			if n, ok := o.(*corev1.Node); ok {
				nodes = append(nodes, n)
			}
		}
	} else {
		var list corev1.NodeList
		if err := k.Core.Get().Resource("nodes").Do(ctx).Into(&list); err != nil {
			return nil, err
		}
		for i := range list.Items {
			nodes = append(nodes, &list.Items[i])
		}
	}
	props["nodes"] = strconv.Itoa(len(nodes))
	count := map[string]int{}
	for _, n := range nodes {
		if p, _, ok := strings.Cut(n.Spec.ProviderID, "://"); ok && p != "" {
			count[p]++
		}
	}
	best := ""
	for p, n := range count {
		if best == "" || n > count[best] || (n == count[best] && p < best) {
			best = p
		}
	}
	if best != "" {
		props["provider"] = best
	}
	return props, nil
}

// slimNode keeps only what Properties reads of a Node.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, ResourceVersion: n.ResourceVersion, UID: n.UID},
		Spec: corev1.NodeSpec{ProviderID: n.Spec.ProviderID}}, nil
}
