package bridge

import (
	"flag"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/trainyard-dev/trainyard/internal/checkin"
	"github.com/trainyard-dev/trainyard/internal/cliflag"
)

// Flags are the bridge's command-line flags, bound next to the options
// they set: `trainyard bridge` serves the bridge on its own, and the
// manager can still serve it in the same process (--bridge-bind-address).
type Flags struct {
	Options
	tenants, trustedProxies, maxTokenLifetime string
	doctorPerMinute                           float64
}

// Bind adds the bridge's flags to fs; defaultAddr is --bridge-bind-address's
// default.
func (f *Flags) Bind(fs *flag.FlagSet, defaultAddr string) {
	b := &f.Options
	fs.StringVar(&b.Addr, "bridge-bind-address", defaultAddr, "Address of the check-in bridge (the Deis workflow-manager API); \"0\" disables it.")
	fs.StringVar(&b.Namespace, "bridge-namespace", "", "Namespace of the bridge's ClusterReports, ComponentReleases and doctor Secrets (default --namespace, else \"default\").")
	fs.DurationVar(&b.Heartbeat, "bridge-heartbeat", 0,
		"Persist interval: a check-in that changes nothing is written when the stored lastSeen is this old, else held in memory "+
			"(and served from there); 0: a 25th of --stale-threshold (1h at the default 25h).")
	fs.StringVar(&b.DoctorAuthSecret, "bridge-doctor-secret", "trainyard-doctor-auth",
		"Secret (keys username, password) of the basic-auth credentials that may read doctor reports.")
	fs.StringVar(&b.CheckInAuth, "bridge-checkin-auth", CheckInToken,
		"token: a registration token from --bridge-registration-secret registers a cluster and gets its own credential, which its check-ins then present; "+
			"open: anonymous check-ins as the old service took them (for legacy agents that cannot send a header).")
	fs.StringVar(&b.RegistrationSecret, "bridge-registration-secret", "trainyard-registration",
		"Secret in each tenant's namespace whose every value is a registration token.")
	fs.BoolVar(&b.ReadAuth, "bridge-read-auth", false,
		"Require a cluster credential or registration token of the tenant, or a token RBAC lets list clusterreports in its namespace, for reads too.")
	fs.StringVar(&f.tenants, "bridge-tenants", "",
		"Comma-separated namespaces served as tenants under /tenants/<namespace>/ (the bridge namespace is the default tenant, without a prefix).")
	fs.BoolVar(&b.LegacyTokenBinding, "bridge-legacy-token-binding", false,
		"Also let the registration token a cluster first checked in with keep checking it in (agents that cannot store a credential, as Deis agents); "+
			"rotating that token then locks them out.")
	fs.StringVar(&f.maxTokenLifetime, "registration-token-max-lifetime", "720h",
		"Expiry stamped on a registration token first seen without one; \"never\" lets tokens never expire.")
	fs.DurationVar(&b.CredentialOverlap, "bridge-credential-overlap", time.Hour,
		"How long a cluster credential replaced by a rotation stays valid.")
	fs.IntVar(&b.MaxClustersPerTenant, "bridge-max-clusters-per-tenant", 50000,
		"Clusters that can register in one tenant (the annotation trainyard.dev/max-clusters on its registration Secret overrides it); beyond: 403.")
	fs.Float64Var(&b.TenantRateLimit, "bridge-tenant-rate-limit", 500, "Requests per second one tenant's clients may send together; beyond: 429.")
	fs.IntVar(&b.TenantRateBurst, "bridge-tenant-rate-burst", 1000, "Burst above --bridge-tenant-rate-limit.")
	fs.Float64Var(&b.RateLimit, "bridge-rate-limit", 20, "Requests per second each bridge client (bearer token, else source address) may send; beyond: 429 with Retry-After.")
	fs.IntVar(&b.RateBurst, "bridge-rate-burst", 40, "Burst above --bridge-rate-limit.")
	fs.IntVar(&b.MaxInFlight, "bridge-max-in-flight", 512,
		"Concurrent bridge requests, shared out between the priority levels (cluster 50%, publisher 10%, registration 20%, anonymous 20%); "+
			"beyond a level's share, its requests queue fairly for up to 2s, then 429 with Retry-After.")
	fs.Int64Var(&b.MaxBodyBytes, "bridge-max-body-bytes", 64<<20,
		"Request body bytes the requests being served may hold together, shared out between the priority levels "+
			"(cluster 50%, publisher 20%, registration 20%, anonymous 10%); beyond a level's share, its requests queue, then 429.")
	fs.IntVar(&b.MaxInFlightPerClient, "bridge-max-in-flight-per-client", 32,
		"Concurrent bridge requests from one source address; beyond: 503 with Retry-After.")
	fs.Float64Var(&b.FailedAuthRate, "bridge-failed-auth-rate", 1,
		"Failed authentications and invalid requests per second one client may make (after a burst of 20); beyond: 429, and no token is sent to the API server.")
	fs.StringVar(&f.trustedProxies, "bridge-trusted-proxies", "",
		"Comma-separated CIDRs of proxies (an Ingress controller) whose X-Forwarded-For names the client for rate limits; empty: the peer address counts.")
	fs.IntVar(&b.MaxDoctorReports, "bridge-doctor-max-reports", 5, "Doctor reports kept per cluster; a newer one replaces the oldest.")
	fs.IntVar(&b.MaxDoctorTotal, "bridge-doctor-max-total", 1000, "Doctor reports kept in all; beyond, uploads of new ones answer 429 until old ones are deleted.")
	fs.Int64Var(&b.MaxDoctorBytes, "bridge-doctor-max-bytes", 64<<20, "Compressed bytes of doctor reports kept per tenant; beyond, uploads of new ones answer 429 until old ones are deleted.")
	fs.IntVar(&b.DoctorBurst, "bridge-doctor-burst", 3, "Doctor uploads one sender (a cluster, else a token or an address) may make at once; beyond, --bridge-doctor-per-minute, else 429 before the dump is read.")
	fs.Float64Var(&f.doctorPerMinute, "bridge-doctor-per-minute", 1, "Doctor uploads per minute one sender may make after its burst.")
	fs.DurationVar(&b.RefusalDelay, "bridge-refusal-delay", time.Second,
		"How long a 429 or 503 is held before it is sent (at most its Retry-After), without a slot or seat: a client that keeps sending past its budget "+
			"mostly waits instead of costing the bridge CPU; 0: sent at once.")
	fs.BoolVar(&b.AuditHeartbeats, "bridge-audit-heartbeats", false,
		"Also write an audit log line for check-ins that change nothing (one per cluster per check-in interval).")
}

