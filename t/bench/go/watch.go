package main

// watch: fan-out latency and exactly-once delivery.
//
// -watchers watchers on one prefix, spread over -streams gRPC Watch streams
// (clientv3 puts watches whose contexts carry different metadata on
// different streams) and over the -conns connections.  Once every watcher
// is created, -put-clients putters write P puts under the prefix at
// -put-rate per second (P = -total, or rate × -duration); each value
// carries the put's sequence number.  Latency of one event = the time the
// watcher received it − the time its put was acknowledged (negative values,
// event before acknowledgement, count as 0; from_send_* measure from the
// moment the put was sent).  Every watcher must get every put exactly once.
// ops_per_s is events delivered per second.  With -preload-keys, that
// many keys of -val-size bytes are written (outside the prefix) before the
// watchers are created: the memory mode, a server holding a key space and
// many watchers at once.

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	"google.golang.org/grpc/metadata"
)

func modeWatch() map[string]interface{} {
	const prefix = "/bench/watch/"
	if opt.watchers < 1 || opt.streams < 1 || opt.putClients < 1 {
		fatalf("-watchers, -streams and -put-clients must be positive")
	}
	P := int(opt.total)
	if P == 0 {
		rate := opt.putRate
		if rate == 0 {
			fatalf("watch: -put-rate 0 needs -total")
		}
		P = int(float64(rate) * opt.duration.Seconds())
	}
	if opt.valSize < 8 {
		opt.valSize = 8
	}
	cs := newClients(opt.conns)
	N := opt.watchers
	preloadSecs := 0.0
	if opt.preloadKeys > 0 {
		t0 := time.Now()
		err := parallel(opt.preloadKeys, 64, func(i int) error {
			rnd := rand.New(rand.NewSource(opt.seed + int64(i)))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := cs[i%len(cs)].Put(ctx, fmt.Sprintf("/bench/mem/%08d", i),
				string(randBytes(rnd, opt.valSize)))
			return err
		})
		if err != nil {
			fatalf("preload: %v", err)
		}
		preloadSecs = time.Since(t0).Seconds()
	}

	// recv[w][seq]: when watcher w got event seq (ns since start, 0 = not
	// yet); count[w][seq]: how many times
	recv := make([][]int64, N)
	count := make([][]uint8, N)
	got := make([]int64, N)
	createdRev := make([]int64, N) // header revision of each created response
	var extra, badType, canceled, watchErrs int64
	start := time.Now() // every time below is relative to this
	var allDone sync.WaitGroup
	var created sync.WaitGroup
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()

	created.Add(N)
	allDone.Add(N)
	for w := 0; w < N; w++ {
		recv[w] = make([]int64, P)
		count[w] = make([]uint8, P)
		s := w % opt.streams
		cli := cs[s%len(cs)]
		ctx := metadata.AppendToOutgoingContext(wctx, "blbench-stream", strconv.Itoa(s))
		wch := cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
		go func(w int, wch clientv3.WatchChan) {
			defer allDone.Done()
			isCreated := false
			for wr := range wch {
				if wr.Created && !isCreated {
					isCreated = true
					createdRev[w] = wr.Header.Revision
					created.Done()
					continue
				}
				if err := wr.Err(); err != nil || wr.Canceled {
					if wctx.Err() == nil {
						atomic.AddInt64(&canceled, 1)
						if err != nil {
							errs.add(err)
						}
					}
					break
				}
				now := int64(time.Since(start))
				if now == 0 {
					now = 1
				}
				for _, ev := range wr.Events {
					if ev.Type != clientv3.EventTypePut {
						atomic.AddInt64(&badType, 1)
						continue
					}
					v := ev.Kv.Value
					if len(v) < 8 {
						atomic.AddInt64(&extra, 1)
						continue
					}
					seq := int(binary.BigEndian.Uint64(v))
					if seq < 0 || seq >= P {
						atomic.AddInt64(&extra, 1)
						continue
					}
					if count[w][seq] == 0 {
						recv[w][seq] = now
						atomic.AddInt64(&got[w], 1)
					}
					if count[w][seq] < 255 {
						count[w][seq]++
					}
				}
			}
			if !isCreated {
				created.Done()
			}
		}(w, wch)
	}
	if !waitTimeout(&created, 60*time.Second) {
		fatalf("watch: not all %d watchers were created within 60 s", N)
	}
	if n := atomic.LoadInt64(&canceled); n > 0 {
		fatalf("watch: %d watchers canceled at creation", n)
	}
	ready(nil)
	time.Sleep(opt.settle)

	// puts
	sent := make([]int64, P)
	acked := make([]int64, P)
	putRev := make([]int64, P)
	r := newRun()
	seqs := make(chan int, 1024)
	putStart := time.Now()
	r.start = putStart
	go func() {
		defer close(seqs)
		for i := 0; i < P; i++ {
			if opt.putRate > 0 {
				at := putStart.Add(time.Duration(float64(i) / float64(opt.putRate) * float64(time.Second)))
				if d := time.Until(at); d > 0 {
					time.Sleep(d)
				}
			}
			select {
			case seqs <- i:
			case <-r.ctx.Done():
				return
			}
		}
	}()
	var putRecs []*rec
	var pw sync.WaitGroup
	for p := 0; p < opt.putClients; p++ {
		rc := &rec{}
		putRecs = append(putRecs, rc)
		pw.Add(1)
		go func(p int, rc *rec) {
			defer pw.Done()
			cli := cs[p%len(cs)]
			rnd := rand.New(rand.NewSource(opt.seed + int64(p)))
			val := randBytes(rnd, opt.valSize)
			for seq := range seqs {
				v := make([]byte, len(val))
				copy(v, val)
				binary.BigEndian.PutUint64(v, uint64(seq))
				k := fmt.Sprintf("%s%06d", prefix, seq%opt.keySpace)
				ctx, cancel := r.opCtx()
				t0 := time.Now()
				sent[seq] = int64(t0.Sub(start))
				pr, err := cli.Put(ctx, k, string(v))
				cancel()
				if err != nil {
					sent[seq] = -1
					r.fail(rc, err)
					continue
				}
				acked[seq] = int64(time.Since(start))
				putRev[seq] = pr.Header.Revision
				r.ok(rc, t0)
			}
		}(p, rc)
	}
	pw.Wait()
	putsEnd := time.Since(putStart)

	// wait until every watcher has every acknowledged put, or -drain
	var okPuts int64
	for i := 0; i < P; i++ {
		if sent[i] >= 0 && acked[i] > 0 {
			okPuts++
		}
	}
	deadline := time.Now().Add(opt.drain)
	for time.Now().Before(deadline) {
		all := true
		for w := 0; w < N; w++ {
			if atomic.LoadInt64(&got[w]) < okPuts {
				all = false
				break
			}
		}
		if all {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	// the last event in: the end of the measured phase
	var last int64
	for w := 0; w < N; w++ {
		for _, t := range recv[w] {
			if t > last {
				last = t
			}
		}
	}
	done()
	// a moment for duplicates to show, then stop the watchers
	time.Sleep(200 * time.Millisecond)
	wcancel()
	waitTimeout(&allDone, 10*time.Second)

	var lat, fromSend []time.Duration
	var delivered, missing, dups, beforeAck int64
	perfect := 0
	missedBy := make([]int, P) // how many watchers missed put seq
	for w := 0; w < N; w++ {
		okw := true
		for seq := 0; seq < P; seq++ {
			c := count[w][seq]
			if acked[seq] == 0 || sent[seq] < 0 {
				// failed put: an event may or may not come
				if c > 1 {
					dups += int64(c) - 1
					okw = false
				}
				continue
			}
			switch {
			case c == 0:
				missing++
				missedBy[seq]++
				okw = false
				continue
			case c > 1:
				dups += int64(c) - 1
				okw = false
			}
			delivered++
			d := recv[w][seq] - acked[seq]
			if d < 0 {
				beforeAck++
				d = 0
			}
			lat = append(lat, time.Duration(d))
			fromSend = append(fromSend, time.Duration(recv[w][seq]-sent[seq]))
		}
		if okw {
			perfect++
		}
	}
	// events received in each second since the first put; a second of
	// the put phase without any is a stall
	off := int64(putStart.Sub(start))
	var evSec []int64
	for w := 0; w < N; w++ {
		for _, t := range recv[w] {
			if t == 0 {
				continue
			}
			sec := int((t - off) / int64(time.Second))
			if sec < 0 {
				sec = 0
			}
			for len(evSec) <= sec {
				evSec = append(evSec, 0)
			}
			evSec[sec]++
		}
	}
	stalled := 0
	for i := 0; i < int(putsEnd.Seconds()); i++ {
		if i >= len(evSec) || evSec[i] == 0 {
			stalled++
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	sort.Slice(fromSend, func(i, j int) bool { return fromSend[i] < fromSend[j] })

	elapsed := time.Duration(last) - putStart.Sub(start)
	if elapsed < putsEnd {
		elapsed = putsEnd
	}
	// put-side numbers (errors, per-second) from the run summary
	putSum := r.summary(putRecs, putsEnd)
	res := latencyFields(lat)
	for _, k := range []string{"mode", "label", "endpoints", "conns", "aborted", "error_samples"} {
		if v, ok := putSum[k]; ok {
			res[k] = v
		}
	}
	secs := elapsed.Seconds()
	sendLat := latencyFields(fromSend)
	res["from_send_p50_ms"] = sendLat["p50_ms"]
	res["from_send_p99_ms"] = sendLat["p99_ms"]
	res["clients"] = opt.putClients
	res["watchers"] = N
	res["preload_keys"] = opt.preloadKeys
	res["preload_s"] = round3(preloadSecs)
	res["streams"] = opt.streams
	res["puts"] = P
	res["puts_ok"] = okPuts
	res["put_rate"] = opt.putRate
	res["puts_per_s"] = putSum["ops_per_s"]
	res["put_p50_ms"] = putSum["p50_ms"]
	res["put_p99_ms"] = putSum["p99_ms"]
	res["seconds"] = round3(secs)
	res["ops"] = delivered
	res["ops_per_s"] = round3(float64(delivered) / secs)
	res["events_expected"] = okPuts * int64(N)
	res["events_missing"] = missing
	res["events_duplicated"] = dups
	res["events_foreign"] = extra
	res["events_wrong_type"] = badType
	res["events_before_ack"] = beforeAck
	res["watchers_canceled"] = canceled
	res["watchers_exactly_once"] = perfect
	minC, maxC := createdRev[0], createdRev[0]
	for _, c := range createdRev {
		if c < minC {
			minC = c
		}
		if c > maxC {
			maxC = c
		}
	}
	res["created_rev_min"] = minC
	res["created_rev_max"] = maxC
	// the puts some watcher missed: "seq@revision": watchers that missed it
	if missing > 0 {
		m := map[string]int{}
		for seq, n := range missedBy {
			if n > 0 && len(m) < 10 {
				m[fmt.Sprintf("put %d @rev %d", seq, putRev[seq])] = n
			}
		}
		res["missed_puts"] = m
	}
	res["exactly_once"] = perfect == N && extra == 0 && badType == 0
	res["errors"] = putSum["errors"].(int64) + missing + dups + extra + badType + canceled + watchErrs
	res["stalled_seconds"] = stalled
	res["per_sec"] = evSec
	res["puts_per_sec"] = putSum["per_sec"]
	return res
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	c := make(chan struct{})
	go func() { wg.Wait(); close(c) }()
	select {
	case <-c:
		return true
	case <-time.After(d):
		return false
	}
}
