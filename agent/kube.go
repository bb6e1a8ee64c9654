package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
)

// Kube is the agent's view of the workload cluster: REST clients for the
// few kinds it reads, and the informers that cache them. It is built on
// client-go alone, with a scheme of two API groups: controller-runtime's
// client registers all of client-go's groups, and that init code and its
// pages were most of the agent's memory (docs/performance.md).
type Kube struct {
	// Core and Apps are REST clients for the core/v1 and apps/v1 APIs.
	Core, Apps rest.Interface
	// Metadata reads any kind as metadata only; Dynamic any kind as
	// unstructured objects (a CRD's, such as Argo CD's Applications).
	Metadata metadata.Interface
	Dynamic  dynamic.Interface
	// Namespaces limits what namespaced kinds are cached and listed (all
	// when empty).
	Namespaces []string

	mu     sync.Mutex
	synced []toolscache.InformerSynced
	run    []func(stop <-chan struct{})
	nodes  *Cache
}

// NewKube builds the clients for the cluster at cfg.
func NewKube(cfg *rest.Config, namespaces []string) (*Kube, error) {
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := appsv1.AddToScheme(s); err != nil {
		return nil, err
	}
	codecs := serializer.NewCodecFactory(s).WithoutConversion()
	client := func(gv schema.GroupVersion, apiPath string) (rest.Interface, error) {
		c := rest.CopyConfig(cfg)
		c.GroupVersion = &gv
		c.APIPath = apiPath
		c.NegotiatedSerializer = codecs
		if c.UserAgent == "" {
			c.UserAgent = "trainyard-agent"
		}
		return rest.RESTClientFor(c)
	}
	k := &Kube{Namespaces: namespaces}
	var err error
	if k.Core, err = client(corev1.SchemeGroupVersion, "/api"); err != nil {
		return nil, err
	}
	if k.Apps, err = client(appsv1.SchemeGroupVersion, "/apis"); err != nil {
		return nil, err
	}
	if k.Metadata, err = metadata.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if k.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, err
	}
	return k, nil
}

// Kind is one kind a source caches: where it is served and how it is kept.
type Kind struct {
	// A core/v1 or apps/v1 kind is typed: Client and Resource serve it (for
	// example k.Apps, "deployments") and Object is an empty one.
	Client   rest.Interface
	Resource string
	Object   runtime.Object
	// Any other kind (Client nil) is named by its GVR and cached as
	// *unstructured.Unstructured (Kube.Dynamic), or with MetadataOnly as
	// *metav1.PartialObjectMetadata (Kube.Metadata).
	GVR          schema.GroupVersionResource
	MetadataOnly bool
	// Namespaced kinds are cached only in Kube.Namespaces when set.
	Namespaced bool
	// Selector selects what is cached (a label selector).
	Selector string
	// Transform slims each object before it is cached.
	Transform toolscache.TransformFunc
	// Reported is what a check-in takes from an object: an update that
	// leaves it as it was triggers none. Nil: every update triggers one.
	Reported func(obj any) string
}

// Cache is what a Kind's informers hold, across namespaces. Objects read
// from it are shared: read them, never change them.
type Cache struct{ stores []toolscache.Store }

// List is every cached object.
func (c *Cache) List() []any {
	if c == nil {
		return nil
	}
	var out []any
	for _, s := range c.stores {
		out = append(out, s.List()...)
	}
	return out
}

// Cache starts caching kind (one informer per namespace), calling changed
// when an object appears, goes, or changes what Reported says of it (not
// for the informers' initial lists, which the first check-in reports). The
// informers run from Sync on.
func (k *Kube) Cache(kind Kind, changed func()) (*Cache, error) {
	namespaces := []string{metav1.NamespaceAll}
	if kind.Namespaced && len(k.Namespaces) > 0 {
		namespaces = k.Namespaces
	}
	handler := toolscache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(_ any, initial bool) {
			if !initial {
				changed()
			}
		},
		UpdateFunc: func(old, cur any) {
			if kind.Reported == nil || kind.Reported(old) != kind.Reported(cur) {
				changed()
			}
		},
		DeleteFunc: func(any) { changed() },
	}
	c := &Cache{}
	for _, ns := range namespaces {
		lw, obj := k.listWatch(kind, ns)
		inf := toolscache.NewSharedIndexInformer(lw, obj, 0, toolscache.Indexers{})
		if kind.Transform != nil {
			if err := inf.SetTransform(kind.Transform); err != nil {
				return nil, err
			}
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return nil, err
		}
		c.stores = append(c.stores, inf.GetStore())
		k.mu.Lock()
		k.synced = append(k.synced, inf.HasSynced)
		k.run = append(k.run, inf.Run)
		k.mu.Unlock()
	}
	return c, nil
}

func (k *Kube) listWatch(kind Kind, ns string) (*toolscache.ListWatch, runtime.Object) {
	tweak := func(o *metav1.ListOptions) { o.LabelSelector = kind.Selector }
	if kind.Client != nil {
		return toolscache.NewFilteredListWatchFromClient(kind.Client, kind.Resource, ns, tweak), kind.Object
	}
	var list func(context.Context, metav1.ListOptions) (runtime.Object, error)
	var watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error)
	var obj runtime.Object
	if kind.MetadataOnly {
		r := k.Metadata.Resource(kind.GVR)
		var ri metadata.ResourceInterface = r
		if ns != metav1.NamespaceAll {
			ri = r.Namespace(ns)
		}
		list = func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return ri.List(ctx, o) }
		watchFn, obj = ri.Watch, &metav1.PartialObjectMetadata{}
	} else {
		r := k.Dynamic.Resource(kind.GVR)
		var ri dynamic.ResourceInterface = r
		if ns != metav1.NamespaceAll {
			ri = r.Namespace(ns)
		}
		list = func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return ri.List(ctx, o) }
		watchFn, obj = ri.Watch, &unstructured.Unstructured{}
	}
	return &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			return list(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			return watchFn(ctx, o)
		},
	}, obj
}

// SyncTimeout bounds the wait for the caches' initial lists (as
// controller-runtime's CacheSyncTimeout): a list that keeps failing (RBAC
// missing for a source) ends the agent with an error instead of leaving
// it unready for ever.
const SyncTimeout = 2 * time.Minute

// Sync runs every informer asked for so far until ctx ends, and waits up to
// SyncTimeout for their initial lists.
func (k *Kube) Sync(ctx context.Context) error {
	k.mu.Lock()
	run, synced := k.run, k.synced
	k.run = nil
	k.mu.Unlock()
	for _, r := range run {
		go r(ctx.Done())
	}
	wait, cancel := context.WithTimeout(ctx, SyncTimeout)
	defer cancel()
	if !toolscache.WaitForCacheSync(wait.Done(), synced...) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("the workload cluster's caches did not sync within %s: can the agent list and watch what its sources read (see its RBAC and the log above)?", SyncTimeout)
	}
	return nil
}

// HasSynced says whether every informer asked for has its initial list.
func (k *Kube) HasSynced() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, s := range k.synced {
		if !s() {
			return false
		}
	}
	return len(k.run) == 0
}

// get reads one object of the core API.
func (k *Kube) get(ctx context.Context, resource, name string, into runtime.Object) error {
	return k.Core.Get().Resource(resource).Name(name).Timeout(30 * time.Second).Do(ctx).Into(into)
}

// errNotSynced is a check-in before Sync.
var errNotSynced = fmt.Errorf("the agent's caches have not synced (call Start or Sync first)")
