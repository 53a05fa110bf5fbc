package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
)

// one watch on a prefix, on its own client; clientv3 resumes it by itself
// when its stream breaks.  Should the channel close anyway (clientv3 gave
// up), the watch is opened again at the next revision and the closure is
// counted: a test expects none.
type watch struct {
	n      int
	prefix string
	start  int64
	until  int64 // set at the end: the last revision it must receive
	cli    *clientv3.Client
	conn   *conn
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	events   [][3]interface{} // rev, key, PUT|DELETE
	last     int64
	member   uint64
	members  [][2]interface{} // member id (hex), first revision from it
	closures int
	errors   []string
	progress int // responses without events
}

func startWatch(n int, prefix string, start int64) *watch {
	w := &watch{n: n, prefix: prefix, start: start, errors: []string{},
		events: [][3]interface{}{}, members: [][2]interface{}{}}
	w.cli = newClient(fmt.Sprintf("watch%d", n))
	connsMu.Lock()
	w.conn = conns[len(conns)-1]
	connsMu.Unlock()
	w.ctx, w.cancel = context.WithCancel(context.Background())

	ch := w.open(start)
	select {
	case r, ok := <-ch:
		if !ok || !r.Created {
			die("watch %s: no created response (%v)", prefix, r.Err())
		}
		w.note(r)
	case <-time.After(10 * time.Second):
		die("watch %s: not created within 10 s", prefix)
	}
	go w.run(ch)
	return w
}

func (w *watch) open(rev int64) clientv3.WatchChan {
	return w.cli.Watch(w.ctx, w.prefix, clientv3.WithPrefix(),
		clientv3.WithRev(rev), clientv3.WithCreatedNotify())
}

func (w *watch) note(r clientv3.WatchResponse) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if r.Header.MemberId != w.member {
		from := w.last + 1
		if len(r.Events) > 0 {
			from = r.Events[0].Kv.ModRevision
		}
		w.member = r.Header.MemberId
		w.members = append(w.members, [2]interface{}{
			fmt.Sprintf("%x", r.Header.MemberId), from})
	}
	if len(r.Events) == 0 && !r.Created {
		w.progress++
	}
	for _, ev := range r.Events {
		w.events = append(w.events, [3]interface{}{
			ev.Kv.ModRevision, string(ev.Kv.Key), ev.Type.String()})
		w.last = ev.Kv.ModRevision
	}
}

func (w *watch) run(ch clientv3.WatchChan) {
	for {
		for r := range ch {
			if err := r.Err(); err != nil || r.Canceled || r.CompactRevision != 0 {
				w.mu.Lock()
				w.errors = append(w.errors, fmt.Sprintf("at %d: canceled %v, "+
					"compact %d: %v", w.last, r.Canceled, r.CompactRevision, err))
				w.mu.Unlock()
				continue
			}
			w.note(r)
		}
		if w.ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		w.closures++
		next := w.start
		if w.last > 0 {
			next = w.last + 1
		}
		w.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
		ch = w.open(next)
	}
}

func (w *watch) state() (uint64, string, int64) {
	_, local := w.conn.snapshot()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.member, local, w.last
}

// waitFor gives the watch until deadline to receive w.until
func (w *watch) waitFor(deadline time.Time) {
	for time.Now().Before(deadline) {
		w.mu.Lock()
		last := w.last
		w.mu.Unlock()
		if last >= w.until {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// write puts the whole record into path and returns it without the events
func (w *watch) write(path string) map[string]interface{} {
	w.cancel()
	dials, _ := w.conn.snapshot()
	w.mu.Lock()
	rec := map[string]interface{}{
		"prefix": w.prefix, "start": w.start, "until": w.until,
		"received": len(w.events), "last": w.last,
		"complete": w.last >= w.until, "members": w.members,
		"closures": w.closures, "errors": w.errors, "dials": dials,
		"progress": w.progress,
	}
	full := map[string]interface{}{"events": w.events}
	for k, v := range rec {
		full[k] = v
	}
	b, err := json.Marshal(full)
	w.mu.Unlock()
	if err != nil {
		die("%v", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		die("%v", err)
	}
	w.cli.Close()
	return rec
}
