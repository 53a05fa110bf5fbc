// blload: a long-running mixed load through etcd's Go clientv3, for tests
// that disturb the server under it (reloads, a killed worker, a killed node
// behind a load balancer) and then check that what the application saw is
// what the revision log holds.
//
// Every component runs on its own clientv3.Client, so on its own TCP
// connection: a balancer spreads them over nodes, and a killed worker takes
// only the clients it served.  The program never retries by itself what
// clientv3 did not retry: an error returned to it counts as failed.
//
//	writers   Put unique keys PFX/w<i>/<seq>; every 4th op deletes an
//	          older one of its keys
//	readers   Get of a recently acknowledged key, linearizable and
//	          serializable in turn; a linearizable read whose header is
//	          below a revision acknowledged before it was sent is stale
//	txns      Kubernetes' optimistic update on PFX/txn/k<n>: Get, then
//	          Txn(If MOD(k) = seen, Then Put, Else Range)
//	watches   one per -watch prefix, WithPrefix + WithRev(start); events
//	          kept in order with the member that sent them
//	leases    Grant, keys put with the lease, clientv3's KeepAlive; a
//	          putter rewrites the keys; the gap between keepalive answers
//	          and the lease's TTL are checked at the end
//
// stdout, one JSON object a line: {"ready": ...} once the watches are
// created, {"progress": ...} every 250 ms, {"result": ...} at the end.
// A line "stop" on stdin (or EOF, or -duration) ends the load: the load
// goroutines stop, the leases are checked, a sentinel key is put in each
// watched prefix and every watch is given -settle to receive it.  -out DIR
// receives acked.jsonl (every acknowledged write) and watch-<n>.json (every
// event of watch n, in the order received).
//
// Built by t/lib/blload.py in GOPATH mode against Debian's
// golang-etcd-server-dev (GO111MODULE=off GOPATH=/usr/share/gocode).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/balancer/resolver/endpoint"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
)

var (
	endpoints = flag.String("endpoints", "127.0.0.1:2379",
		"comma-separated endpoints, as clientv3 takes them")
	prefix   = flag.String("prefix", "/load", "key prefix of everything written")
	outDir   = flag.String("out", "", "directory for acked.jsonl and watch-<n>.json")
	nWriters = flag.Int("writers", 3, "writer clients")
	nReaders = flag.Int("readers", 1, "reader clients")
	nTxns    = flag.Int("txns", 1, "optimistic-update clients")
	watchFl  = flag.String("watch", "", "comma-separated prefixes to watch, "+
		"relative to -prefix (\"\" is -prefix itself: use \"/\")")
	nLeaseCl  = flag.Int("lease-clients", 0, "clients holding leases")
	nLeases   = flag.Int("leases", 2, "leases per lease client")
	leaseTTL  = flag.Int64("lease-ttl", 5, "TTL of each lease, seconds")
	pace      = flag.Duration("pace", 2*time.Millisecond, "pause between ops")
	timeout   = flag.Duration("timeout", 5*time.Second, "deadline of each RPC")
	settle    = flag.Duration("settle", 20*time.Second, "time for watches to catch up at the end")
	duration  = flag.Duration("duration", 0, "stop by itself after this (0: on stdin)")
	keepAlive = flag.Duration("keepalive", 10*time.Second, "gRPC keepalive ping interval")
)

var out = json.NewEncoder(os.Stdout)
var outMu sync.Mutex

func emit(kind string, v interface{}) {
	outMu.Lock()
	defer outMu.Unlock()
	out.Encode(map[string]interface{}{kind: v})
}

func die(format string, args ...interface{}) {
	emit("fatal", fmt.Sprintf(format, args...))
	os.Exit(1)
}

func nowMs() int64 { return time.Now().UnixNano() / int64(time.Millisecond) }

func rpcCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), *timeout)
}

// ---------------------------------------------------------------- clients

// conn remembers the connections one client dialed: how many (a redial is
// clientv3 reconnecting) and the local address of the latest, which a test
// maps to the server process that holds the other end.
type conn struct {
	name  string
	mu    sync.Mutex
	dials int
	local string
}

var (
	connsMu sync.Mutex
	conns   []*conn
)

