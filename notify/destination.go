package notify

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// Destinations decides which addresses the manager may send notifications
// to. A NotificationTarget's URL is written by whoever may edit a Secret in
// a tenant's namespace; without this, the manager would POST to its own
// ports, the node's, or the cloud's metadata service, and the target's
// status would tell what listens where.
//
// The check is made on the address actually dialled (after DNS, on every
// connection), so a name that resolves to a public address first and to
// 127.0.0.1 later (DNS rebinding) is refused too. In-cluster private ranges
// (10/8, 172.16/12, 192.168/16, fc00::/7) stay allowed: receivers live there.
type Destinations struct {
	// Allowed are ranges let through although refused by default (a
	// receiver on the node's loopback in a test, a link-local proxy).
	Allowed []netip.Prefix
}

// refused are the ranges no notification goes to unless allowed, with the
// reason an operator reads.
var refused = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (the cloud metadata service lives there)"},
	{netip.MustParsePrefix("100.100.100.200/32"), "a cloud metadata service"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fd00:ec2::254/128"), "a cloud metadata service"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// ParseDestinations reads the manager's --notification-allowed-cidrs.
func ParseDestinations(cidrs []string) (Destinations, error) {
	var d Destinations
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return d, fmt.Errorf("--notification-allowed-cidrs: %q is not a CIDR (e.g. 127.0.0.0/8)", c)
		}
		d.Allowed = append(d.Allowed, p.Masked())
	}
	return d, nil
}

// check refuses an address in a refused range, unless allowed.
func (d Destinations) check(ip netip.Addr) error {
	ip = ip.Unmap()
	for _, a := range d.Allowed {
		if a.Contains(ip) {
			return nil
		}
	}
	for _, r := range refused {
		if r.prefix.Contains(ip) {
			return errDestination{addr: ip, why: r.why}
		}
	}
	return nil
}

// errDestination is a refused address: a configuration the user can fix.
type errDestination struct {
	addr netip.Addr
	why  string
}

func (e errDestination) Error() string {
	return fmt.Sprintf("refused to connect to %s: %s addresses are not notification receivers "+
		"(the manager's --notification-allowed-cidrs can allow a range)", e.addr, e.why)
}

// dialer connects only to allowed addresses: the check runs on each
// connection's resolved address, before it is made.
func (d Destinations) dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("refused to connect to %q: not an IP address", address)
			}
			return d.check(ap.Addr())
		}}
}
