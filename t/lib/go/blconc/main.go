// blconc: etcd's own recipes (clientv3/concurrency: Session, Mutex,
// Election) run against one endpoint, each check printed as one JSON line
//
//	{"check": "mutex counter", "ok": true, "detail": "160 of 160"}
//
// and a last line {"done": true}.  t/54-lease-concurrency.t runs it
// against a real etcd 3.4 and against ballast.
//
// Built in GOPATH mode against Debian's golang-etcd-server-dev
// (GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off).
//
// Usage: blconc -endpoint 127.0.0.1:2379 [-ttl 2] [-workers 8] [-iters 20]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
)

var out = newEncoder()

func newEncoder() *json.Encoder {
	e := json.NewEncoder(os.Stdout)
	e.SetEscapeHTML(false)
	return e
}

func report(check string, ok bool, format string, args ...interface{}) {
	out.Encode(map[string]interface{}{
		"check": check, "ok": ok, "detail": fmt.Sprintf(format, args...)})
}

func fatal(check string, err error) {
	report(check, false, "%v", err)
	out.Encode(map[string]interface{}{"done": false})
	os.Exit(1)
}

func ctxFor(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	time.AfterFunc(d, cancel) // released when it expires anyway
	return ctx
}

// the lease's remaining TTL as the server tells it (-1: gone)
func remaining(cli *clientv3.Client, id clientv3.LeaseID) (int64, int64) {
	r, err := cli.TimeToLive(ctxFor(5*time.Second), id)
	if err != nil {
		return -2, 0
	}
	return r.TTL, r.GrantedTTL
}

// Session: granted with the TTL asked, kept alive past several TTLs,
// revoked by Close; an orphaned session's lease expires on the server.
func sessions(cli *clientv3.Client, ttl int) {
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(ttl))
	if err != nil {
		fatal("session", err)
	}
	left, granted := remaining(cli, s.Lease())
	report("session granted", s.Lease() > 0 && granted == int64(ttl),
		"lease %x granted %d remaining %d", int64(s.Lease()), granted, left)

	time.Sleep(time.Duration(2*ttl+1) * time.Second)
	left, _ = remaining(cli, s.Lease())
	alive := true
	select {
	case <-s.Done():
		alive = false
	default:
	}
	report("session kept alive", alive && left > 0,
		"after %d s: remaining %d, done channel open %v", 2*ttl+1, left, alive)

	err = s.Close()
	left, _ = remaining(cli, s.Lease())
	report("session close revokes", err == nil && left == -1,
		"close: %v, remaining %d", err, left)

	o, err := concurrency.NewSession(cli, concurrency.WithTTL(ttl))
	if err != nil {
		fatal("session", err)
	}
	o.Orphan()
	start := time.Now()
	for left, _ = remaining(cli, o.Lease()); left != -1 &&
		time.Since(start) < time.Duration(ttl+3)*time.Second; left, _ = remaining(cli, o.Lease()) {
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(start)
	report("orphaned session expires", left == -1 &&
		took < time.Duration(ttl+1)*time.Second,
		"gone after %.2f s (TTL %d s)", took.Seconds(), ttl)
}

// Mutex: workers, each with its own session, increment a counter held in
// etcd (read, then write) under the lock; a flag catches any overlap.
func mutex(cli *clientv3.Client, ttl, workers, iters int) {
	const pfx = "/blconc/mutex"
	const counter = "/blconc/counter"
	var inside, overlaps, local int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)

	if _, err := cli.Put(ctxFor(5*time.Second), counter, "0"); err != nil {
		fatal("mutex", err)
	}
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(ttl))
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			m := concurrency.NewMutex(s, pfx)
			for i := 0; i < iters; i++ {
				if err := m.Lock(ctxFor(30 * time.Second)); err != nil {
					errs <- fmt.Errorf("lock: %v", err)
					return
				}
				if !atomic.CompareAndSwapInt64(&inside, 0, 1) {
					atomic.AddInt64(&overlaps, 1)
				}
				g, err := cli.Get(ctxFor(5*time.Second), counter)
				if err == nil && len(g.Kvs) == 1 {
					n, _ := strconv.Atoi(string(g.Kvs[0].Value))
					time.Sleep(time.Millisecond)
					_, err = cli.Put(ctxFor(5*time.Second), counter,
						strconv.Itoa(n+1))
				}
				local++
				atomic.StoreInt64(&inside, 0)
				if err2 := m.Unlock(ctxFor(5 * time.Second)); err == nil {
					err = err2
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		report("mutex workers", false, "%v", err)
	}
	g, err := cli.Get(ctxFor(5*time.Second), counter)
	got := -1
	if err == nil && len(g.Kvs) == 1 {
		got, _ = strconv.Atoi(string(g.Kvs[0].Value))
	}
	want := workers * iters
	report("mutex counter", got == want && local == int64(want),
		"%d of %d in etcd, %d of %d locally, %.2f s", got, want, local, want,
		time.Since(start).Seconds())
	report("mutex exclusion", overlaps == 0, "%d overlaps", overlaps)
	keys, err := cli.Get(ctxFor(5*time.Second), pfx, clientv3.WithPrefix())
	report("mutex keys gone", err == nil && len(keys.Kvs) == 0,
		"%v, %d lock keys left", err, len(keys.Kvs))
}

