package notify

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trainyardv1 "github.com/trainyard-dev/trainyard/api/v1alpha1"
)

// The receiver example of docs/notifications.md is the program in
// docs/examples/receiver, and it works with what the notifier sends: a
// signed delivery is handled once, a repeat of its id is acknowledged and
// not handled again, and a delivery signed with another key is refused.
func TestTheDocumentedReceiverTakesOurDeliveries(t *testing.T) {
	root := filepath.Join("..")
	src, err := os.ReadFile(filepath.Join(root, "docs", "examples", "receiver", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "notifications.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```go\n"+string(src)+"```") {
		t.Fatal("docs/notifications.md does not show docs/examples/receiver/main.go as it is")
	}

	bin := filepath.Join(t.TempDir(), "receiver")
	if out, err := exec.Command("go", "build", "-o", bin, "../docs/examples/receiver").CombinedOutput(); err != nil {
		t.Fatalf("building the example: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	cmd := exec.Command(bin, "-addr", addr)
	cmd.Env = append(os.Environ(), "WEBHOOK_SECRET="+secret)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()

	rc := func(key string) *receiver {
		r, err := resolve(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Data: map[string][]byte{
			trainyardv1.SecretKeyURL: []byte("http://" + addr + "/"), trainyardv1.SecretKeySigningKey: []byte(key)}}, 5*time.Second, Destinations{Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	good, bad := rc(secret), rc("another key")
	deadline := time.Now().Add(30 * time.Second)
	for good.probe(context.Background(), time.Second) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the example receiver did not start")
		}
		time.Sleep(50 * time.Millisecond) // polling a process's port: no event to wait on
	}

	b := newBatch(trainyardv1.EventReleaseLatest)
	since := metav1.NewTime(t0)
	b.add(TrainEvents(&trainyardv1.ReleaseTrain{ObjectMeta: metav1.ObjectMeta{Name: "router.stable", UID: "u"},
		Spec:   trainyardv1.ReleaseTrainSpec{Component: "router", Train: "stable"},
		Status: trainyardv1.ReleaseTrainStatus{Latest: &trainyardv1.ReleaseRef{Name: "router.stable.v2.4.1", Version: "2.4.1", Since: &since}}})[0])
	body, _ := json.Marshal(b.cloudEvent("fleet", "audit"))
	ctx := context.Background()

	if o := good.post(ctx, b.id(), ContentType, body, time.Now()); o.err != nil || o.code != 202 {
		t.Fatalf("first delivery: %d %v", o.code, o.err)
	}
	select {
	case l := <-lines:
		if want := "dev.trainyard.release.latest " + b.id() + " (1): router 2.4.1 is the latest release on stable"; l != want {
			t.Errorf("printed %q, want %q", l, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the receiver printed nothing")
	}
	if o := good.post(ctx, b.id(), ContentType, body, time.Now()); o.err != nil || o.code != 200 {
		t.Errorf("a retry of the same id: %d %v", o.code, o.err)
	}
	if o := bad.post(ctx, "other", ContentType, body, time.Now()); o.code != 401 || o.retry {
		t.Errorf("a delivery signed with another key: %d retry=%v", o.code, o.retry)
	}
	select {
	case l := <-lines:
		t.Errorf("handled twice: %q", l)
	case <-time.After(500 * time.Millisecond):
	}
}
