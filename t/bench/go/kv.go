package main

// KV modes: put, range, txn, list.

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
)

// put: -clients requesters each put a random key of the key space (256 B
// values by default).  One operation = one Put.
func modePut() map[string]interface{} {
	cs := newClients(opt.conns)
	ready(nil)
	r := newRun()
	recs, elapsed := r.workers(opt.clients, func(i int, rc *rec) {
		cli := cs[i%len(cs)]
		rnd := rand.New(rand.NewSource(opt.seed + int64(i)))
		val := string(randBytes(rnd, opt.valSize))
		for r.next() {
			k := key("", rnd.Intn(opt.keySpace))
			ctx, cancel := r.opCtx()
			t0 := time.Now()
			_, err := cli.Put(ctx, k, val)
			cancel()
			if err != nil {
				r.fail(rc, err)
				continue
			}
			r.ok(rc, t0)
		}
	})
	res := r.summary(recs, elapsed)
	res["key_space"] = opt.keySpace
	res["val_size"] = opt.valSize
	return res
}

// range: one key, read over and over, linearizable (-consistency l) or
// serializable (s).  One operation = one Range.
func modeRange() map[string]interface{} {
	if opt.consistency != "l" && opt.consistency != "s" {
		fatalf("-consistency must be l or s")
	}
	cs := newClients(opt.conns)
	const k = "/bench/range/key"
	val := string(randBytes(rand.New(rand.NewSource(opt.seed)), opt.valSize))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := cs[0].Put(ctx, k, val)
	cancel()
	if err != nil {
		fatalf("preload: %v", err)
	}
	var opts []clientv3.OpOption
	if opt.consistency == "s" {
		opts = append(opts, clientv3.WithSerializable())
	}
	ready(nil)
	r := newRun()
	var bad int64
	recs, elapsed := r.workers(opt.clients, func(i int, rc *rec) {
		cli := cs[i%len(cs)]
		for r.next() {
			ctx, cancel := r.opCtx()
			t0 := time.Now()
			resp, err := cli.Get(ctx, k, opts...)
			cancel()
			if err != nil {
				r.fail(rc, err)
				continue
			}
			if len(resp.Kvs) != 1 || len(resp.Kvs[0].Value) != opt.valSize {
				atomic.AddInt64(&bad, 1)
				r.fail(rc, fmt.Errorf("range returned %d kvs", len(resp.Kvs)))
				continue
			}
			r.ok(rc, t0)
		}
	})
	res := r.summary(recs, elapsed)
	res["consistency"] = opt.consistency
	res["wrong_answers"] = bad
	return res
}

// txn: Kubernetes' optimistic update (GuaranteedUpdate): Get the key, then
// Txn{ MOD(k) = rev → Put(k) else Get(k) }; on conflict retry the Txn with
// the revision the else branch returned.  One operation = one update, from
// the Get to the Txn that succeeded.
func modeTxn() map[string]interface{} {
	cs := newClients(opt.conns)
	const prefix = "/bench/txn/"
	opt.keySize = len(prefix) + 8
	val0 := string(randBytes(rand.New(rand.NewSource(opt.seed)), opt.valSize))
	err := parallel(opt.keySpace, 32, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := cs[i%len(cs)].Put(ctx, key(prefix, i), val0)
		return err
	})
	if err != nil {
		fatalf("preload: %v", err)
	}
	ready(nil)
	r := newRun()
	r.rpcTicks = true
	var txns, gets, conflicts, giveups int64
	recs, elapsed := r.workers(opt.clients, func(i int, rc *rec) {
		cli := cs[i%len(cs)]
		rnd := rand.New(rand.NewSource(opt.seed + int64(i)))
		val := string(randBytes(rnd, opt.valSize))
	outer:
		for r.next() {
			k := key(prefix, rnd.Intn(opt.keySpace))
			t0 := time.Now()
			ctx, cancel := r.opCtx()
			g, err := cli.Get(ctx, k)
			cancel()
			atomic.AddInt64(&gets, 1)
			if err != nil {
				r.fail(rc, err)
				continue
			}
			r.tick(rc)
			var rev int64
			if len(g.Kvs) == 1 {
				rev = g.Kvs[0].ModRevision
			}
			for attempt := 0; ; attempt++ {
				if attempt == 20 {
					atomic.AddInt64(&giveups, 1)
					r.fail(rc, fmt.Errorf("update of %s: 20 conflicts in a row", k))
					continue outer
				}
				ctx, cancel := r.opCtx()
				t, err := cli.Txn(ctx).
					If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
					Then(clientv3.OpPut(k, val)).
					Else(clientv3.OpGet(k)).
					Commit()
				cancel()
				atomic.AddInt64(&txns, 1)
				if err != nil {
					r.fail(rc, err)
					continue outer
				}
				r.tick(rc)
				if t.Succeeded {
					break
				}
				atomic.AddInt64(&conflicts, 1)
				rr := t.Responses[0].GetResponseRange()
				if rr == nil || len(rr.Kvs) != 1 {
					r.fail(rc, fmt.Errorf("txn else branch: no range response"))
					continue outer
				}
				if rr.Kvs[0].ModRevision == rev {
					r.fail(rc, fmt.Errorf("txn failed although MOD(%s) = %d", k, rev))
					continue outer
				}
				rev = rr.Kvs[0].ModRevision
			}
			r.ok(rc, t0)
		}
	})
	res := r.summary(recs, elapsed)
	secs := elapsed.Seconds()
	res["key_space"] = opt.keySpace
	res["txns"] = txns
	res["txns_per_s"] = round3(float64(txns) / secs)
	res["gets"] = gets
	res["conflicts"] = conflicts
	res["give_ups"] = giveups
	return res
}

