// Command abuse runs the bridge as the chart does, in a process of its own
// beside the manager (controllers and the admission webhook), and attacks
// it from several loopback addresses while a fleet checks in: anonymous
// multi-gets of 1 MiB of empty items, bodies sent a byte a second, 8 MiB
// doctor uploads with one cluster's own credential, invalid check-ins and
// made-up tokens. It prints what the fleet saw (every credentialed check-in
// answered 2xx, and its p99 against the same fleet unloaded), how long a
// `kubectl create` of a ComponentRelease through the webhook took
// throughout, and the resident memory of both processes.
//
//	make bench-abuse
//	go run ./hack/bench/abuse -clusters 200
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
	"github.com/trainyard-dev/trainyard/bridge"
	"github.com/trainyard-dev/trainyard/hack/bench/benchenv"
)

// Config sizes the run; Scaled is what `make test` runs on a 2-core machine.
type Config struct {
	Binary   string
	Clusters int // the fleet that checks in with its credentials
	// Each attack goes on, from the senders below, until the fleet's
	// measurement under attack ends.
	Conc     int           // anonymous 1 MiB multi-gets at once; invalid check-ins and made-up tokens, a quarter each
	Uploads  int           // 8 MiB doctor uploads at once, with one cluster's credential
	Slow     int           // connections sending a check-in's body a byte a second, with the fleet's credentials
	Duration time.Duration // how long the fleet checks in under attack
	// BridgeLimit is the bridge container's memory limit (its soft limit
	// is 90 % of it, as the chart sets it).
	BridgeLimit int64
}

// Full is `make bench-abuse`: the figures.
var Full = Config{Binary: "bin/trainyard", Clusters: 200, Conc: 32, Uploads: 16, Slow: 64,
	Duration: 20 * time.Second, BridgeLimit: 256 << 20}

// Result is what a run measured.
type Result struct {
	UnloadedP50, UnloadedP99 time.Duration // credentialed check-ins, nothing else running
	LoadedP50, LoadedP99     time.Duration // the same, under attack
	CheckIns, CheckInsOK     int
	CheckInsFailed           map[string]int // what the others were answered ("0": no answer), by code
	CreateMax, CreateP99     time.Duration  // kubectl create through the webhook, under attack
	Creates                  int
	Publishes, PublishesOK   int // a pipeline publishing through the bridge, under attack
	PublishP99               time.Duration
	BridgeRSS, BridgePeak    int64 // before the attack, and its peak (VmHWM) after
	ManagerRSS, ManagerAfter int64
	Attacks                  map[string]map[int]int // what each attack was answered
	DoctorStored             int                    // dump Secrets stored
	Reports                  int                    // ClusterReports stored
}

