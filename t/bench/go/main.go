// blbench: the load generator of `make bench` (t/bench/run.py).
//
// It drives any etcd v3 endpoint — a real etcd 3.4 or ballast — through
// Debian's Go clientv3 and prints one JSON line per run with the
// throughput, latency percentiles, errors and mode-specific numbers.
//
// Built by t/bench/run.py in GOPATH mode against golang-etcd-server-dev
// (GO111MODULE=off GOPATH=/usr/share/gocode), into objs/bench/.
//
// Usage:
//
//	blbench -mode put|range|txn|list|watch|lease [flags]
//
// Common flags: -endpoints, -conns (gRPC connections), -clients
// (concurrent requesters, spread round-robin over the connections),
// -duration or -total, -key-size, -val-size, -key-space.  See usage() or
// t/bench/README for the modes.
//
// With -sync the program first prepares (connects, preloads), prints
// {"phase":"ready"}, waits for a line on standard input, runs the measured
// load, prints {"phase":"done"} as soon as the last request has finished
// (so the driver can read the servers' CPU counters at both ends), and
// then prints the result.  Without -sync it runs at once.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io/ioutil"
	"math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	"google.golang.org/grpc/grpclog"
)

// ---------------------------------------------------------------- options

type options struct {
	mode        string
	endpoints   []string
	conns       int
	clients     int
	total       int64
	duration    time.Duration
	keySize     int
	valSize     int
	keySpace    int
	consistency string
	rev         string
	limit       int64
	listKeys    int
	valMin      int
	valMax      int
	watchers    int
	preloadKeys int
	streams     int
	putRate     int
	putClients  int
	drain       time.Duration
	settle      time.Duration
	leases      int
	ttl         int64
	opTimeout   time.Duration
	hardTimeout time.Duration
	sync        bool
	seed        int64
	label       string
}

var opt options

func parseFlags() {
	var endpoints string
	flag.StringVar(&opt.mode, "mode", "", "put | range | txn | list | watch | lease")
	flag.StringVar(&endpoints, "endpoints", "127.0.0.1:2379", "comma-separated host:port list")
	flag.IntVar(&opt.conns, "conns", 8, "gRPC connections (clientv3 clients)")
	flag.IntVar(&opt.clients, "clients", 0, "concurrent requesters (default: per mode)")
	flag.Int64Var(&opt.total, "total", 0, "stop after this many operations (instead of -duration)")
	flag.DurationVar(&opt.duration, "duration", 20*time.Second, "how long to run the load")
	flag.IntVar(&opt.keySize, "key-size", 8, "key length in bytes (put, range, txn)")
	flag.IntVar(&opt.valSize, "val-size", 256, "value length in bytes")
	flag.IntVar(&opt.keySpace, "key-space", 0, "number of distinct keys (default: put 10000, txn 1000, watch 100)")
	flag.StringVar(&opt.consistency, "consistency", "l", "range: l (linearizable) or s (serializable)")
	flag.StringVar(&opt.rev, "rev", "current", "list: current, or fixed (a past revision)")
	flag.Int64Var(&opt.limit, "limit", 500, "list: page size")
	flag.IntVar(&opt.listKeys, "list-keys", 10000, "list: keys under the listed prefix")
	flag.IntVar(&opt.valMin, "val-min", 1024, "list: smallest value")
	flag.IntVar(&opt.valMax, "val-max", 4096, "list: largest value")
	flag.IntVar(&opt.watchers, "watchers", 500, "watch: watchers on the prefix")
	flag.IntVar(&opt.streams, "streams", 10, "watch: gRPC Watch streams the watchers share")
	flag.IntVar(&opt.putRate, "put-rate", 100, "watch: puts per second (0: as fast as possible)")
	flag.IntVar(&opt.putClients, "put-clients", 4, "watch: concurrent putters")
	flag.DurationVar(&opt.drain, "drain", 5*time.Second, "watch: how long to wait for the last events")
	flag.DurationVar(&opt.settle, "settle", 0, "watch: pause between the watchers' creation and the first put")
	flag.IntVar(&opt.preloadKeys, "preload-keys", 0, "watch: keys of -val-size bytes written outside the watched prefix first (memory mode)")
	flag.IntVar(&opt.leases, "leases", 1000, "lease: leases kept alive")
	flag.Int64Var(&opt.ttl, "ttl", 300, "lease: TTL of the granted leases (s)")
	flag.DurationVar(&opt.opTimeout, "op-timeout", 10*time.Second, "timeout of one request")
	flag.DurationVar(&opt.hardTimeout, "timeout", 0, "give up the whole run after this (default: duration + 60s, or 10m with -total)")
	flag.BoolVar(&opt.sync, "sync", false, "handshake with the driver on stdin/stdout (see the source)")
	flag.Int64Var(&opt.seed, "seed", 1, "random seed")
	flag.StringVar(&opt.label, "label", "", "free text copied into the result")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: blbench -mode put|range|txn|list|watch|lease [flags]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	opt.endpoints = strings.Split(endpoints, ",")
	if flag.NArg() > 0 && opt.mode == "" {
		opt.mode = flag.Arg(0)
	}
	if opt.clients == 0 {
		switch opt.mode {
		case "list":
			opt.clients = 16
		case "watch":
			opt.clients = opt.putClients
		default:
			opt.clients = 64
		}
	}
	if opt.keySpace == 0 {
		switch opt.mode {
		case "txn":
			opt.keySpace = 1000
		case "watch":
			opt.keySpace = 100
		default:
			opt.keySpace = 10000
		}
	}
	if opt.hardTimeout == 0 {
		if opt.total > 0 {
			opt.hardTimeout = 10 * time.Minute
		} else {
			opt.hardTimeout = opt.duration + 60*time.Second
		}
	}
	if opt.conns < 1 || opt.clients < 1 || opt.keySpace < 1 || opt.valSize < 0 ||
		opt.valMin < 1 || opt.valMax < opt.valMin || opt.limit < 1 {
		fatalf("bad flags")
	}
}