func newClient(name string) *clientv3.Client {
	c := &conn{name: name}
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		nc, err := endpoint.Dialer(ctx, addr)
		if err == nil {
			c.mu.Lock()
			c.dials++
			c.local = nc.LocalAddr().String()
			c.mu.Unlock()
		}
		return nc, err
	}
	lc := zap.NewProductionConfig()
	lc.Level = zap.NewAtomicLevelAt(zapcore.ErrorLevel)
	lc.OutputPaths = []string{"stderr"}
	lc.ErrorOutputPaths = []string{"stderr"}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            strings.Split(*endpoints, ","),
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    *keepAlive,
		DialKeepAliveTimeout: 5 * time.Second,
		DialOptions:          []grpc.DialOption{grpc.WithContextDialer(dial)},
		LogConfig:            &lc,
	})
	if err != nil {
		die("client %s: %v", name, err)
	}
	connsMu.Lock()
	conns = append(conns, c)
	connsMu.Unlock()
	return cli
}

func (c *conn) snapshot() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dials, c.local
}

// -------------------------------------------------------------- accounting

type opCount struct {
	Sent   int64 `json:"sent"`
	OK     int64 `json:"ok"`
	Failed int64 `json:"failed"`
}

type failure struct {
	Op     string `json:"op"`
	Client string `json:"client"`
	T      int64  `json:"t_ms"`
	Err    string `json:"err"`
}

// a client's first success after failures: the end of its outage
type recovery struct {
	Client string `json:"client"`
	T      int64  `json:"t_ms"`
	First  int64  `json:"first_failure_ms"`
	Failed int    `json:"failed"`
}

type acked struct {
	Op     string `json:"op"`
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Rev    int64  `json:"rev"`
	Client string `json:"client"`
}

var (
	acctMu     sync.Mutex
	ops        = map[string]*opCount{}
	failures   = []failure{}
	nFailures  int64
	recoveries = []recovery{}
	ackedLog   []acked
	staleReads int64
	staleEx    = []string{}
	maxAcked   int64 // highest acknowledged write revision (atomic)
	recent     [256]acked
	nRecent    int64
)

const maxKeptFailures = 2000

// tracker follows one client's run of failures
type tracker struct {
	client string
	failed int
	first  int64
}

func (tr *tracker) done(op string, err error) bool {
	acctMu.Lock()
	defer acctMu.Unlock()
	c := ops[op]
	if c == nil {
		c = &opCount{}
		ops[op] = c
	}
	c.Sent++
	if err != nil {
		c.Failed++
		nFailures++
		if len(failures) < maxKeptFailures {
			failures = append(failures, failure{op, tr.client, nowMs(), err.Error()})
		}
		if tr.failed == 0 {
			tr.first = nowMs()
		}
		tr.failed++
		return false
	}
	c.OK++
	if tr.failed > 0 {
		recoveries = append(recoveries, recovery{tr.client, nowMs(), tr.first, tr.failed})
		tr.failed = 0
	}
	return true
}

func ack(a acked) {
	acctMu.Lock()
	ackedLog = append(ackedLog, a)
	if a.Op != "del" {
		recent[nRecent%int64(len(recent))] = a
		nRecent++
	}
	acctMu.Unlock()
	for {
		m := atomic.LoadInt64(&maxAcked)
		if a.Rev <= m || atomic.CompareAndSwapInt64(&maxAcked, m, a.Rev) {
			break
		}
	}
}

func recentKey(i int64) (acked, bool) {
	acctMu.Lock()
	defer acctMu.Unlock()
	if nRecent == 0 {
		return acked{}, false
	}
	n := nRecent
	if n > int64(len(recent)) {
		n = int64(len(recent))
	}
	return recent[i%n], true
}

