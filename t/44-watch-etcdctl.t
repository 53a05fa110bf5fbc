#!/usr/bin/python3
# Watch through independent clients: etcdctl 3.4 (`etcdctl watch`:
# --prefix, --rev, --prev-kv, ranges, -w json, a compacted start) and
# python-etcd3's watch API (watch, watch_prefix, watch_once, callbacks,
# cancel), what they show compared between a real etcd 3.4 and the target
# (BLDIFF_TARGET=etcd: a second etcd).
import json, os, re, signal, subprocess, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import blwatch

t = bltest.Tap()
p = blwatch.Pair(t)


class CtlWatch:
    """`etcdctl watch ARGS` running in the background."""

    def __init__(self, endpoint, args):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
        env["ETCDCTL_API"] = "3"
        self.proc = subprocess.Popen(
            ["setpriv", "--pdeathsig", "KILL", "--", bltest.ETCDCTL,
             f"--endpoints={endpoint}", "--dial-timeout=2s", "watch", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, text=True)

    def finish(self, wait=1.0):
        """(exit status, stdout, the Error: lines of stderr), after letting
        it run `wait` more seconds (then SIGTERM, as a user's ^C)."""
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        errs = [l for l in err.splitlines() if l.startswith("Error:") or "canceled" in l]
        return self.proc.returncode, out, errs


def json_norm(out):
    """-w json prints one WatchResponse per line: drop the ids."""
    docs = []
    for line in out.splitlines():
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except ValueError:
            docs.append(line)
            continue
        d.get("Header", {}).pop("cluster_id", None)
        d.get("Header", {}).pop("member_id", None)
        d.get("Header", {}).pop("raft_term", None)
        docs.append(d)
    return docs


def run(name, args, writes=(), fmt=None):
    ws = [CtlWatch(ep, args) for ep in p.endpoints]
    time.sleep(1.0)            # connected and created
    for w in writes:
        w()
    res = [w.finish() for w in ws]
    if fmt == "json":
        res = [(rc, json_norm(out), errs) for rc, out, errs in res]
    p.same(f"etcdctl watch {' '.join(args)}: {name}", res[0], res[1])
    return res[1]


p.put("foo", "0")                 # 2
p.put("foo/a", "1")               # 3
p.put("zoo", "1")                 # 4
p.delete("foo/a")                 # 5
p.put("foo/b", "x", lease=0)      # 6

rc, out, _ = run("live prefix", ["--prefix", "foo"],
                 [lambda: p.put("foo/c", "1"), lambda: p.put("bar", "1"),
                  lambda: p.delete("foo/c"), lambda: p.put("foo", "2")])
t.is_(out.split("\n")[:6], ["PUT", "foo/c", "1", "DELETE", "foo/c", ""],
      "etcdctl watch prints the events")
run("history with prev_kv", ["--prefix", "foo", "--rev", "2", "--prev-kv"])
rc, docs, _ = run("history, json", ["--prefix", "foo", "--rev", "3", "--prev-kv", "-w",
                                     "json"], fmt="json")
t.is_([len(d.get("Events") or []) if isinstance(d, dict) else d for d in docs], [6],
      "etcdctl -w json: one response with the 6 events from revision 3")
run("a range", ["foo", "zoo", "--rev", "1"])
run("a single key, live, json", ["foo", "-w", "json"],
    [lambda: p.put("foo", "3"), lambda: p.put("foo", "4")], fmt="json")
run("from a future revision", ["foo", "--rev", str(p.kv[1].rev() + 2)],
    [lambda: p.put("foo", "5"), lambda: p.put("foo", "6"), lambda: p.put("foo", "7")])
cur = p.put("foo", "8")
p.compact(cur)
rc, out, errs = run("below the compact revision", ["foo", "--rev", "2"])
t.ok(any("compacted" in l for l in errs) or "compacted" in out,
     "etcdctl reports the compaction: " + repr(errs or out))
run("at the compact revision", ["foo", "--rev", str(cur), "--prev-kv"])

# ---------------------------------------------------------------- python-etcd3
import threading
import etcd3.events


def pyev(e):
    d = {"type": type(e).__name__, "key": e.key, "value": e.value,
         "create_revision": e.create_revision, "mod_revision": e.mod_revision,
         "version": e.version, "lease": e.lease}
    if e._event.HasField("prev_kv"):
        d["prev"] = (e.prev_value, e.prev_mod_revision)
    return d


clients = [bltest.etcd3_client(ep) for ep in p.endpoints]
p.settle()
its = [c.watch_prefix("py/", prev_kv=True) for c in clients]
got = [[], []]


def drain(i):
    for e in its[i][0]:
        got[i].append(pyev(e))
        if len(got[i]) == 4:
            break


readers = [threading.Thread(target=drain, args=(i,), daemon=True) for i in (0, 1)]
for r in readers:
    r.start()
time.sleep(0.5)
p.put("py/a", "1")
p.put("py/a", "2")
p.delete("py/a")
p.put("py/b", b"\xff\x00")
for r in readers:
    r.join(10)
for it in its:
    it[1]()                        # cancel
p.same("etcd3 watch_prefix(prev_kv): the events", got[0], got[1])
t.is_(len(got[1]), 4, "etcd3 watch_prefix: four events")

p.settle()
once = [None, None]
def wait_once(i):
    try:
        once[i] = pyev(clients[i].watch_once("py/once", timeout=10))
    except Exception as e:             # etcd3.exceptions.WatchTimedOut
        once[i] = type(e).__name__
ws = [threading.Thread(target=wait_once, args=(i,), daemon=True) for i in (0, 1)]
for w in ws:
    w.start()
time.sleep(0.5)
p.put("py/once", "x")
for w in ws:
    w.join(15)
p.same("etcd3 watch_once", once[0], once[1])

start = p.kv[1].rev() - 3
hist = []
for c in clients:
    it, cancel = c.watch_prefix("py/", start_revision=start)
    evs = []
    for e in it:
        evs.append(pyev(e))
        if len(evs) == 4:
            break
    cancel()
    hist.append(evs)
p.same("etcd3 watch_prefix(start_revision): history", hist[0], hist[1])

cb = [[], []]
p.settle()
ids = [c.add_watch_callback("py/cb", lambda r, i=i: cb[i].append(
           [pyev(e) for e in r.events]), prev_kv=True) for i, c in enumerate(clients)]
time.sleep(0.5)
p.put("py/cb", "1")
p.put("py/cb", "2")
time.sleep(1.0)
for c, wid in zip(clients, ids):
    c.cancel_watch(wid)
time.sleep(0.5)
p.put("py/cb", "3")
time.sleep(0.5)
p.same("etcd3 add_watch_callback, then cancel_watch", cb[0], cb[1])
t.is_(len(cb[1]), 2, "etcd3: two callbacks, none after cancel_watch")
# (the clients are not closed: python-etcd3's watch thread would try to
# open a new stream on the closed channel and print a traceback)
t.done()