// the next value an observer sees, or "" after the timeout
func next(ch <-chan clientv3.GetResponse, d time.Duration) string {
	select {
	case r, ok := <-ch:
		if !ok || len(r.Kvs) == 0 {
			return "(closed)"
		}
		return string(r.Kvs[0].Value)
	case <-time.After(d):
		return ""
	}
}

func leader(e *concurrency.Election) string {
	r, err := e.Leader(ctxFor(5 * time.Second))
	if err == concurrency.ErrElectionNoLeader {
		return "(none)"
	}
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return string(r.Kvs[0].Value)
}

// Election: campaign, observe, proclaim, resign and hand-over, and a
// leader whose session dies (its lease expires) replaced by the next.
func election(cli *clientv3.Client, ttl int) {
	const pfx = "/blconc/election"
	var ss [4]*concurrency.Session
	var es [4]*concurrency.Election
	for i := range ss {
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(ttl))
		if err != nil {
			fatal("election", err)
		}
		ss[i] = s
		es[i] = concurrency.NewElection(s, pfx)
	}
	defer func() {
		for _, s := range ss {
			s.Close()
		}
	}()
	watcher := es[0]

	report("no leader yet", leader(watcher) == "(none)", "leader %s",
		leader(watcher))

	octx, cancel := context.WithCancel(context.Background())
	defer cancel()

	err := es[1].Campaign(ctxFor(10*time.Second), "a")
	report("campaign wins", err == nil && leader(watcher) == "a",
		"%v, leader %s", err, leader(watcher))
	obs := watcher.Observe(octx)
	v := next(obs, 5*time.Second)
	report("observe sees the leader", v == "a", "observed %q", v)

	err = es[1].Proclaim(ctxFor(5*time.Second), "a2")
	v = next(obs, 5*time.Second)
	report("proclaim", err == nil && v == "a2" && leader(watcher) == "a2",
		"%v, observed %q, leader %s", err, v, leader(watcher))

	won := make(chan error, 2)
	go func() { won <- es[2].Campaign(ctxFor(60*time.Second), "b") }()
	select {
	case err = <-won:
		report("second campaign waits", false, "returned early: %v", err)
	case <-time.After(time.Second):
		report("second campaign waits", true, "still waiting after 1 s")
	}

	err = es[1].Resign(ctxFor(5 * time.Second))
	select {
	case err2 := <-won:
		v = next(obs, 5*time.Second)
		report("resign hands over", err == nil && err2 == nil && v == "b",
			"resign %v, campaign %v, observed %q, leader %s", err, err2, v,
			leader(watcher))
	case <-time.After(10 * time.Second):
		report("resign hands over", false, "resign %v; no new leader in 10 s",
			err)
	}

	go func() { won <- es[3].Campaign(ctxFor(60*time.Second), "c") }()
	time.Sleep(500 * time.Millisecond)
	ss[2].Orphan() // the leader stops its keepalives: its lease expires
	start := time.Now()
	select {
	case err = <-won:
		took := time.Since(start)
		v = next(obs, 5*time.Second)
		report("expired leader replaced", err == nil && v == "c" &&
			took < time.Duration(ttl+2)*time.Second,
			"campaign %v after %.2f s (TTL %d s), observed %q", err,
			took.Seconds(), ttl, v)
	case <-time.After(time.Duration(ttl+10) * time.Second):
		report("expired leader replaced", false, "no new leader in %d s",
			ttl+10)
	}
}

func main() {
	endpoint := flag.String("endpoint", "127.0.0.1:2379", "host:port")
	ttl := flag.Int("ttl", 2, "session TTL, seconds")
	workers := flag.Int("workers", 8, "mutex workers")
	iters := flag.Int("iters", 20, "lock/unlock rounds per worker")
	only := flag.String("only", "", "session, mutex or election")
	flag.Parse()

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{*endpoint},
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		fatal("connect", err)
	}
	defer cli.Close()

	if *only == "" || *only == "session" {
		sessions(cli, *ttl)
	}
	if *only == "" || *only == "mutex" {
		mutex(cli, *ttl, *workers, *iters)
	}
	if *only == "" || *only == "election" {
		election(cli, *ttl)
	}
	out.Encode(map[string]interface{}{"done": true})
}