func main() {
	if attackerMode() {
		runAttacker()
		return
	}
	c := Full
	flag.StringVar(&c.Binary, "binary", c.Binary, "The trainyard binary.")
	flag.IntVar(&c.Clusters, "clusters", c.Clusters, "Clusters checking in with their credentials.")
	flag.DurationVar(&c.Duration, "duration", c.Duration, "How long the fleet checks in under attack.")
	flag.IntVar(&c.Conc, "conc", c.Conc, "Senders of multi-gets (a quarter as many of invalid check-ins and of made-up tokens); "+
		"past the bridge's 512 held refusals, the rest are answered at once.")
	flag.Parse()
	r, err := Run(context.Background(), c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	fmt.Print(r)
}

func (r Result) String() string {
	var b strings.Builder
	mib := func(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }
	fmt.Fprintf(&b, "credentialed check-ins, unloaded:  p50 %s  p99 %s\n", r.UnloadedP50.Round(time.Microsecond*10), r.UnloadedP99.Round(time.Microsecond*10))
	fmt.Fprintf(&b, "credentialed check-ins, attacked:  p50 %s  p99 %s  (p99 ratio %.2f)  %d of %d answered 2xx\n",
		r.LoadedP50.Round(time.Microsecond*10), r.LoadedP99.Round(time.Microsecond*10), float64(r.LoadedP99)/float64(r.UnloadedP99), r.CheckInsOK, r.CheckIns)
	if len(r.CheckInsFailed) > 0 {
		fmt.Fprintf(&b, "credentialed check-ins not answered 2xx: %v\n", r.CheckInsFailed)
	}
	fmt.Fprintf(&b, "kubectl create through the webhook: %d, p99 %s, max %s\n", r.Creates, r.CreateP99.Round(time.Millisecond), r.CreateMax.Round(time.Millisecond))
	fmt.Fprintf(&b, "publishes through the bridge:       %d of %d answered 2xx, p99 %s\n", r.PublishesOK, r.Publishes, r.PublishP99.Round(time.Millisecond))
	fmt.Fprintf(&b, "bridge RSS:  %s before, peak %s (+%s)\n", mib(r.BridgeRSS), mib(r.BridgePeak), mib(r.BridgePeak-r.BridgeRSS))
	fmt.Fprintf(&b, "manager RSS: %s before, %s after (%+.1f MiB)\n", mib(r.ManagerRSS), mib(r.ManagerAfter), float64(r.ManagerAfter-r.ManagerRSS)/(1<<20))
	fmt.Fprintf(&b, "stored: %d doctor dumps, %d ClusterReports\n", r.DoctorStored, r.Reports)
	names := make([]string, 0, len(r.Attacks))
	for k := range r.Attacks {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		fmt.Fprintf(&b, "attack %-28s answered %v\n", k+":", r.Attacks[k])
	}
	return b.String()
}

// stolen is how many of the fleet's credentials the attacker holds (see
// plan.Creds): those clusters are not in the measured fleet.
const stolen = 2

const (
	ns    = "abuse"
	token = "abuse-registration-token"
)

// Run starts the control plane, the manager and the bridge, and measures.
func Run(ctx context.Context, c Config) (Result, error) {
	var res Result
	env, err := benchenv.Start(ctx, ns)
	if err != nil {
		return res, err
	}
	defer env.Stop()
	if err := env.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "trainyard-registration"},
		Data:       map[string][]byte{"abuse": []byte(token)},
	}); err != nil {
		return res, err
	}
	// The manager with the webhook, and no bridge, as the chart runs it.
	hook, err := env.Webhook(ctx, ns)
	if err != nil {
		return res, err
	}
	mgr, err := env.StartManager(c.Binary, append(hook, "--bridge-bind-address=0", "--metrics-bind-address=0",
		"--health-probe-bind-address=0")...)
	if err != nil {
		return res, err
	}
	defer benchenv.StopManager(mgr)
	if err := env.WaitWebhook(ctx, ns); err != nil {
		return res, err
	}
	addr, err := benchenv.FreeAddr()
	if err != nil {
		return res, err
	}
	env.ManagerEnv = []string{"TRAINYARD_MEMORY_LIMIT=" + strconv.FormatInt(c.BridgeLimit, 10)}
	br, err := env.Run(c.Binary, "bridge", "--bridge-bind-address="+addr, "--namespace="+ns, "--zap-log-level=error",
		"--metrics-bind-address=0", "--health-probe-bind-address=0")
	if err != nil {
		return res, err
	}
	defer benchenv.StopManager(br)
	url := "http://" + addr
	if err := waitReady(url); err != nil {
		return res, err
	}
	if err := env.Client.Create(ctx, &trainyardv1.ComponentRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ReleaseName("router", "stable", "v1.0.0")},
		Spec:       trainyardv1.ComponentReleaseSpec{Component: "router", Train: "stable", Version: "v1.0.0"},
	}); err != nil {
		return res, err
	}

	// A release pipeline: a ServiceAccount token RBAC lets create releases.
	publisher, err := publisherToken(ctx, env)
	if err != nil {
		return res, err
	}

	// The fleet registers, then checks in with its credentials.
	creds := make([]string, c.Clusters)
	fleet := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	var regErr atomic.Value
	benchenv.Parallel(c.Clusters, 16, func(i int) {
		code, cred, err := checkIn(fleet, url, token, i)
		if err != nil || code != http.StatusOK || cred == "" {
			regErr.Store(fmt.Sprintf("registering cluster %d: %d %v", i, code, err))
		}
		creds[i] = cred
	})
	if e := regErr.Load(); e != nil {
		return res, fmt.Errorf("%s", e)
	}
	// A round: every cluster checks in once, and rounds are a second apart
	// (an agent checks in every 15 minutes; a second keeps each cluster far
	// below its own rate limit while the fleet's rate is what is measured).
	var mu sync.Mutex
	round := func() ([]time.Duration, int) {
		defer func(start time.Time) { time.Sleep(time.Until(start.Add(time.Second))) }(time.Now())
		lat := make([]time.Duration, c.Clusters-stolen)
		var ok atomic.Int64
		benchenv.Parallel(c.Clusters-stolen, 8, func(i int) {
			i += stolen
			start := time.Now()
			code, _, err := checkIn(fleet, url, creds[i], i)
			lat[i-stolen] = time.Since(start)
			if err == nil && code == http.StatusOK {
				ok.Add(1)
				return
			}
			mu.Lock()
			if res.CheckInsFailed == nil {
				res.CheckInsFailed = map[string]int{}
			}
			res.CheckInsFailed[fmt.Sprintf("%d %v", code, err)]++
			mu.Unlock()
		})
		return lat, int(ok.Load())
	}
	// A pipeline publishes through the bridge and an operator creates
	// releases through the webhook, every 250 ms, in the unloaded rounds as
	// in the attacked ones: the two differ by the attack alone. Their
	// figures count under attack only.
	attackCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	var attacked atomic.Bool
	var loaded []time.Duration
	var creates []time.Duration
	var publishes []time.Duration
	wg.Go(func() {
		for i := 0; attackCtx.Err() == nil; i++ {
			start := time.Now()
			code := post(fleet, fmt.Sprintf("%s/v3/versions/stable/pipeline/v2.0.%d", url, i), publisher, []byte(`{}`))
			d := time.Since(start)
			mu.Lock()
			if attacked.Load() {
				publishes = append(publishes, d)
				if code == http.StatusOK {
					res.PublishesOK++
				}
			}
			mu.Unlock()
			select {
			case <-attackCtx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	})
	wg.Go(func() {
		for i := 0; attackCtx.Err() == nil; i++ {
			start := time.Now()
			err := env.Client.Create(ctx, &trainyardv1.ComponentRelease{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trainyardv1.ReleaseName("api", "stable", fmt.Sprintf("1.0.%d", i))},
				Spec:       trainyardv1.ComponentReleaseSpec{Component: "api", Train: "stable", Version: fmt.Sprintf("1.0.%d", i)},
			})
			d := time.Since(start)
			if err != nil {
				d = time.Hour // a refusal counts as never
			}
			mu.Lock()
			if attacked.Load() {
				creates = append(creates, d)
			}
			mu.Unlock()
			select {
			case <-attackCtx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	})
	// As many unloaded rounds as attacked ones: the two p99s rest on as
	// many check-ins.
	var unloaded []time.Duration
	round() // warm-up: connections, caches, the first writes of each report
	for deadline := time.Now().Add(c.Duration); time.Now().Before(deadline); {
		lat, _ := round()
		unloaded = append(unloaded, lat...)
	}
	res.UnloadedP50, res.UnloadedP99 = pct(unloaded, 50), pct(unloaded, 99)
	if res.BridgeRSS, err = rss(br.Process.Pid, "VmRSS"); err != nil {
		return res, err
	}
	if res.ManagerRSS, err = rss(mgr.Process.Pid, "VmRSS"); err != nil {
		return res, err
	}

	// The attacks, all at once, from a process of their own (below).
	attacker, err := startAttacker(plan{URL: url, Addr: addr, Creds: creds[:stolen], Config: c})
	if err != nil {
		return res, err
	}
	defer attacker.kill()
	attacked.Store(true)
	for deadline := time.Now().Add(c.Duration); time.Now().Before(deadline); {
		lat, ok := round()
		loaded = append(loaded, lat...)
		res.CheckIns += len(lat)
		res.CheckInsOK += ok
	}
	stop()
	wg.Wait()
	if res.Attacks, err = attacker.stop(); err != nil {
		return res, err
	}
	res.LoadedP50, res.LoadedP99 = pct(loaded, 50), pct(loaded, 99)
	res.Creates, res.CreateP99, res.CreateMax = len(creates), pct(creates, 99), pct(creates, 100)
	res.Publishes, res.PublishP99 = len(publishes), pct(publishes, 99)
	if res.BridgePeak, err = rss(br.Process.Pid, "VmHWM"); err != nil {
		return res, err
	}
	if res.ManagerAfter, err = rss(mgr.Process.Pid, "VmRSS"); err != nil {
		return res, err
	}
	var dumps corev1.SecretList
	if err := env.Client.List(ctx, &dumps); err == nil {
		for _, s := range dumps.Items {
			if s.Labels[bridge.LabelDoctorReport] == "true" {
				res.DoctorStored++
			}
		}
	}
	var reports trainyardv1.ClusterReportList
	if err := env.Client.List(ctx, &reports); err != nil {
		return res, err
	}
	res.Reports = len(reports.Items)
	return res, nil
}

// publisherToken makes a ServiceAccount that RBAC lets create releases in
// the namespace, and returns a token of it, once the API server's authorizer
// allows it.
func publisherToken(ctx context.Context, env *benchenv.Env) (string, error) {
	const name = "pipeline"
	if err := env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
		return "", err
	}
	if err := env.Client.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"trainyard.dev"}, Resources: []string{"componentreleases"}, Verbs: []string{"create"}}}}); err != nil {
		return "", err
	}
	if err := env.Client.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}}}); err != nil {
		return "", err
	}
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return "", err
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: "system:serviceaccount:" + ns + ":" + name, Groups: []string{"system:serviceaccounts"},
			ResourceAttributes: &authzv1.ResourceAttributes{Namespace: ns, Verb: "create", Group: "trainyard.dev", Resource: "componentreleases"},
		}}, metav1.CreateOptions{})
		if err == nil && sar.Status.Allowed {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("RBAC did not let the pipeline create releases within 30 s: %v", err)
		}
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return tr.Status.Token, nil
}