// ---------------------------------------------------------------- output

var stdout = bufio.NewWriter(os.Stdout)
var outMu sync.Mutex

func emit(v interface{}) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	outMu.Lock()
	stdout.Write(b)
	stdout.WriteByte('\n')
	stdout.Flush()
	outMu.Unlock()
}

func fatalf(format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	emit(map[string]interface{}{"mode": opt.mode, "label": opt.label, "fatal": msg})
	fmt.Fprintln(os.Stderr, "blbench:", msg)
	os.Exit(1)
}

// ------------------------------------------------------------- recording

// rec is one requester's record: latencies of the operations that
// succeeded, requests (RPCs) answered in each second of the run, errors.  Each goroutine
// owns one; merge() adds them up once the run is over.
type rec struct {
	lat    []time.Duration
	perSec []int32
	errs   int64
}

type errLog struct {
	mu      sync.Mutex
	samples map[string]int
}

var errs = errLog{samples: map[string]int{}}

func (e *errLog) add(err error) {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	e.mu.Lock()
	if _, ok := e.samples[msg]; ok || len(e.samples) < 20 {
		e.samples[msg]++
	}
	e.mu.Unlock()
}

// run is the measured phase shared by every requester.
type run struct {
	ctx     context.Context
	cancel  context.CancelFunc
	start   time.Time
	issued  int64
	okCount int64
	errs    int64
	aborted int32
	// modes whose operation is several RPCs (txn, list) tick per RPC
	rpcTicks bool
}

func newRun() *run {
	r := &run{}
	r.ctx, r.cancel = context.WithTimeout(context.Background(), opt.hardTimeout)
	return r
}

// begin marks the start of the measured phase.
func (r *run) begin() { r.start = time.Now() }

// next says whether a requester may issue one more operation.
func (r *run) next() bool {
	if r.ctx.Err() != nil {
		return false
	}
	if opt.total > 0 {
		return atomic.AddInt64(&r.issued, 1) <= opt.total
	}
	return time.Since(r.start) < opt.duration
}

func (r *run) ok(rc *rec, began time.Time) {
	now := time.Now()
	rc.lat = append(rc.lat, now.Sub(began))
	if !r.rpcTicks {
		r.tickAt(rc, now)
	}
	atomic.AddInt64(&r.okCount, 1)
}

// tick: one more RPC answered (for stall detection: per_sec).
func (r *run) tick(rc *rec) { r.tickAt(rc, time.Now()) }

func (r *run) tickAt(rc *rec, now time.Time) {
	s := int(now.Sub(r.start) / time.Second)
	for len(rc.perSec) <= s {
		rc.perSec = append(rc.perSec, 0)
	}
	rc.perSec[s]++
}

// fail counts an error; a run whose first 1000 operations all fail is
// stopped (the server does not implement it, or is down).
func (r *run) fail(rc *rec, err error) {
	rc.errs++
	errs.add(err)
	n := atomic.AddInt64(&r.errs, 1)
	if n >= 1000 && atomic.LoadInt64(&r.okCount) == 0 {
		if atomic.CompareAndSwapInt32(&r.aborted, 0, 1) {
			r.cancel()
		}
	}
}

func (r *run) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.ctx, opt.opTimeout)
}

func ms(d time.Duration) float64 {
	return float64(d.Nanoseconds()) / 1e6
}

func round3(x float64) float64 {
	return float64(int64(x*1000+0.5)) / 1000
}

// percentiles of sorted latencies, nearest rank.
func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return round3(ms(sorted[i]))
}

