package notify

import (
	"flag"
	"strings"
)

// Flags are the manager's notification flags.
type Flags struct {
	// Enabled: send the rules' events (on the leader only).
	Enabled bool
	// AllowedCIDRs: address ranges refused by default that deliveries may
	// reach all the same (comma-separated).
	AllowedCIDRs string
}

// BindFlags binds the flags to f, with their defaults.
func (f *Flags) BindFlags(fs *flag.FlagSet) {
	fs.BoolVar(&f.Enabled, "notifications", true,
		"Send the NotificationRules' events to their NotificationTargets (on the leader only).")
	fs.StringVar(&f.AllowedCIDRs, "notification-allowed-cidrs", "",
		"Address ranges notifications may go to although refused by default (loopback, link-local, the cloud metadata addresses, unspecified, multicast), e.g. 127.0.0.0/8. Private ranges are always allowed.")
}

// Options are the notifier's options that the flags say.
func (f Flags) Options() (Options, error) {
	d, err := ParseDestinations(strings.Split(f.AllowedCIDRs, ","))
	return Options{Destinations: d}, err
}