// pause between ops, and a little longer after a failure so that a client
// that lost its server does not spin
func rest(ctx context.Context, ok bool) {
	d := *pace
	if !ok {
		d = 50 * time.Millisecond
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// ------------------------------------------------------------------- load

func writer(ctx context.Context, wg *sync.WaitGroup, i int) {
	defer wg.Done()
	name := fmt.Sprintf("writer%d", i)
	cli := newClient(name)
	tr := &tracker{client: name}
	var puts []string // acknowledged, not yet deleted
	for seq := 0; ctx.Err() == nil; seq++ {
		var ok bool
		if seq%4 == 3 && len(puts) > 1 {
			key := puts[0]
			c, cancel := rpcCtx()
			r, err := cli.Delete(c, key)
			cancel()
			if ok = tr.done("delete", err); ok {
				puts = puts[1:]
				if r.Deleted == 1 {
					ack(acked{"del", key, "", r.Header.Revision, name})
				}
			}
		} else {
			key := fmt.Sprintf("%s/w%d/%06d", *prefix, i, seq)
			val := fmt.Sprintf("%s-%d", name, seq)
			c, cancel := rpcCtx()
			r, err := cli.Put(c, key, val)
			cancel()
			if ok = tr.done("put", err); ok {
				puts = append(puts, key)
				ack(acked{"put", key, val, r.Header.Revision, name})
			}
		}
		rest(ctx, ok)
	}
	cli.Close()
}

func reader(ctx context.Context, wg *sync.WaitGroup, i int) {
	defer wg.Done()
	name := fmt.Sprintf("reader%d", i)
	cli := newClient(name)
	tr := &tracker{client: name}
	for n := int64(0); ctx.Err() == nil; n++ {
		a, have := recentKey(n * 7)
		if !have {
			rest(ctx, true)
			continue
		}
		var opts []clientv3.OpOption
		op := "get"
		if n%2 == 1 {
			opts = append(opts, clientv3.WithSerializable())
			op = "get_serializable"
		}
		before := atomic.LoadInt64(&maxAcked)
		c, cancel := rpcCtx()
		r, err := cli.Get(c, a.Key, opts...)
		cancel()
		ok := tr.done(op, err)
		if ok && op == "get" && r.Header.Revision < before {
			acctMu.Lock()
			staleReads++
			if len(staleEx) < 10 {
				staleEx = append(staleEx, fmt.Sprintf("%s: header %d < acknowledged %d",
					a.Key, r.Header.Revision, before))
			}
			acctMu.Unlock()
		}
		rest(ctx, ok)
	}
	cli.Close()
}

func txner(ctx context.Context, wg *sync.WaitGroup, i int) {
	defer wg.Done()
	name := fmt.Sprintf("txn%d", i)
	cli := newClient(name)
	tr := &tracker{client: name}
	for n := 0; ctx.Err() == nil; n++ {
		key := fmt.Sprintf("%s/txn/k%d", *prefix, (n+i)%4)
		c, cancel := rpcCtx()
		g, err := cli.Get(c, key)
		cancel()
		ok := tr.done("get", err)
		if ok {
			var mod int64
			if len(g.Kvs) == 1 {
				mod = g.Kvs[0].ModRevision
			}
			val := fmt.Sprintf("%s-%d", name, n)
			c, cancel = rpcCtx()
			r, err := cli.Txn(c).
				If(clientv3.Compare(clientv3.ModRevision(key), "=", mod)).
				Then(clientv3.OpPut(key, val)).
				Else(clientv3.OpGet(key)).Commit()
			cancel()
			if ok = tr.done("txn", err); ok && r.Succeeded {
				ack(acked{"txn", key, val, r.Header.Revision, name})
			}
		}
		rest(ctx, ok)
	}
	cli.Close()
}

func main() {
	flag.Parse()
	if *outDir == "" {
		die("-out is required")
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		die("%v", err)
	}

	// where every watch starts: just after the store's current revision
	ctl := newClient("control")
	c, cancel := rpcCtx()
	g, err := ctl.Get(c, *prefix+"/~start")
	cancel()
	if err != nil {
		die("first Get: %v", err)
	}
	start := g.Header.Revision + 1

	// watches first, one after the other: a round-robin balancer then
	// puts them on its servers in turn
	var ws []*watch
	if *watchFl != "" {
		for i, p := range strings.Split(*watchFl, ",") {
			ws = append(ws, startWatch(i, strings.TrimSuffix(*prefix+p, "/")+"/", start))
		}
	}
	var ls []*leaseClient
	for i := 0; i < *nLeaseCl; i++ {
		ls = append(ls, startLeases(i))
	}
	emit("ready", map[string]interface{}{"start_rev": start, "watches": len(ws)})

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < *nWriters; i++ {
		wg.Add(1)
		go writer(ctx, &wg, i)
	}
	for i := 0; i < *nReaders; i++ {
		wg.Add(1)
		go reader(ctx, &wg, i)
	}
	for i := 0; i < *nTxns; i++ {
		wg.Add(1)
		go txner(ctx, &wg, i)
	}
	for _, l := range ls {
		wg.Add(1)
		go l.putter(ctx, &wg)
	}

	progressDone := make(chan struct{})
	go progress(ws, progressDone)

	stopc := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "stop" {
				break
			}
		}
		close(stopc)
	}()
	var timer <-chan time.Time
	if *duration > 0 {
		timer = time.After(*duration)
	}
	select {
	case <-stopc:
	case <-timer:
	}
	stopAt := nowMs()
	stop()
	wg.Wait()

	leases := make([]leaseResult, 0)
	for _, l := range ls {
		leases = append(leases, l.check(ctl)...)
	}

	// a sentinel in each watched prefix; each watch must then receive
	// everything up to the last sentinel that falls in its prefix
	sentinels := map[string]int64{}
	for _, w := range ws {
		// not part of the load: retried (the control client may have
		// been on a node that is gone)
		key := w.prefix + "~end"
		var r *clientv3.PutResponse
		for give := time.Now().Add(*settle); ; {
			c, cancel := rpcCtx()
			r, err = ctl.Put(c, key, "end")
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(give) {
				die("sentinel put %s: %v", key, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		ack(acked{"put", key, "end", r.Header.Revision, "control"})
		sentinels[key] = r.Header.Revision
	}
	for _, w := range ws {
		for k, rev := range sentinels {
			if strings.HasPrefix(k, w.prefix) && rev > w.until {
				w.until = rev
			}
		}
	}
	deadline := time.Now().Add(*settle)
	for _, w := range ws {
		w.waitFor(deadline)
	}
	close(progressDone)

	result := map[string]interface{}{
		"start_rev":   start,
		"stop_ms":     stopAt,
		"last_rev":    atomic.LoadInt64(&maxAcked),
		"leases":      leases,
		"stale_reads": staleReads,
		"stale_ex":    staleEx,
	}
	wr := []interface{}{}
	for i, w := range ws {
		wr = append(wr, w.write(filepath.Join(*outDir, fmt.Sprintf("watch-%d.json", i))))
	}
	result["watches"] = wr
	writeAcked(filepath.Join(*outDir, "acked.jsonl"))

	acctMu.Lock()
	result["ops"] = ops
	result["failed"] = nFailures
	result["failures"] = failures
	result["recoveries"] = recoveries
	result["acked"] = len(ackedLog)
	acctMu.Unlock()
	dials := map[string]int{}
	connsMu.Lock()
	for _, c := range conns {
		dials[c.name], _ = c.snapshot()
	}
	connsMu.Unlock()
	result["dials"] = dials
	emit("result", result)
	for _, l := range ls {
		l.close()
	}
	os.Exit(0)
}

func writeAcked(path string) {
	f, err := os.Create(path)
	if err != nil {
		die("%v", err)
	}
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	acctMu.Lock()
	for _, a := range ackedLog {
		enc.Encode(a)
	}
	acctMu.Unlock()
	if err := bw.Flush(); err != nil {
		die("%s: %v", path, err)
	}
	f.Close()
}

func progress(ws []*watch, done chan struct{}) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		var ok, sent int64
		acctMu.Lock()
		for _, c := range ops {
			ok += c.OK
			sent += c.Sent
		}
		p := map[string]interface{}{
			"t_ms": nowMs(), "ok": ok, "sent": sent, "failed": nFailures,
			"acked": len(ackedLog), "last_rev": atomic.LoadInt64(&maxAcked),
		}
		acctMu.Unlock()
		var members []uint64
		var locals []string
		var lasts []int64
		for _, w := range ws {
			m, l, last := w.state()
			members = append(members, m)
			locals = append(locals, l)
			lasts = append(lasts, last)
		}
		p["watch_member"] = members
		p["watch_local"] = locals
		p["watch_last"] = lasts
		emit("progress", p)
	}
}