// summary merges the records into the result's common fields.
func (r *run) summary(recs []*rec, elapsed time.Duration) map[string]interface{} {
	var all []time.Duration
	var perSec []int64
	var nerr int64
	for _, rc := range recs {
		all = append(all, rc.lat...)
		for i, n := range rc.perSec {
			for len(perSec) <= i {
				perSec = append(perSec, 0)
			}
			perSec[i] += int64(n)
		}
		nerr += rc.errs
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	res := latencyFields(all)
	secs := elapsed.Seconds()
	res["mode"] = opt.mode
	res["label"] = opt.label
	res["endpoints"] = strings.Join(opt.endpoints, ",")
	res["conns"] = opt.conns
	res["clients"] = opt.clients
	res["seconds"] = round3(secs)
	res["ops"] = len(all)
	res["ops_per_s"] = round3(float64(len(all)) / secs)
	res["errors"] = nerr
	res["aborted"] = atomic.LoadInt32(&r.aborted) == 1 || (r.ctx.Err() == context.DeadlineExceeded)
	res["per_sec"] = perSec
	// whole seconds inside the run in which no request was answered
	full := int(secs)
	stalled := 0
	for i := 0; i < full; i++ {
		if i >= len(perSec) || perSec[i] == 0 {
			stalled++
		}
	}
	res["stalled_seconds"] = stalled
	errs.mu.Lock()
	if len(errs.samples) > 0 {
		res["error_samples"] = errs.samples
	}
	errs.mu.Unlock()
	return res
}

func latencyFields(sorted []time.Duration) map[string]interface{} {
	res := map[string]interface{}{
		"p50_ms":  pct(sorted, 50),
		"p90_ms":  pct(sorted, 90),
		"p99_ms":  pct(sorted, 99),
		"p999_ms": pct(sorted, 99.9),
		"max_ms":  0.0,
	}
	if len(sorted) > 0 {
		res["max_ms"] = round3(ms(sorted[len(sorted)-1]))
		var sum time.Duration
		for _, d := range sorted {
			sum += d
		}
		res["mean_ms"] = round3(ms(sum) / float64(len(sorted)))
	}
	return res
}

// ---------------------------------------------------------------- clients

func newClients(n int) []*clientv3.Client {
	cs := make([]*clientv3.Client, n)
	for i := range cs {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:          opt.endpoints,
			DialTimeout:        5 * time.Second,
			MaxCallSendMsgSize: 8 << 20,
			MaxCallRecvMsgSize: 64 << 20,
		})
		if err != nil {
			fatalf("connect %v: %v", opt.endpoints, err)
		}
		cs[i] = c
	}
	// dial now, not on the first measured request
	for i, c := range cs {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.Get(ctx, "blbench-probe", clientv3.WithSerializable())
		cancel()
		if err != nil {
			fatalf("probe on connection %d: %v", i, err)
		}
	}
	return cs
}

// key i of a key space: decimal, zero-padded to the key size.
func key(prefix string, i int) string {
	w := opt.keySize - len(prefix)
	if w < 1 {
		w = 1
	}
	return fmt.Sprintf("%s%0*d", prefix, w, i)
}

func randBytes(rnd *rand.Rand, n int) []byte {
	const alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alpha[rnd.Intn(len(alpha))]
	}
	return b
}

// parallel runs f(i) for i in [0,n) on `workers` goroutines; the first
// error wins.
func parallel(n, workers int, f func(i int) error) error {
	var next int64 = -1
	var first error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(atomic.AddInt64(&next, 1))
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// ready: preparation done; with -sync, wait for the driver's go-ahead.
func ready(extra map[string]interface{}) {
	if !opt.sync {
		return
	}
	m := map[string]interface{}{"phase": "ready"}
	for k, v := range extra {
		m[k] = v
	}
	emit(m)
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		fatalf("no go-ahead on stdin: %v", err)
	}
}

// done: the measured phase is over.
func done() {
	if opt.sync {
		emit(map[string]interface{}{"phase": "done"})
	}
}

// workers runs `n` requesters body(i, rec) and returns their records and
// the time from begin() until the last one returned.
func (r *run) workers(n int, body func(i int, rc *rec)) ([]*rec, time.Duration) {
	recs := make([]*rec, n)
	var wg sync.WaitGroup
	r.begin()
	for i := 0; i < n; i++ {
		recs[i] = &rec{lat: make([]time.Duration, 0, 4096)}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body(i, recs[i])
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(r.start)
	done()
	return recs, elapsed
}

func main() {
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(ioutil.Discard, ioutil.Discard, os.Stderr))
	parseFlags()
	var res map[string]interface{}
	switch opt.mode {
	case "put":
		res = modePut()
	case "range":
		res = modeRange()
	case "txn":
		res = modeTxn()
	case "list":
		res = modeList()
	case "watch":
		res = modeWatch()
	case "lease":
		res = modeLease()
	default:
		flag.Usage()
		os.Exit(2)
	}
	emit(res)
}