func checkIn(hc *http.Client, url, bearer string, i int) (int, string, error) {
	return benchenv.PostCheckIn(hc, url, bearer, []byte(fmt.Sprintf(`{"id":"cluster-%05d","components":[`+
		`{"component":{"name":"router","type":"Deployment"},"version":{"train":"stable","version":"v1.0.0"}}]}`, i)))
}

// post sends body and returns the status (0: no answer).
func post(hc *http.Client, url, bearer string, body []byte) int {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// clientFrom sends from a loopback address of its own.
func clientFrom(addr string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}, Timeout: 60 * time.Second}
}

// slowBodies keeps n connections from addr that send a multi-get's body (a
// route anyone may call) a byte a second until answered, then open
// another, and counts the answers.
func slowBodies(ctx context.Context, addr, from string, n int, answered func(int)) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	benchenv.Parallel(n, n, func(int) {
		for ctx.Err() == nil {
			if code := slowBody(ctx, d, addr); ctx.Err() == nil {
				answered(code)
			}
		}
	})
}

func slowBody(ctx context.Context, d *net.Dialer, addr string) int {
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0
	}
	defer conn.Close()
	_, _ = fmt.Fprintf(conn, "POST /v3/versions/latest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
	code := make(chan int, 1)
	go func() {
		resp, err := http.ReadResponse(newReader(conn), nil)
		if err != nil {
			code <- 0
			return
		}
		resp.Body.Close()
		code <- resp.StatusCode
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case c := <-code:
			return c
		case <-tick.C:
			_, _ = conn.Write([]byte(" "))
		case <-ctx.Done():
			return 0
		}
	}
}

func waitReady(url string) error {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("the bridge did not answer /readyz within a minute")
}

var rssLine = map[string]*regexp.Regexp{}

// rss reads a process's VmRSS or VmHWM (its peak), in bytes.
func rss(pid int, field string) (int64, error) {
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	re := rssLine[field]
	if re == nil {
		re = regexp.MustCompile(field + `:\s+(\d+) kB`)
		rssLine[field] = re
	}
	m := re.FindSubmatch(status)
	if m == nil {
		return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10, nil
}

// pct is the p-th percentile of ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
