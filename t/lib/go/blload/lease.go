package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
)

// leases granted by one client and kept alive by clientv3's KeepAlive (one
// LeaseKeepAlive stream for all of them, re-opened by clientv3 when it
// breaks); each holds two keys
type leaseClient struct {
	name   string
	cli    *clientv3.Client
	ctx    context.Context
	cancel context.CancelFunc
	leases []*lease
}

type lease struct {
	id   clientv3.LeaseID
	keys []string

	mu      sync.Mutex
	last    time.Time // the grant, then each keepalive answer
	maxGap  time.Duration
	answers int
	lost    string // why the keepalive channel closed early, or ""
	lapsed  int    // TimeToLive said it was gone while kept alive
}

type leaseResult struct {
	ID        string `json:"id"`
	TTL       int64  `json:"ttl"`
	Answers   int    `json:"keepalives"`
	MaxGapMs  int64  `json:"max_gap_ms"`
	Lost      string `json:"lost"`
	Lapsed    int    `json:"lapsed"`
	Remaining int64  `json:"remaining_ttl"`
	Keys      int    `json:"keys"`
	KeysHeld  int    `json:"keys_held"`
	Error     string `json:"error,omitempty"`
}

func startLeases(n int) *leaseClient {
	lc := &leaseClient{name: fmt.Sprintf("lease%d", n)}
	lc.cli = newClient(lc.name)
	lc.ctx, lc.cancel = context.WithCancel(context.Background())
	for j := 0; j < *nLeases; j++ {
		c, cancel := rpcCtx()
		g, err := lc.cli.Grant(c, *leaseTTL)
		cancel()
		if err != nil {
			die("%s: grant: %v", lc.name, err)
		}
		l := &lease{id: g.ID, last: time.Now()}
		for k := 0; k < 2; k++ {
			key := fmt.Sprintf("%s/lease/%d-%d/k%d", *prefix, n, j, k)
			c, cancel := rpcCtx()
			r, err := lc.cli.Put(c, key, "granted", clientv3.WithLease(g.ID))
			cancel()
			if err != nil {
				die("%s: put %s: %v", lc.name, key, err)
			}
			ack(acked{"put", key, "granted", r.Header.Revision, lc.name})
			l.keys = append(l.keys, key)
		}
		ka, err := lc.cli.KeepAlive(lc.ctx, g.ID)
		if err != nil {
			die("%s: keepalive: %v", lc.name, err)
		}
		go l.follow(lc.ctx, ka)
		lc.leases = append(lc.leases, l)
	}
	return lc
}

func (l *lease) follow(ctx context.Context, ka <-chan *clientv3.LeaseKeepAliveResponse) {
	for r := range ka {
		now := time.Now()
		l.mu.Lock()
		if gap := now.Sub(l.last); gap > l.maxGap {
			l.maxGap = gap
		}
		l.last = now
		l.answers++
		if r.TTL <= 0 {
			l.lost = fmt.Sprintf("keepalive answered TTL %d", r.TTL)
		}
		l.mu.Unlock()
	}
	if ctx.Err() == nil {
		l.mu.Lock()
		if l.lost == "" {
			l.lost = fmt.Sprintf("keepalive channel closed at %d ms", nowMs())
		}
		l.mu.Unlock()
	}
}

// putter rewrites the leases' keys (with the lease) and asks TimeToLive
// in turn, for events under PFX/lease/ and a server-side view of the TTL
func (lc *leaseClient) putter(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	tr := &tracker{client: lc.name}
	for n := 0; ctx.Err() == nil; n++ {
		l := lc.leases[n%len(lc.leases)]
		var ok bool
		if n%2 == 0 {
			key := l.keys[(n/2)%len(l.keys)]
			val := fmt.Sprintf("%s-%d", lc.name, n)
			c, cancel := rpcCtx()
			r, err := lc.cli.Put(c, key, val, clientv3.WithLease(l.id))
			cancel()
			if ok = tr.done("lease_put", err); ok {
				ack(acked{"put", key, val, r.Header.Revision, lc.name})
			}
		} else {
			c, cancel := rpcCtx()
			r, err := lc.cli.TimeToLive(c, l.id)
			cancel()
			if ok = tr.done("time_to_live", err); ok && r.TTL <= 0 {
				l.mu.Lock()
				l.lapsed++
				l.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (lc *leaseClient) check(ctl *clientv3.Client) []leaseResult {
	var res []leaseResult
	for _, l := range lc.leases {
		l.mu.Lock()
		gap := l.maxGap
		if g := time.Since(l.last); g > gap {
			gap = g
		}
		r := leaseResult{ID: fmt.Sprintf("%x", int64(l.id)), TTL: *leaseTTL,
			Answers: l.answers, MaxGapMs: int64(gap / time.Millisecond),
			Lost: l.lost, Lapsed: l.lapsed, Keys: len(l.keys)}
		l.mu.Unlock()
		c, cancel := rpcCtx()
		t, err := ctl.TimeToLive(c, l.id)
		cancel()
		if err != nil {
			r.Error = err.Error()
		} else {
			r.Remaining = t.TTL
		}
		for _, key := range l.keys {
			c, cancel := rpcCtx()
			g, err := ctl.Get(c, key)
			cancel()
			if err != nil {
				r.Error = err.Error()
			} else if len(g.Kvs) == 1 && g.Kvs[0].Lease == int64(l.id) {
				r.KeysHeld++
			}
		}
		res = append(res, r)
	}
	return res
}

func (lc *leaseClient) close() {
	lc.cancel()
	lc.cli.Close()
}
