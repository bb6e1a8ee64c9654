package notify

import "github.com/trainyard-dev/trainyard/internal/egress"

// Destinations decides which addresses the manager may send notifications
// to. A NotificationTarget's URL is written by whoever may edit a Secret in
// a tenant's namespace: the check is internal/egress's.
type Destinations = egress.Destinations

// errDestination is a refused address.
type errDestination = egress.RefusedError

// ParseDestinations reads the manager's --notification-allowed-cidrs.
func ParseDestinations(cidrs []string) (Destinations, error) {
	return egress.Parse(purpose, "--notification-allowed-cidrs", cidrs)
}

const purpose = "notification receivers"

// destinations fills in the purpose of a Destinations made by hand (a test's).
func destinations(d Destinations) Destinations {
	if d.Purpose == "" {
		d.Purpose, d.Flag = purpose, "--notification-allowed-cidrs"
	}
	return d
}
