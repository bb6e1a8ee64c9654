package verification_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
)

// TestMain refuses every connection but loopback, for http's default
// transport and any dialer that uses the default resolver: verification
// must never reach for a trust root or a log on the network.
func TestMain(m *testing.M) {
	refuse := func(_ context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); err == nil && ip != nil && ip.IsLoopback() {
			return (&net.Dialer{}).DialContext(context.Background(), network, addr)
		}
		panic(fmt.Sprintf("a test reached for the network: %s %s", network, addr))
	}
	http.DefaultTransport = &http.Transport{DialContext: refuse}
	net.DefaultResolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return refuse(ctx, network, addr)
	}}
	os.Exit(m.Run())
}
