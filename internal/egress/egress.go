// Package egress decides which addresses the manager may connect to when a
// user's object names the address: a NotificationTarget's receiver, a
// release image's registry. Without it, the manager would connect to its
// own ports, the node's, or the cloud's metadata service on a user's
// behalf, and report what it found.
package egress

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// Destinations decides which addresses the manager may connect to for one
// purpose.
//
// The check is made on the address actually dialled (after DNS, on every
// connection), so a name that resolves to a public address first and to
// 127.0.0.1 later (DNS rebinding) is refused too. In-cluster private ranges
// (10/8, 172.16/12, 192.168/16, fc00::/7) stay allowed: receivers live there.
type Destinations struct {
	// Allowed are ranges let through although refused by default (a
	// receiver on the node's loopback in a test, a link-local proxy).
	Allowed []netip.Prefix
	// Purpose names what is connected to ("notification receivers"), and
	// Flag the option that allows a range, for the refusal's message.
	Purpose, Flag string
}

// refused are the ranges not connected to unless allowed, with the reason
// an operator reads.
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

// Parse reads the ranges allowed by flag for purpose.
func Parse(purpose, flag string, cidrs []string) (Destinations, error) {
	d := Destinations{Purpose: purpose, Flag: flag}
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return d, fmt.Errorf("%s: %q is not a CIDR (e.g. 127.0.0.0/8)", flag, c)
		}
		d.Allowed = append(d.Allowed, p.Masked())
	}
	return d, nil
}

// Check refuses an address in a refused range, unless allowed.
func (d Destinations) Check(ip netip.Addr) error {
	ip = ip.Unmap()
	for _, a := range d.Allowed {
		if a.Contains(ip) {
			return nil
		}
	}
	for _, r := range refused {
		if r.prefix.Contains(ip) {
			return RefusedError{Addr: ip, why: r.why, d: d}
		}
	}
	return nil
}

// RefusedError is a refused address: a configuration the user can fix.
type RefusedError struct {
	Addr netip.Addr
	why  string
	d    Destinations
}

func (e RefusedError) Error() string {
	msg := fmt.Sprintf("refused to connect to %s: %s addresses are not %s", e.Addr, e.why, e.d.Purpose)
	if e.d.Flag != "" {
		msg += fmt.Sprintf(" (the manager's %s can allow a range)", e.d.Flag)
	}
	return msg
}

// Dialer connects only to allowed addresses: the check runs on each
// connection's resolved address, before it is made.
func (d Destinations) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("refused to connect to %q: not an IP address", address)
			}
			return d.Check(ap.Addr())
		}}
}
