package checkin

import (
	"context"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// restReports reads and writes ClusterReports straight through the API
// server, with client-go's REST client and a scheme of trainyard's kinds
// only: what the agent's direct mode links.
type restReports struct{ c rest.Interface }

// RESTReports reads and writes the ClusterReports of the API server at cfg,
// with no cache: every Get is fresh.
func RESTReports(cfg *rest.Config) (Reports, error) {
	s := runtime.NewScheme()
	if err := trainyardv1.AddToScheme(s); err != nil {
		return nil, err
	}
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &trainyardv1.GroupVersion
	c.APIPath = "/apis"
	c.NegotiatedSerializer = serializer.NewCodecFactory(s).WithoutConversion()
	c.ContentType = runtime.ContentTypeJSON
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, err
	}
	return restReports{c: rc}, nil
}

const resource = "clusterreports"

func (r restReports) Get(ctx context.Context, key types.NamespacedName, _ bool) (*trainyardv1.ClusterReport, error) {
	out := &trainyardv1.ClusterReport{}
	err := r.c.Get().Namespace(key.Namespace).Resource(resource).Name(key.Name).Do(ctx).Into(out)
	return out, err
}

func (r restReports) Create(ctx context.Context, rep *trainyardv1.ClusterReport) error {
	return r.c.Post().Namespace(rep.Namespace).Resource(resource).Body(rep).Do(ctx).Into(rep)
}

func (r restReports) Patch(ctx context.Context, rep *trainyardv1.ClusterReport, status bool, patch []byte) error {
	req := r.c.Patch(types.MergePatchType).Namespace(rep.Namespace).Resource(resource).Name(rep.Name)
	if status {
		req = req.SubResource("status")
	}
	return req.Body(patch).Do(ctx).Into(rep)
}
