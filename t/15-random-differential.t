#!/usr/bin/python3
# A seeded random sequence of KV operations -- puts (prev_kv, ignore_value,
# ignore_lease, unknown leases), ranges (every key form, limits, sorts,
# filters, keys_only/count_only, old/future/compacted revisions), delete
# ranges, txns with random compares and nested ops, occasional compactions
# -- over a small key space (20 keys, binary ones too, so keys collide),
# applied op by op to a real etcd 3.4 and to the server under test through
# Go clientv3 and compared op by op (see t/lib/bldiff.py).  The first
# difference stops the test and prints the seed, the op's index, the op and
# both answers.
#
#   BALLAST_SEED=N         replay a seed (default: a new random one, printed)
#   BALLAST_RANDOM_OPS=N   number of operations (default 15000)
#
# Sorts by a target other than KEY are only generated over ranges that can
# hold at most 12 keys: etcd 3.4 sorts with Go's sort.Sort, which is an
# insertion sort (stable: ties stay in key order, also for DESCEND) up to 12
# elements and unstable above, where the order of ties depends on the Go
# version etcd was built with.
import os, random, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import bldiff
from bldiff import put, get, delete, txn, cmp, compact, hrev, ok, err

KEYS = sorted([b"\x00", b"\x00\x00", b"\x01", b"a", b"a\x00", b"a/1", b"a/2", b"a\xff", b"ab",
               b"b", b"b/x", b"b\xff\xff", b"k8s/a", b"k8s/b", b"z", "ключ".encode(),
               b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\xff"])
OTHER = [b"a/3", b"c", b"\x00\x01", b"k8s/", b"\xfe"]          # never written
PREFIXES = [b"a", b"a/", b"b", b"k8s/", b"\xff", b"\xff\xff", b"\x00", b"z", b"q"]
VALUES = [b"", b"v", b"m", b"n", b"\x00", b"\xff", b"v\x00x", b"x" * 300]
TARGETS = ["VERSION", "CREATE", "MOD", "VALUE", "LEASE"]
RESULTS = ["=", "!=", ">", "<"]
UNKNOWN_LEASE = 999


def defuse(op, state=None):
    """Keep etcd 3.4.23 alive: a DeleteRange with range_end "\\0" (from key)
    escapes the duplicate-key check (checkIntervals sees an empty interval),
    and a later Put with ignore_value/ignore_lease of a key it deleted then
    fails at apply time, which panics etcd ("unexpected error during txn",
    apply.go:546).  So: no ignore_* Put after a from-key delete in a txn
    (walked in execution order, both branches)."""
    state = state if state is not None else {"from_key_delete": False}
    for branch in ("success", "failure"):
        for o in op.get(branch, []):
            if o["op"] == "delete" and (o.get("from_key") or o.get("range_end") == b"\x00"):
                state["from_key_delete"] = True
            elif o["op"] == "put" and state["from_key_delete"]:
                o.pop("ignore_value", None)
                o.pop("ignore_lease", None)
            elif o["op"] == "txn":
                defuse(o, state)
    return op


class Gen:
    def __init__(self, rng):
        self.rng = rng
        self.cur = 1             # store revision, from the answers
        self.compacted = 0       # last compact revision accepted
        self.seen = {}           # key -> last kv seen in an answer

    # -- ranges
    def covered(self, key, end):
        if end is None:
            return [k for k in KEYS if k == key]
        if end == b"\x00":
            return [k for k in KEYS if k >= key]
        return [k for k in KEYS if key <= k < end]

    def range_kw(self, max_keys=None):
        """(kwargs for get/delete, key) covering at most max_keys keys."""
        rng = self.rng
        for _ in range(100):
            kind = rng.choice(["key", "key", "range", "prefix", "from", "all", "inverted"])
            if kind == "key":
                k = rng.choice(KEYS + OTHER)
                kw, key, end = {}, k, None
            elif kind == "range":
                a, b = sorted(rng.sample(KEYS + OTHER, 2))
                kw, key, end = {"range_end": b}, a, b
            elif kind == "prefix":
                p = rng.choice(PREFIXES)
                kw, key, end = {"prefix": True}, p, bldiff.prefix_end(p)
            elif kind == "from":
                k = rng.choice(KEYS + OTHER)
                kw, key, end = {"from_key": True}, k, b"\x00"
            elif kind == "all":
                kw, key, end = {"range_end": b"\x00"}, b"\x00", b"\x00"
            else:
                a, b = sorted(rng.sample(KEYS, 2))
                kw, key, end = {"range_end": a}, b, a
            if max_keys is None or len(self.covered(key, end)) <= max_keys:
                return kw, key
        return {}, rng.choice(KEYS)

    def revision(self):
        rng = self.rng
        x = rng.random()
        if x < 0.7:
            return 0
        if x < 0.92:
            return rng.randint(max(1, self.compacted - 2), self.cur + 1)
        if x < 0.96:
            return -rng.randint(1, 3)
        return self.cur + rng.randint(1, 50)

    def get(self, in_txn=False):
        rng = self.rng
        kw = {}
        sort = rng.random() < 0.3
        if sort:
            target = rng.choice(["KEY"] + TARGETS[:4] + ["VALUE"])
            order = rng.choice(["NONE", "ASCEND", "DESCEND"])
            rkw, key = self.range_kw(None if target == "KEY" else 12)
            kw.update(sort_target=target, sort_order=order)
        else:
            rkw, key = self.range_kw()
        kw.update(rkw)
        kw["limit"] = rng.choice([0, 0, 0, 0, 1, 2, 3, 5, 13, -1])
        kw["revision"] = self.revision()
        kw["serializable"] = rng.random() < 0.2
        kw["keys_only"] = rng.random() < 0.15
        kw["count_only"] = rng.random() < 0.1
        for f in ("min_mod_revision", "max_mod_revision", "min_create_revision", "max_create_revision"):
            if rng.random() < 0.1:
                kw[f] = rng.randint(1, self.cur + 1)
        return get(key, **kw)

    def put(self, key=None):
        rng = self.rng
        key = key if key is not None else rng.choice(KEYS)
        kw = {"prev_kv": rng.random() < 0.4}
        value = rng.choice(VALUES) if rng.random() < 0.9 else bytes(
            rng.randrange(256) for _ in range(rng.randint(1, 6)))
        if rng.random() < 0.08:
            kw["ignore_value"] = True
            value = b"" if rng.random() < 0.9 else value
        if rng.random() < 0.05:
            kw["ignore_lease"] = True
        if rng.random() < 0.03:
            kw["lease"] = UNKNOWN_LEASE
        return put(key, value, **kw)

    def delete(self):
        kw, key = self.range_kw()
        return delete(key, prev_kv=self.rng.random() < 0.5, **kw)

    def compare(self):
        rng = self.rng
        target = rng.choice(TARGETS)
        key = rng.choice(KEYS + OTHER[:1])
        seen = self.seen.get(bldiff.show_bytes(key))
        if target == "VALUE":
            if seen is not None and rng.random() < 0.5:
                val = seen["value"]
                val = val.encode("latin-1") if not val.startswith("b'") else eval(val)
            else:
                val = rng.choice(VALUES)
        elif target == "LEASE":
            val = rng.choice([0, 0, 0, 1, -1, UNKNOWN_LEASE])
        else:
            field = {"VERSION": "version", "CREATE": "create_revision", "MOD": "mod_revision"}[target]
            if seen is not None and rng.random() < 0.5:
                val = seen[field] + rng.choice([0, 0, -1, 1])
            else:
                val = rng.choice([0, 0, 1, 2, rng.randint(0, self.cur + 1)])
        kw = {}
        if rng.random() < 0.15:
            rkw, k = self.range_kw()
            if "range_end" in rkw or "prefix" in rkw:
                key = k
                kw = {"range_end": rkw.get("range_end")} if "range_end" in rkw else {"prefix": True}
        return cmp(target, key, rng.choice(RESULTS), val, **kw)

    def ops(self, depth):
        rng = self.rng
        out = []
        used = set()
        for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 4])):
            x = rng.random()
            if x < 0.35:
                k = rng.choice(KEYS)
                if k in used and rng.random() < 0.8:
                    k = rng.choice(KEYS)
                used.add(k)
                out.append(self.put(k))
            elif x < 0.7:
                out.append(self.get(in_txn=True))
            elif x < 0.85:
                kw, key = self.range_kw()
                if rng.random() < 0.6:         # mostly single keys: fewer duplicate-key refusals
                    kw, key = {}, rng.choice(KEYS)
                out.append(delete(key, prev_kv=rng.random() < 0.5, **kw))
            elif depth < 2:
                out.append(self.txn(depth + 1))
            else:
                out.append(self.get(in_txn=True))
        return out

    def txn(self, depth=0):
        rng = self.rng
        if depth == 0 and rng.random() < 0.01:
            return txn([], [put(f"many{i}", "v") for i in range(129)])
        op = txn([self.compare() for _ in range(rng.choice([0, 1, 1, 1, 2, 3]))],
                 self.ops(depth), self.ops(depth))
        if depth == 0:
            defuse(op)
        return op

    def compact(self):
        rng = self.rng
        x = rng.random()
        if x < 0.6 and self.cur > self.compacted:
            rev = rng.randint(self.compacted + 1, self.cur)
        elif x < 0.8:
            rev = rng.randint(max(0, self.compacted - 3), max(0, self.compacted))
        else:
            rev = self.cur + rng.randint(1, 5)
        return compact(rev, physical=rng.random() < 0.5)

    def next(self):
        x = self.rng.random()
        if x < 0.30:
            return self.put()
        if x < 0.58:
            return self.get()
        if x < 0.68:
            return self.delete()
        if x < 0.99:
            return self.txn()
        return self.compact()

    def learn(self, op, res):
        """Track the revision, the compact revision and kvs seen, from etcd's answer."""
        o = ok(res)
        if o is None:
            return
        rev = hrev(res)
        if isinstance(rev, int):
            self.cur = max(self.cur, rev)
        if op["op"] == "compact":
            self.compacted = op.get("revision", 0)
        stack = [o]
        while stack:
            x = stack.pop()
            if isinstance(x, dict):
                if "key" in x and "mod_revision" in x and x.get("version"):
                    self.seen[x["key"]] = x
                stack.extend(x.values())
            elif isinstance(x, list):
                stack.extend(x)


