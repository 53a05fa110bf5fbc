// blkabench: LeaseKeepAlive throughput of one endpoint.  K leases are
// granted (TTL 600 s); M bidi LeaseKeepAlive streams, spread over C gRPC
// connections, renew them round-robin - each stream its own K/M leases, or
// with -shared every stream all K - each stream keeping W renewals in
// flight (closed loop).  Every answer is checked against the renewal it
// answers (same ID, in order, the granted TTL).  After a warm-up, the
// answers of S seconds are counted.  One JSON line on stdout:
//
//	{"streams":M,"leases":K,"window":W,"seconds":S,"keepalives":N,
//	 "per_second":R,"p50_ms":..,"p99_ms":..,"errors":E,"first_error":".."}
//
// Built by t/bench/lease-keepalive.py in GOPATH mode against Debian's
// golang-etcd-server-dev (GO111MODULE=off GOPATH=/usr/share/gocode).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"google.golang.org/grpc"
)

const ttl = 600

type stats struct {
	mu        sync.Mutex
	counting  bool
	n         int64
	lat       []time.Duration
	errors    int64
	firstErr  string
	windowEnd time.Time
}

func (s *stats) fail(format string, args ...interface{}) {
	atomic.AddInt64(&s.errors, 1)
	s.mu.Lock()
	if s.firstErr == "" {
		s.firstErr = fmt.Sprintf(format, args...)
	}
	s.mu.Unlock()
}

func stream(ctx context.Context, cli pb.LeaseClient, ids []int64,
	window int, st *stats, wg *sync.WaitGroup) {
	defer wg.Done()
	ka, err := cli.LeaseKeepAlive(ctx)
	if err != nil {
		st.fail("open: %v", err)
		return
	}
	type sent struct {
		id int64
		at time.Time
	}
	inflight := make(chan sent, window)
	tokens := make(chan struct{}, window)
	for i := 0; i < window; i++ {
		tokens <- struct{}{}
	}
	go func() { // sender
		next := 0
		for {
			select {
			case <-ctx.Done():
				ka.CloseSend()
				return
			case <-tokens:
			}
			id := ids[next%len(ids)]
			next++
			inflight <- sent{id, time.Now()}
			if err := ka.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
				if ctx.Err() == nil {
					st.fail("send: %v", err)
				}
				return
			}
		}
	}()
	var lat []time.Duration
	var n int64
	defer func() {
		st.mu.Lock()
		st.n += n
		st.lat = append(st.lat, lat...)
		st.mu.Unlock()
	}()
	for {
		r, err := ka.Recv()
		if err != nil {
			if ctx.Err() == nil {
				st.fail("recv: %v", err)
			}
			return
		}
		s := <-inflight
		now := time.Now()
		if r.ID != s.id || r.TTL != ttl {
			st.fail("answer {ID %d TTL %d} to a renewal of %d", r.ID, r.TTL,
				s.id)
		}
		st.mu.Lock()
		counting := st.counting && now.Before(st.windowEnd)
		st.mu.Unlock()
		if counting {
			n++
			if n%16 == 0 {
				lat = append(lat, now.Sub(s.at))
			}
		}
		tokens <- struct{}{}
	}
}

func main() {
	endpoint := flag.String("endpoint", "127.0.0.1:2379", "host:port")
	streams := flag.Int("streams", 16, "concurrent LeaseKeepAlive streams")
	leases := flag.Int("leases", 1000, "leases renewed round-robin")
	window := flag.Int("window", 16, "renewals in flight per stream")
	conns := flag.Int("conns", 4, "gRPC connections")
	seconds := flag.Float64("seconds", 5, "measured time")
	warmup := flag.Float64("warmup", 1, "time before measuring")
	shared := flag.Bool("shared", false, "every stream renews every lease")
	flag.Parse()
	if *leases < *streams {
		*leases = *streams
	}

	var ccs []*grpc.ClientConn
	for i := 0; i < *conns; i++ {
		cc, err := grpc.Dial(*endpoint, grpc.WithInsecure(), grpc.WithBlock(),
			grpc.WithTimeout(5*time.Second))
		if err != nil {
			fmt.Fprintln(os.Stderr, "dial:", err)
			os.Exit(2)
		}
		defer cc.Close()
		ccs = append(ccs, cc)
	}
	lc := pb.NewLeaseClient(ccs[0])
	ids := make([]int64, *leases)
	for i := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: ttl})
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "grant:", err)
			os.Exit(2)
		}
		ids[i] = r.ID
	}

	st := &stats{}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < *streams; i++ {
		// each stream renews leases of its own, as clients do, unless
		// -shared: every stream renews every lease
		mine := ids
		if !*shared {
			mine = ids[i*len(ids) / *streams : (i+1)*len(ids) / *streams]
		}
		wg.Add(1)
		go stream(ctx, pb.NewLeaseClient(ccs[i%len(ccs)]), mine, *window, st,
			&wg)
	}
	time.Sleep(time.Duration(*warmup * float64(time.Second)))
	measure := time.Duration(*seconds * float64(time.Second))
	st.mu.Lock()
	st.counting = true
	st.windowEnd = time.Now().Add(measure)
	st.mu.Unlock()
	time.Sleep(measure + 100*time.Millisecond)
	stop()
	wg.Wait()

	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		lc.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: id})
		cancel()
	}

	sort.Slice(st.lat, func(i, j int) bool { return st.lat[i] < st.lat[j] })
	pct := func(p float64) float64 {
		if len(st.lat) == 0 {
			return 0
		}
		return float64(st.lat[int(p*float64(len(st.lat)-1))]) / 1e6
	}
	json.NewEncoder(os.Stdout).Encode(map[string]interface{}{
		"streams": *streams, "leases": *leases, "window": *window,
		"conns": *conns, "seconds": *seconds, "keepalives": st.n,
		"per_second": float64(st.n) / *seconds, "p50_ms": pct(0.5),
		"p99_ms": pct(0.99), "errors": st.errors, "first_error": st.firstErr,
	})
}
