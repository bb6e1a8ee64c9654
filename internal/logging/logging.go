// Package logging builds the one logger of a trainyard process from the
// --zap-* flags and hands it to everything that logs: controller-runtime,
// and client-go's klog (leader election, reflectors, the request
// throttling notices), so that --zap-encoder=json output is JSON throughout.
package logging

import (
	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Setup builds the logger from the flags' options (and any more options,
// such as zap.WriteTo in a test) and installs it as controller-runtime's and
// klog's. klog's own verbosity still decides which of its V(n) lines reach
// it.
func Setup(flags *zap.Options, more ...zap.Opts) logr.Logger {
	logger := zap.New(append([]zap.Opts{zap.UseFlagOptions(flags)}, more...)...)
	ctrl.SetLogger(logger)
	klog.SetLogger(logger.WithName("klog"))
	return logger
}
