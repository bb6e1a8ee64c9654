package webhook

import (
	"github.com/trainyard-dev/trainyard/internal/validation"
)

// The rules the webhook applies are the pure functions of
// internal/validation, which the bridge applies too.
var (
	ValidateComponentRelease = validation.ComponentRelease
	ValidateReleaseTrain     = validation.ReleaseTrain
	ValidateClusterReport    = validation.ClusterReport
	ValidateLabel            = validation.Label
	ValidateVersion          = validation.Version
	ValidateClusterID        = validation.ClusterID
)

// The notification kinds' rules, also in internal/validation.
var (
	ValidateNotificationTarget = validation.NotificationTarget
	ValidateNotificationRule   = validation.NotificationRule
)
