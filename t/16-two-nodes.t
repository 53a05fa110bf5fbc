#!/usr/bin/python3
# Two ballast nodes on one PostgreSQL, 32 clients writing through both:
# conflicting k8s-style optimistic updates (Txn: MOD(k)=rv -> Put else
# Range) and plain puts.  Afterwards: every revision from 2 to the last is
# in the log exactly once, each key's history is consistent, and every
# acknowledged revision was visible to a read issued after it, on either
# node (no read ever saw revision R while missing an earlier one).
import os, random, sys, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import etcd3.etcdrpc as rpc

DURATION = float(os.environ.get("BALLAST_TWO_NODE_SECONDS", "8"))
CLIENTS = 32
KEYS = ["/registry/pods/p%d" % i for i in range(6)]

t = bltest.Tap()
pg = bltest.Postgres()                 # fsync on: real commit ordering
pg.start()
nodes = [bltest.Ballast(dsn=pg.dsn(), workers=2) for i in (1, 2)]
for i, n in enumerate(nodes):
    with open(n.conf_path) as f:
        n.rewrite_conf(f.read().replace("name node1;", "name node%d;" % i))
    n.start()

lock = threading.Lock()
acked = []            # (revision, key, kind) of every acknowledged write
wins = {}             # (key, mod_revision read) -> number of winners
problems = []
stale = []            # (acknowledged revision, older revision read later)
stop = threading.Event()


def client(idx):
    rnd = random.Random(idx)
    here = bltest.etcd3_client(nodes[idx % 2].endpoint)
    there = bltest.etcd3_client(nodes[(idx + 1) % 2].endpoint)
    while not stop.is_set():
        key = rnd.choice(KEYS)
        try:
            if rnd.random() < 0.3:
                r = here.put(key + "/plain%d" % idx, "v")
                rev = r.header.revision
                kind = "put"
            else:
                val, meta = here.get(key)
                mod = meta.mod_revision if meta else 0
                cmp = here.transactions.mod(key) == mod
                ok, resp = here.transaction(
                    compare=[cmp],
                    success=[here.transactions.put(key, "c%d" % idx)],
                    failure=[here.transactions.get(key)])
                rev = resp[0].response_put.header.revision if ok else None
                if ok:
                    with lock:
                        wins[(key, mod)] = wins.get((key, mod), 0) + 1
                kind = "txn"
            if rev is not None:
                # a read through the other node, issued after the ack,
                # must be at this revision or later
                seen = there.kvstub.Range(
                    rpc.RangeRequest(key=key.encode()),
                    timeout=5).header.revision
                with lock:
                    acked.append((rev, key, kind))
                    if seen < rev:
                        stale.append((rev, seen))
        except Exception as e:      # reported below
            with lock:
                problems.append(repr(e)[:200])


threads = [threading.Thread(target=client, args=(i,), daemon=True)
           for i in range(CLIENTS)]
for th in threads:
    th.start()
time.sleep(DURATION)
stop.set()
for th in threads:
    th.join(30)

t.is_(problems[:5], [], "no client saw an error")
t.ok(len(acked) > 200, "writes were acknowledged (%d)" % len(acked))
t.ok(all(v == 1 for v in wins.values()),
     "each (key, read revision) had at most one CAS winner (%d CAS wins)"
     % len(wins))

rows = pg.psql("SELECT rev, sub, key, kind, create_rev, version "
               "FROM ballast_log ORDER BY rev, sub").splitlines()
log = [r.split("|") for r in rows]
revs = sorted({int(r[0]) for r in log})
last = int(pg.psql("SELECT revision FROM ballast_meta"))
t.is_(revs, list(range(2, last + 1)),
      "every revision from 2 to %d is in the log, none twice, none missing"
      % last)
t.is_(len(log), len({(r[0], r[1]) for r in log}), "(rev, sub) is unique")
t.is_(stale[:5], [], "every acknowledged revision was visible to a later "
      "read on the other node")
t.ok(all(rev in set(revs) for rev, _, _ in acked),
     "every acknowledged revision is in the log")
t.is_(len({rev for rev, _, _ in acked}), len(acked),
      "no two acknowledged writes share a revision")

# per key: versions count up by one, create_rev stays until a delete
history = {}
for rev, sub, key, kind, create, version in log:
    history.setdefault(key, []).append((int(rev), int(create),
                                        int(version)))
bad = []
for key, h in history.items():
    for i, (rev, create, version) in enumerate(h):
        want = h[i - 1][2] + 1 if i else 1
        if version != want or (i and create != h[i - 1][1]) \
                or (not i and create != rev):
            bad.append((key, rev, create, version))
t.is_(bad[:5], [], "every key's version history is consistent")

# visibility: after the load, each node's current revision is the last
for n in nodes:
    r = bltest.etcdctl(n.endpoint, "get", "x", "-w", "json")
    t.is_(r.json()["header"]["revision"], last,
          "%s reports the last revision" % n.endpoint)
for n in nodes:
    n.stop()
t.done()
