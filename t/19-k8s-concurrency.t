#!/usr/bin/python3
# C96 under load: 32 clients (threads, one python-etcd3 connection each) do
# Kubernetes-style optimistic writes on a few keys against the server under
# test alone (ballast on PostgreSQL with fsync on; a real etcd with
# BLDIFF_TARGET=etcd), for a bounded time:
#   create = Txn{MOD(k)==0 -> Put k "0"}
#   update = Txn{MOD(k)==rv -> Put k n+1, else Get k}  (retry with the Get)
# Checks: exactly one winner per (key, rv); every key's final version is the
# number of its successful writes and its value the number of its updates;
# the successful writes' revisions are exactly 2..last, each once; and on
# ballast that ballast_log holds every revision from 2 to the last, one row
# per write, for the key that write reported.
#
#   BALLAST_CONC_SECONDS=N   how long the clients run (default 10)
import os, random, sys, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import bldiff

CLIENTS = 32
KEYS = [f"/registry/configmaps/default/cm{i}" for i in range(4)]
SECONDS = float(os.environ.get("BALLAST_CONC_SECONDS") or 10)

t = bltest.Tap()
tgt = bldiff.Target(t, fsync=True)
clients = [bltest.etcd3_client(tgt.endpoint) for _ in range(CLIENTS)]

lock = threading.Lock()
wins = []          # (key, compared rv, new revision, new value)
conflicts = [0]
errors = []        # (thread, repr) of anything that is not a clean answer


def worker(n, c, deadline):
    import grpc
    rng = random.Random(n)
    T = c.transactions
    state = {}                          # key -> (value, mod_revision) or None: absent
    while time.monotonic() < deadline:
        key = rng.choice(KEYS)
        try:
            if key not in state:
                v, meta = c.get(key)
                state[key] = None if meta is None else (int(v), meta.mod_revision)
            cur = state[key]
            if cur is None:
                rv, value = 0, 0
                ok, resps = c.transaction(compare=[T.mod(key) == 0],
                                          success=[T.put(key, "0")], failure=[T.get(key)])
            else:
                rv, value = cur[1], cur[0] + 1
                ok, resps = c.transaction(compare=[T.mod(key) == rv],
                                          success=[T.put(key, str(value))], failure=[T.get(key)])
            if ok:
                rev = resps[0].response_put.header.revision
                with lock:
                    wins.append((key, rv, rev, value))
                state[key] = (value, rev)
            else:
                with lock:
                    conflicts[0] += 1
                kvs = resps[0] if resps else []
                state[key] = (int(kvs[0][0]), kvs[0][1].mod_revision) if kvs else None
        except (grpc.RpcError, Exception) as e:     # noqa: B014 -- report, don't die
            with lock:
                errors.append((n, repr(e)[:300]))
            state.pop(key, None)
            time.sleep(0.05)


deadline = time.monotonic() + SECONDS
threads = [threading.Thread(target=worker, args=(i, clients[i], deadline), daemon=True)
           for i in range(CLIENTS)]
began = time.monotonic()
for th in threads:
    th.start()
for th in threads:
    th.join(SECONDS + 30)
took = time.monotonic() - began
t.ok(not any(th.is_alive() for th in threads), f"all {CLIENTS} clients stopped in time")
t.diag(f"{len(wins)} successful writes, {conflicts[0]} conflicts, {len(errors)} errors "
       f"in {took:.1f} s ({len(wins) / took:.0f} writes/s)")
t.is_(errors[:5], [], "C96 no client got an error (conflicts answer with Else-Get)")
t.ok(len(wins) >= len(KEYS) and conflicts[0] > 0,
     f"C96 there was contention ({len(wins)} wins, {conflicts[0]} conflicts)")

# exactly one winner per (key, rv)
pairs = {}
for key, rv, rev, value in wins:
    pairs.setdefault((key, rv), []).append(rev)
dups = {k: v for k, v in pairs.items() if len(v) > 1}
t.is_(dups, {}, "C96 exactly one winner per (key, compared mod_revision)")
creates = [w for w in wins if w[1] == 0]
t.is_(sorted(w[0] for w in creates), sorted(KEYS), "C96 exactly one create per key")

# revisions: the writes took 2..last, each exactly once
revs = sorted(w[2] for w in wins)
last = revs[-1] if revs else 1
t.is_(revs, list(range(2, last + 1)), f"C96 successful writes took revisions 2..{last}, each once")

# final state per key
c = clients[0]
for key in KEYS:
    v, meta = c.get(key)
    mine = [w for w in wins if w[0] == key]
    want = (len(mine), len(mine) - 1, max((w[2] for w in mine), default=None))
    got = (meta and meta.version, v is not None and int(v), meta and meta.mod_revision)
    t.is_(got, want, f"C96 {key.rsplit('/', 1)[1]}: version = writes, value = updates, "
                     f"mod_revision = last write")
    chain = sorted(mine, key=lambda w: w[2])
    t.ok(all(a[2] == b[1] for a, b in zip(chain, chain[1:])),
         f"C96 {key.rsplit('/', 1)[1]}: each update compared the previous write's revision")
r = c.get_response(KEYS[0])
t.is_(r.header.revision, last, "C96 the store revision is the last write's (no other revision taken)")

if tgt.kind == "ballast":
    row = tgt.psql("SELECT count(*), count(DISTINCT rev), min(rev), max(rev) FROM ballast_log").split("|")
    t.is_([int(x or 0) for x in row], [last - 1, last - 1, 2, last],
          f"C96 ballast_log: one row per revision, every revision 2..{last}")
    logged = tgt.psql("SELECT rev, convert_from(key, 'UTF8') FROM ballast_log ORDER BY rev")
    got = [(int(a), b) for a, b in (l.split("|", 1) for l in logged.splitlines() if l)]
    t.is_(got, sorted((w[2], w[0]) for w in wins), "C96 ballast_log: each revision has the key its write reported")
else:
    t.skip("ballast_log checks: ballast only", 2)

for cl in clients:
    cl.close()
t.done()
