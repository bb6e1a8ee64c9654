package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// The attackers run in a process of their own, at the lowest CPU priority
// (nice 19). On the internet they are other machines; here they share two
// cores with the bridge, the API server and the fleet, and building and
// sending 1 MiB bodies from the measuring process made the fleet's p99 a
// figure of the attackers' own CPU bursts rather than of what the bridge
// lets them take. What the bridge spends on the attacks (reading, parsing,
// compressing, refusing) is still spent in the bridge, at normal priority,
// and still measured.

// attackerEnv makes this binary (the bench, or the test binary through
// TestMain) the attacker process.
const attackerEnv = "TRAINYARD_ABUSE_ATTACKER"

func attackerMode() bool { return os.Getenv(attackerEnv) == "1" }

// plan is what the attacker process is told on its stdin.
type plan struct {
	URL, Addr string
	// Creds are the credentials the attacker stole: the first uploads
	// dumps, the second sends invalid check-ins (those two clusters are not
	// in the measured fleet).
	Creds  []string
	Config Config
}

// attacker is the running attacker process.
type attacker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   strings.Builder
}

// startAttacker re-runs this executable as the attacker, niced, and starts
// its attacks.
func startAttacker(p plan) (*attacker, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{exe}
	if nice, err := exec.LookPath("nice"); err == nil {
		args = []string{nice, "-n", "19", exe}
	} else {
		fmt.Fprintln(os.Stderr, "bench: no nice(1): the attackers run at normal priority")
	}
	a := &attacker{cmd: exec.Command(args[0], args[1:]...)}
	a.cmd.Env = append(os.Environ(), attackerEnv+"=1")
	a.cmd.Stdout, a.cmd.Stderr = &a.out, os.Stderr
	if a.stdin, err = a.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := a.cmd.Start(); err != nil {
		return nil, err
	}
	if err := json.NewEncoder(a.stdin).Encode(p); err != nil {
		a.kill()
		return nil, err
	}
	return a, nil
}

// stop ends the attacks (closing stdin) and returns what each was answered.
func (a *attacker) stop() (map[string]map[int]int, error) {
	_ = a.stdin.Close()
	if err := a.cmd.Wait(); err != nil {
		return nil, fmt.Errorf("the attacker process: %w", err)
	}
	var counts map[string]map[int]int
	if err := json.Unmarshal([]byte(a.out.String()), &counts); err != nil {
		return nil, fmt.Errorf("the attacker's counts: %w (%q)", err, a.out.String())
	}
	return counts, nil
}

func (a *attacker) kill() {
	if a.cmd.ProcessState == nil {
		_ = a.cmd.Process.Kill()
		_, _ = a.cmd.Process.Wait()
	}
}

// runAttacker is the attacker process: it reads its plan, attacks until its
// stdin closes, and prints the answers it got as JSON.
func runAttacker() {
	in := bufio.NewReader(os.Stdin)
	var p plan
	if err := json.NewDecoder(in).Decode(&p); err != nil {
		fmt.Fprintln(os.Stderr, "attacker: reading the plan:", err)
		os.Exit(2)
	}
	ctx, stop := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, in) // until the bench closes stdin
		stop()
	}()
	counts := attack(ctx, p)
	if err := json.NewEncoder(os.Stdout).Encode(counts); err != nil {
		os.Exit(2)
	}
}

// attack runs every attack at once, each from loopback addresses of its
// own, until ctx ends: each sender sends again as soon as it is answered.
func attack(ctx context.Context, p plan) map[string]map[int]int {
	c, url, creds := p.Config, p.URL, p.Creds
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[string]map[int]int{}
	count := func(attack string, code int) {
		mu.Lock()
		defer mu.Unlock()
		if counts[attack] == nil {
			counts[attack] = map[int]int{}
		}
		counts[attack][code]++
	}
	run := func(name string, senders int, from string, send func(hc *http.Client, i int) int) {
		hc := clientFrom(from)
		for w := range senders {
			wg.Go(func() {
				for i := w; ctx.Err() == nil; i += senders {
					code := send(hc, i)
					if ctx.Err() == nil {
						count(name, code)
					}
				}
			})
		}
	}
	empty := []byte(`{"data":[` + strings.TrimSuffix(strings.Repeat(`{},`, (1<<20)/3-5), ",") + `]}`)
	for a := range 4 {
		run(fmt.Sprintf("multi-get 1 MiB (127.0.0.%d)", 2+a), c.Conc/4, fmt.Sprintf("127.0.0.%d", 2+a), func(hc *http.Client, _ int) int {
			return post(hc, url+"/v3/versions/latest", "", empty)
		})
	}
	noise := make([]byte, 6<<20)
	_, _ = rand.Read(noise)
	incompressible := []byte(`{"workflow":{"id":"cluster-00000"},"namespaces":[],"nodes":["` + base64.StdEncoding.EncodeToString(noise) + `"]}`)
	compressible := []byte(`{"workflow":{"id":"cluster-00000"},"namespaces":[],"nodes":[` +
		strings.TrimSuffix(strings.Repeat(`{"name":"node","labels":{"zone":"a","pool":"default"},"capacity":{"cpu":"8","memory":"32Gi"}},`, (8<<20-200)/96), ",") + `]}`)
	run("doctor 8 MiB (credential)", c.Uploads, "127.0.0.6", func(hc *http.Client, i int) int {
		body := compressible
		if i%2 == 1 {
			body = incompressible
		}
		return post(hc, fmt.Sprintf("%s/v3/doctor/abuse-%d", url, i), creds[0], body)
	})
	run("invalid check-in (credential)", c.Conc/4, "127.0.0.7", func(hc *http.Client, _ int) int {
		return post(hc, url+"/v3/clusters", creds[1], []byte(`{"id":"cluster-00001","components":[{"component":{}}]}`))
	})
	run("made-up token", c.Conc/4, "127.0.0.8", func(hc *http.Client, i int) int {
		return post(hc, url+"/v3/clusters", fmt.Sprintf("tyc_made-up-%d", i), []byte(`{"id":"cluster-00001","components":[]}`))
	})
	wg.Go(func() {
		slowBodies(ctx, p.Addr, "127.0.0.9", c.Slow, func(code int) { count("body a byte a second", code) })
	})
	wg.Wait()
	return counts
}
