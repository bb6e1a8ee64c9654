package manager

import (
	"context"
	"fmt"
	"net/http"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"github.com/trainyard-dev/trainyard/bridge"
	"github.com/trainyard-dev/trainyard/controllers"
	"github.com/trainyard-dev/trainyard/internal/index"
	"github.com/trainyard-dev/trainyard/notify"
)

// A Setup registers a part of trainyard with a manager. The manager's
// process runs SetupIndexes, SetupControllers, SetupNotifications,
// SetupWebhooks, SetupBridge and SetupProbes in that order; `trainyard
// bridge` only the bridge's indexes, SetupBridge and its probes; test
// suites the parts they test (internal/testenv takes Setups).
type Setup = func(ctx context.Context, mgr ctrl.Manager) error

// SetupIndexes registers the field indexes (every one, or those named):
// the controllers, the webhook and the bridge read through them.
func SetupIndexes(only ...string) Setup {
	return func(ctx context.Context, mgr ctrl.Manager) error {
		if err := index.Setup(ctx, mgr.GetFieldIndexer(), only...); err != nil {
			return fmt.Errorf("field indexes: %w", err)
		}
		return nil
	}
}

// SetupControllers registers the ReleaseTrain, ClusterReport and
// promotion controllers.
func SetupControllers(o controllers.Options) Setup {
	return func(_ context.Context, mgr ctrl.Manager) error {
		if err := controllers.Setup(mgr, o); err != nil {
			return fmt.Errorf("setting up controllers: %w", err)
		}
		return nil
	}
}

// SetupNotifications registers the notifier and its status controllers.
func SetupNotifications(o notify.Options) Setup {
	return func(_ context.Context, mgr ctrl.Manager) error {
		if err := notify.Setup(mgr, o); err != nil {
			return fmt.Errorf("setting up notifications: %w", err)
		}
		return nil
	}
}

// SetupBridge registers the bridge and its watches with mgr, whose cache
// has the bridge's field indexes (index.Bridge): the manager's process
// (single-binary installs) or the bridge's own.
func SetupBridge(o bridge.Options) Setup {
	return func(ctx context.Context, mgr ctrl.Manager) error {
		b := bridge.New(mgr.GetClient(), mgr.GetClient(), mgr.GetAPIReader(), o)
		if err := b.Watch(ctx, mgr.GetCache()); err != nil {
			return err
		}
		return mgr.Add(b)
	}
}

// SetupProbes adds /healthz and /readyz: alive while the process runs,
// ready once the cache has synced (a replica that answered from an empty
// cache would say "no such cluster" to a registered one) and, where the
// webhook is served, once its server has started.
func SetupProbes(webhookServed bool) Setup {
	return func(_ context.Context, mgr ctrl.Manager) error {
		if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
			return err
		}
		if webhookServed {
			if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
				return err
			}
		}
		return mgr.AddReadyzCheck("cache", func(req *http.Request) error {
			if !mgr.GetCache().WaitForCacheSync(req.Context()) {
				return fmt.Errorf("the cache has not synced")
			}
			return nil
		})
	}
}

// WebhookOnly is what a replica that serves only the admission webhook
// sets up: the field indexes its checks read, and the webhooks.
func WebhookOnly() []Setup { return []Setup{SetupIndexes(), SetupWebhooks} }

// run applies the setups in order.
func run(ctx context.Context, mgr ctrl.Manager, setups ...Setup) error {
	for _, s := range setups {
		if err := s(ctx, mgr); err != nil {
			return err
		}
	}
	return nil
}
