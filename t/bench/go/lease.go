package main

// lease: keepalive rate.  -leases leases are granted (TTL -ttl) before the
// measured phase; then -clients requesters each open one LeaseKeepAlive
// stream (as clientv3's KeepAlive keeps one per client) and renew their
// share of the leases in turn, one request in flight per stream.  One
// operation = one keepalive request answered with TTL > 0.

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
)

func modeLease() map[string]interface{} {
	cs := newClients(opt.conns)
	K := opt.leases
	if K < 1 {
		fatalf("-leases must be positive")
	}
	ids := make([]int64, K)
	t0 := time.Now()
	err := parallel(K, 32, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g, err := cs[i%len(cs)].Grant(ctx, opt.ttl)
		if err != nil {
			return err
		}
		ids[i] = int64(g.ID)
		return nil
	})
	if err != nil {
		fatalf("preload (grant): %v", err)
	}
	grantSecs := time.Since(t0).Seconds()

	// one stream per requester, opened before the measured phase
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	streams := make([]pb.Lease_LeaseKeepAliveClient, opt.clients)
	for i := range streams {
		lc := pb.NewLeaseClient(cs[i%len(cs)].ActiveConnection())
		s, err := lc.LeaseKeepAlive(sctx)
		if err != nil {
			fatalf("LeaseKeepAlive stream: %v", err)
		}
		streams[i] = s
	}
	ready(map[string]interface{}{"grant_s": round3(grantSecs)})

	r := newRun()
	go func() { <-r.ctx.Done(); scancel() }() // a stalled Recv ends with the run
	var expired int64
	recs, elapsed := r.workers(opt.clients, func(i int, rc *rec) {
		s := streams[i]
		j := i
		for r.next() {
			id := ids[j%K]
			j += opt.clients
			t0 := time.Now()
			if err := s.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
				r.fail(rc, err)
				return // a broken stream stays broken
			}
			resp, err := s.Recv()
			if err != nil {
				r.fail(rc, err)
				return
			}
			if resp.ID != id || resp.TTL <= 0 {
				atomic.AddInt64(&expired, 1)
				r.fail(rc, fmt.Errorf("keepalive of %x: answer ID %x TTL %d", id, resp.ID, resp.TTL))
				continue
			}
			r.ok(rc, t0)
		}
		s.CloseSend()
	})
	res := r.summary(recs, elapsed)
	res["leases"] = K
	res["ttl"] = opt.ttl
	res["grants_per_s"] = round3(float64(K) / grantSecs)
	res["wrong_answers"] = expired
	return res
}