// Complete checks the flags and returns the bridge's options: namespace
// is the process's own (the bridge namespace's default), staleThreshold
// the fleet's (the heartbeat's default and bound).
func (f *Flags) Complete(namespace string, staleThreshold time.Duration) (Options, error) {
	o := f.Options
	if m := o.CheckInAuth; m != CheckInToken && m != CheckInOpen {
		return o, fmt.Errorf("--bridge-checkin-auth must be token or open, not %q", m)
	}
	if f.doctorPerMinute <= 0 {
		return o, fmt.Errorf("--bridge-doctor-per-minute must be positive, not %g", f.doctorPerMinute)
	}
	o.DoctorRate = f.doctorPerMinute / 60
	o.Tenants = cliflag.List(f.tenants)
	for _, t := range o.Tenants {
		if errs := validation.IsDNS1123Label(t); len(errs) > 0 {
			return o, fmt.Errorf("--bridge-tenants: %q is not a namespace name: %s", t, strings.Join(errs, "; "))
		}
	}
	switch f.maxTokenLifetime {
	case "never":
		o.MaxTokenLifetime = MaxTokenLifetimeNever
	default:
		d, err := time.ParseDuration(f.maxTokenLifetime)
		if err != nil || d <= 0 {
			return o, fmt.Errorf("--registration-token-max-lifetime must be a positive duration or \"never\", not %q", f.maxTokenLifetime)
		}
		o.MaxTokenLifetime = d
	}
	o.TrustedProxies = nil
	for _, c := range cliflag.List(f.trustedProxies) {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			a, aerr := netip.ParseAddr(c)
			if aerr != nil {
				return o, fmt.Errorf("--bridge-trusted-proxies: %q is not a CIDR or an IP address", c)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		o.TrustedProxies = append(o.TrustedProxies, p.Masked())
	}
	switch {
	case o.Heartbeat == 0:
		o.Heartbeat = checkin.PersistInterval(staleThreshold)
	case o.Heartbeat < 0 || o.Heartbeat > staleThreshold/2:
		return o, fmt.Errorf("--bridge-heartbeat must be positive and at most half of --stale-threshold (%s), not %s",
			staleThreshold, o.Heartbeat)
	}
	if o.MaxBodyBytes < 0 {
		return o, fmt.Errorf("--bridge-max-body-bytes must be positive, not %d", o.MaxBodyBytes)
	}
	if o.Namespace == "" {
		o.Namespace = namespace
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	return o, nil
}