t = bltest.Tap()
seed = os.environ.get("BALLAST_SEED")
seed = int(seed) if seed else random.SystemRandom().randrange(1 << 31)
nops = int(os.environ.get("BALLAST_RANDOM_OPS") or 15000)
t.diag(f"seed {seed}, {nops} operations (replay: BALLAST_SEED={seed} BALLAST_RANDOM_OPS={nops})")
d = bldiff.Diff(t)
gen = Gen(random.Random(seed))
counts, outcomes = {}, {}
chunk, start, begun = 250, 0, time.monotonic()
failed = False
for i in range(nops):
    op = gen.next()
    counts[op["op"]] = counts.get(op["op"], 0) + 1
    e, o = d.go_pair(op)
    if e != o:
        t.ok(False, f"random op {i} ({op['op']}) identical [go]")
        t.diag(f"seed {seed}, op index {i} (replay: BALLAST_SEED={seed} BALLAST_RANDOM_OPS={i + 1})\n"
               f"  operation: {bldiff.show_op(op)}\n"
               f"  etcd:      {bldiff.dumps(e, 20000)}\n"
               f"  {d.target_name + ':':10} {bldiff.dumps(o, 20000)}")
        failed = True
        break
    gen.learn(op, e)
    what = op["op"] + ": " + (err(e)[1].replace("etcdserver: ", "") if err(e) else
                             "succeeded" if (ok(e) or {}).get("succeeded") else
                             "failure branch" if op["op"] == "txn" else "ok")
    outcomes[what] = outcomes.get(what, 0) + 1
    if (i + 1) % chunk == 0 or i + 1 == nops:
        t.ok(True, f"random ops {start}..{i} identical [go]")
        start = i + 1
secs = time.monotonic() - begun
t.diag(f"{i + 1} operations in {secs:.1f} s; kinds: {counts}; last revision {gen.cur}, "
       f"compacted at {gen.compacted}")
t.diag("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
if not failed:
    d.go(get(b"\x00", range_end=b"\x00"), "final state: all keys")
    for rev in sorted({gen.compacted, (gen.compacted + gen.cur) // 2, gen.cur}):
        if rev > 0:
            d.go(get(b"\x00", range_end=b"\x00", revision=rev), f"final state at revision {rev}")
d.close()
t.done()