// list: -list-keys keys of -val-min..-val-max bytes under one prefix, listed
// as Kubernetes lists: pages of -limit, each next page from the last key
// at the first page's revision (-rev current), or every page at a fixed
// past revision (-rev fixed: the revision after the preload, before 10%
// of the keys were rewritten).  One operation = one whole list.
func modeList() map[string]interface{} {
	if opt.rev != "current" && opt.rev != "fixed" {
		fatalf("-rev must be current or fixed")
	}
	cs := newClients(opt.conns)
	const prefix = "/registry/pods/"
	const meta = "/bench-meta/list"
	end := clientv3.GetPrefixRangeEnd(prefix)
	want := fmt.Sprintf("keys=%d vals=%d-%d", opt.listKeys, opt.valMin, opt.valMax)

	// preload once per server: a later run on the same server reuses it
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	m, err := cs[0].Get(ctx, meta)
	cancel()
	if err != nil {
		fatalf("preload: %v", err)
	}
	var fixedRev int64
	preloadSecs := 0.0
	if len(m.Kvs) == 1 && strings.HasPrefix(string(m.Kvs[0].Value), want+" rev=") {
		fixedRev, _ = strconv.ParseInt(strings.TrimPrefix(string(m.Kvs[0].Value), want+" rev="), 10, 64)
	} else {
		t0 := time.Now()
		keyOf := func(i int) string { return fmt.Sprintf("%sns-%02d/pod-%06d", prefix, i%50, i) }
		put := func(i int, seed int64) error {
			rnd := rand.New(rand.NewSource(seed))
			v := randBytes(rnd, opt.valMin+rnd.Intn(opt.valMax-opt.valMin+1))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := cs[i%len(cs)].Put(ctx, keyOf(i), string(v))
			return err
		}
		if err := parallel(opt.listKeys, 64, func(i int) error { return put(i, opt.seed+int64(i)) }); err != nil {
			fatalf("preload: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		g, err := cs[0].Get(ctx, meta)
		cancel()
		if err != nil {
			fatalf("preload: %v", err)
		}
		fixedRev = g.Header.Revision
		// rewrite every tenth key, so that fixedRev is in the past
		if err := parallel(opt.listKeys/10, 64, func(i int) error { return put(i*10, -opt.seed-int64(i)) }); err != nil {
			fatalf("preload: %v", err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		_, err = cs[0].Put(ctx, meta, fmt.Sprintf("%s rev=%d", want, fixedRev))
		cancel()
		if err != nil {
			fatalf("preload: %v", err)
		}
		// Both servers are measured in their steady state, not in the
		// minute after a bulk load: etcd rewrites its bbolt file, ballast
		// runs VACUUM ANALYZE (without which PostgreSQL has neither the
		// visibility map for index-only counts nor statistics for the
		// new rows until autovacuum's next round).
		for _, ep := range opt.endpoints {
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			_, err := cs[0].Defragment(ctx, ep)
			cancel()
			if err != nil {
				fatalf("preload: defragment %s: %v", ep, err)
			}
		}
		preloadSecs = time.Since(t0).Seconds()
	}
	ready(map[string]interface{}{"fixed_rev": fixedRev})

	r := newRun()
	r.rpcTicks = true
	var pages, objects, bytes, short int64
	recs, elapsed := r.workers(opt.clients, func(i int, rc *rec) {
		cli := cs[i%len(cs)]
	outer:
		for r.next() {
			t0 := time.Now()
			from := prefix
			rev := int64(0)
			if opt.rev == "fixed" {
				rev = fixedRev
			}
			n := 0
			for {
				opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(opt.limit)}
				if rev != 0 {
					opts = append(opts, clientv3.WithRev(rev))
				}
				ctx, cancel := r.opCtx()
				resp, err := cli.Get(ctx, from, opts...)
				cancel()
				if err != nil {
					r.fail(rc, err)
					continue outer
				}
				atomic.AddInt64(&pages, 1)
				r.tick(rc)
				if rev == 0 {
					rev = resp.Header.Revision
				}
				for _, kv := range resp.Kvs {
					atomic.AddInt64(&bytes, int64(len(kv.Key)+len(kv.Value)))
				}
				n += len(resp.Kvs)
				if !resp.More || len(resp.Kvs) == 0 {
					break
				}
				from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
			}
			atomic.AddInt64(&objects, int64(n))
			if n != opt.listKeys {
				atomic.AddInt64(&short, 1)
				r.fail(rc, fmt.Errorf("list at rev %d returned %d objects, not %d", rev, n, opt.listKeys))
				continue
			}
			r.ok(rc, t0)
		}
	})
	res := r.summary(recs, elapsed)
	secs := elapsed.Seconds()
	res["rev"] = opt.rev
	res["fixed_rev"] = fixedRev
	res["list_keys"] = opt.listKeys
	res["limit"] = opt.limit
	res["pages_per_s"] = round3(float64(pages) / secs)
	res["objects_per_s"] = round3(float64(objects) / secs)
	res["mib_per_s"] = round3(float64(bytes) / secs / (1 << 20))
	res["wrong_counts"] = short
	if preloadSecs > 0 {
		res["preload_s"] = round3(preloadSecs)
	}
	return res
}
