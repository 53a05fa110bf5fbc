#!/usr/bin/python3
# KV.Range (CONFORMANCE.md checklist C17-C31), differentially against a real
# etcd 3.4 (see t/lib/bldiff.py): every key form, limit/more/count, count
# ignoring filters, keys_only/count_only, every sort target and order,
# min/max mod/create revision filters, revisions in the past, future and
# compacted, paging at a fixed revision, serializable reads.
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import bldiff
from bldiff import put, get, delete, txn, cmp, compact, hrev, kvs, ok, prefix_end

t = bltest.Tap()
d = bldiff.Diff(t)
R = bldiff.rpc()


def raw_range(**kw):
    """A RangeRequest sent as is by python etcd3's stub (no client mapping)."""
    return lambda c: c.kvstub.Range(R.RangeRequest(**kw), 5)


KEYS = [b"\x00", b"\x01", b"a", b"a\x00", b"a/1", b"a/2", b"a\xff", b"a\xff\xff", b"ab",
        b"b", b"k\xff", "ключ".encode(), b"\xff", b"\xff\xfe", b"\xff\xff"]
d.go_seq([put(k, b"v-" + k) for k in KEYS], "setup: 15 keys incl. binary ones")

# ---------------------------------------------------------------- C17
d.go(get(""), "C17 Range with an empty key")
d.go(get("", range_end="z"), "C17 Range with an empty key and a range_end")
d.go(put("", "x"), "C17 Put with an empty key")
d.go(delete(""), "C17 DeleteRange with an empty key")
d.go(delete("", range_end="z"), "C17 DeleteRange with an empty key and a range_end")
d.go(txn([cmp("VERSION", "", "=", 0)], [get("a")]), "C17 compare with an empty key")
d.go(txn([cmp("MOD", "", "=", 0, range_end="z")], [get("a")]),
     "C17 compare with an empty key and a range_end")
d.go(txn([], [get("a"), get("")]), "C17 txn Range op with an empty key")
d.go(txn([], [put("a", "1")], [put("", "1")]), "C17 txn: empty key in the failure branch")
d.go(txn([], [txn([], [delete("")])]), "C17 nested txn: Delete with an empty key")
d.ctl("get", "", name="C17 etcdctl get ''")
d.ctl("del", "", name="C17 etcdctl del ''")
d.py(lambda c: c.get(b""), "C17 get(b'')")
d.py(lambda c: c.put(b"", b"v"), "C17 put(b'')")
d.py(lambda c: c.delete(b""), "C17 delete(b'')")
r = d.go(get("a"), "C17 nothing was written")
t.is_(hrev(r), 1 + len(KEYS), "C17 revision unchanged by the refused requests")

# ---------------------------------------------------------------- C18
r = d.go(get("nothere"), "C18 missing key")
t.is_((kvs(r), ok(r) and ok(r)["count"]), ([], 0), "C18 kvs=[], count=0, no error")
d.go(get("nothere", prefix=True), "C18 missing prefix")
d.go(get("c", range_end="d"), "C18 empty range")
d.ctl("get", "nothere", name="C18 missing key")
d.py(lambda c: c.get("nothere"), "C18 get() of a missing key")
d.py(lambda c: c.get_response("nothere"), "C18 get_response() of a missing key")

# ---------------------------------------------------------------- C19
d.go(get("a", prefix=True), "C19 prefix a")
d.go(get("a/", prefix=True), "C19 prefix a/")
d.go(get("a", range_end=prefix_end("a")), "C19 explicit range_end key+1")
d.go(get(b"a\xff", prefix=True), "C19 prefix a\\xff (range_end b)")
d.go(get(b"\xff", prefix=True), "C19 prefix \\xff (range_end \\0)")
d.go(get(b"\xff\xff", prefix=True), "C19 prefix \\xff\\xff (range_end \\0)")
d.go(get("", prefix=True), "C19 prefix '' (clientv3: all keys)")
d.go(get("a", from_key=True), "C19 from key a")
d.go(get(b"\xff\xfe", from_key=True), "C19 from key \\xff\\xfe")
d.go(get("", from_key=True), "C19 from key '' (clientv3: \\0..\\0)")
r = d.go(get(b"\x00", range_end=b"\x00"), "C19 \\0 to \\0: all keys")
t.is_(len(kvs(r)), len(KEYS), "C19 all keys")
d.go(get(b"\x01", range_end=b"\x00"), "C19 \\1 to \\0: all but \\0")
d.go(get("a", range_end="b"), "C19 [a, b)")
d.go(get("a", range_end="a"), "C19 range_end == key: empty")
d.go(get("b", range_end="a"), "C19 range_end < key: empty")
d.go(get("a", range_end=b"a\x00"), "C19 [a, a\\0): just a")
d.go(get(b"\xff\xff", range_end=b"\xff\xff\x00"), "C19 [\\xff\\xff, \\xff\\xff\\0)")
d.ctl("get", "--prefix", "a", name="C19 etcdctl --prefix")
d.ctl("get", "--from-key", "ab", name="C19 etcdctl --from-key")
d.ctl("get", "a", "b", name="C19 etcdctl range")
d.ctl("get", "--prefix", "ключ", name="C19 etcdctl --prefix utf-8")
d.py(lambda c: list(c.get_prefix("a")), "C19 get_prefix()")
d.py(lambda c: list(c.get_prefix("ключ")), "C19 get_prefix(utf-8)")
d.py(lambda c: list(c.get_range("a", "b")), "C19 get_range()")
d.py(lambda c: list(c.get_all()), "C19 get_all()")

# ---------------------------------------------------------------- C20
r = d.go(get(b"\x00", range_end=b"\x00"), "C20 all keys")
shown = [bldiff.show_bytes(k) for k in sorted(KEYS)]
t.is_([kv["key"] for kv in kvs(r)], shown, "C20 byte-wise ascending order")
d.py(lambda c: [m.key for _, m in c.get_all()], "C20 get_all() order")

# ---------------------------------------------------------------- C21, C22
for lim in (1, 2, 3, 6, 7, 8, 100, 0, -1):
    r = d.go(get("a", prefix=True, limit=lim), f"C21 prefix a (7 keys) limit {lim}")
    o = ok(r) or {}
    want = (min(lim, 7) if lim > 0 else 7, 0 < lim < 7, 7)
    t.is_((len(o.get("kvs") or []), o.get("more"), o.get("count")), want,
          f"C21/C22 limit {lim}: kvs, more, count")
d.go(get("a", prefix=True, limit=2, revision=5), "C22 limit at an old revision: count then")
d.go(get(b"\x00", range_end=b"\x00", limit=1), "C22 all keys limit 1")
d.ctl("get", "--prefix", "a", "--limit=2", name="C21 etcdctl --limit")
d.py(raw_range(key=b"a", range_end=b"b", limit=3), "C21 raw limit 3")

# ---------------------------------------------------------------- C23, C27
# revisions of the prefix a: a=4? (see setup order); use the target's own view
r = d.go(get("a", prefix=True), "C27 prefix a")
mods = sorted(kv["mod_revision"] for kv in kvs(r))
lo, mid, hi = mods[0], mods[3], mods[-1]
for name, kw in [("min_mod", dict(min_mod_revision=mid)),
                 ("max_mod", dict(max_mod_revision=mid)),
                 ("min_mod = max_mod", dict(min_mod_revision=mid, max_mod_revision=mid)),
                 ("min_create", dict(min_create_revision=mid)),
                 ("max_create", dict(max_create_revision=mid)),
                 ("min_mod above all", dict(min_mod_revision=hi + 1)),
                 ("max_mod below all", dict(max_mod_revision=lo - 1)),
                 ("min > max", dict(min_mod_revision=hi, max_mod_revision=lo)),
                 ("all four", dict(min_mod_revision=lo + 1, max_mod_revision=hi - 1,
                                   min_create_revision=lo, max_create_revision=hi))]:
    r = d.go(get("a", prefix=True, **kw), f"C27 filter {name}")
    t.is_(ok(r) and ok(r)["count"], 7, f"C23 count ignores the filter ({name})")
    d.go(get("a", prefix=True, limit=2, **kw), f"C27 filter {name}, limit 2 (more?)")
d.go(get("a", prefix=True, min_mod_revision=mid, count_only=True), "C23 count_only with a filter")
d.go(get("a", prefix=True, min_mod_revision=mid, keys_only=True, sort_order="DESCEND"),
     "C27 filter + keys_only + DESCEND")
d.ctl("get", "--prefix", "a", f"--min-mod-revision={mid}", f"--max-create-revision={hi}",
      name="C27 etcdctl --min-mod-revision --max-create-revision")
d.py(raw_range(key=b"a", range_end=b"b", min_create_revision=mid, limit=1),
     "C27 raw min_create_revision, limit 1")

# ---------------------------------------------------------------- C24, C25
for lim in (0, 2):
    d.go(get("a", prefix=True, count_only=True, limit=lim), f"C24 count_only limit {lim}")
d.go(get("nothere", count_only=True), "C24 count_only of nothing")
d.go(get(b"\x00", range_end=b"\x00", count_only=True, revision=3), "C24 count_only at revision 3")
d.go(get("a", prefix=True, count_only=True, keys_only=True), "C24 count_only + keys_only")
d.ctl("get", "--prefix", "a", "--count-only", write="fields", name="C24 etcdctl --count-only -w fields")
d.ctl("get", "--prefix", "a", "--count-only", name="C24 etcdctl --count-only -w json (refused)")
d.py(raw_range(key=b"a", range_end=b"b", count_only=True), "C24 raw count_only")
r = d.go(get("a", prefix=True, keys_only=True), "C25 keys_only")
t.ok(kvs(r) and all(kv["value"] == "" and kv["version"] > 0 for kv in kvs(r)),
     "C25 keys_only: values empty, other fields set")
d.go(get("a", prefix=True, keys_only=True, limit=3), "C25 keys_only limit 3")
d.go(get("a", prefix=True, keys_only=True, sort_target="VALUE", sort_order="DESCEND"),
     "C25 keys_only sorted by the (unsent) value")
d.ctl("get", "--prefix", "a", "--keys-only", name="C25 etcdctl --keys-only")
d.py(lambda c: [m.key for _, m in c.get_prefix("a", keys_only=True)], "C25 get_prefix(keys_only)")
d.py(lambda c: c.get_prefix_response("a", keys_only=True), "C25 get_prefix_response(keys_only)")

# ---------------------------------------------------------------- C26
# s/a..s/f, written so that every target has ties among at most 12 keys:
# (with more than 12 results etcd 3.4's sort.Sort is not stable and the
# order of ties depends on the Go version it was built with)
d.go_seq([put("s/a", "3"), put("s/b", "1"), put("s/c", "2"), put("s/b", "1"),
          put("s/d", "3"), put("s/e", ""), put("s/b", "9"), put("s/d", "0"),
          put("s/f", b"\xff"), put("s/c", "2")], "C26 setup s/a..s/f")
for target in ("KEY", "VERSION", "CREATE", "MOD", "VALUE"):
    for order in ("ASCEND", "DESCEND", "NONE"):
        d.go(get("s/", prefix=True, sort_target=target, sort_order=order),
             f"C26 sort {target} {order}")
        d.go(get("s/", prefix=True, sort_target=target, sort_order=order, limit=3),
             f"C26 sort {target} {order} limit 3")
        d.py(raw_range(key=b"s/", range_end=b"s0", sort_target=getattr(R.RangeRequest, target),
                       sort_order=getattr(R.RangeRequest, order)),
             f"C26 raw sort {target} {order}")
# target != KEY with order NONE: etcd 3.4 fetches limit+1 keys in key order,
# sorts them ascending, then cuts to limit
r = d.go(get("s/", prefix=True, sort_target="VALUE", sort_order="NONE", limit=2),
         "C26 VALUE/NONE limit 2: limit+1 first keys, sorted")
t.is_([kv["key"] for kv in kvs(r)], ["s/c", "s/a"],
      "C26 VALUE/NONE limit 2 = s/c, s/a (s/c is the 3rd key: limit+1 were sorted)")
d.go(get("s/", prefix=True, sort_target="VERSION", limit=1), "C26 VERSION/NONE limit 1")
r = d.go(get("s/", prefix=True, sort_target="VERSION", sort_order="DESCEND"),
         "C26 VERSION DESCEND: ties stay in key order")
t.is_([kv["key"] for kv in kvs(r)], ["s/b", "s/c", "s/d", "s/a", "s/e", "s/f"],
      "C26 VERSION DESCEND order (ties ascending by key)")
d.go(get("s/", prefix=True, sort_target="VALUE", sort_order="ASCEND", revision=12),
     "C26 sort VALUE at an old revision")
d.go(get("s/", prefix=True, sort_target="MOD", sort_order="DESCEND", min_mod_revision=22,
         limit=2), "C26 sort MOD DESCEND + min_mod + limit")
d.ctl("get", "--prefix", "s/", "--sort-by=VALUE", "--order=DESCEND", name="C26 etcdctl VALUE DESCEND")
d.ctl("get", "--prefix", "s/", "--sort-by=CREATE", name="C26 etcdctl CREATE (order unset)")
d.ctl("get", "--prefix", "s/", "--order=DESCEND", name="C26 etcdctl KEY DESCEND")
d.py(lambda c: [(v, m.key) for v, m in c.get_prefix("s/", sort_order="descend", sort_target="mod")],
     "C26 get_prefix(sort descend by mod)")
d.py(lambda c: [(v, m.key) for v, m in c.get_all(sort_order="ascend", sort_target="value")],
     "C26 get_all(sort ascend by value)")

# ---------------------------------------------------------------- C28
cur = hrev(d.go(get("a"), "C28 current revision"))
d.go(get("a", revision=cur), "C28 revision = current")
d.go(get("a", revision=cur + 1), "C28 revision = current+1: future")
d.go(get("a", revision=1 << 40, count_only=True), "C28 far future, count_only")
d.ctl("get", "a", f"--rev={cur + 5}", name="C28 etcdctl --rev in the future")
d.py(raw_range(key=b"a", revision=cur + 1), "C28 raw future revision")
d.go(get("a", revision=1), "C28 revision 1 (before any write)")
d.go(get("a", revision=-7), "C28 negative revision = latest")

# ---------------------------------------------------------------- C30
# k8s-style paging: first page at the latest revision, the following pages
# at that revision from lastKey+"\0", while writes go on in between
d.go_seq([put(f"p/{i:02d}", f"v{i}") for i in range(9)], "C30 setup p/00..p/08")
first = d.go(get("p/", prefix=True, limit=2), "C30 page 1")
rev = hrev(first)
pages, r, n, writes = [first], first, 1, 0
while ok(r) and ok(r)["more"] and n < 20:
    d.go(put(f"p/{n:02d}", f"changed{n}"), f"C30 write between pages {n} and {n + 1}")
    d.go(put(f"p/{n:02d}x", "new"), f"C30 create between pages {n} and {n + 1}")
    start = kvs(r)[-1]["key"].encode("latin-1") + b"\x00"
    n += 1
    r = d.go(get(start, range_end=prefix_end("p/"), limit=2, revision=rev), f"C30 page {n}")
    pages.append(r)
whole = d.go(get("p/", prefix=True, revision=rev), "C30 the whole list at the page revision")
t.is_([kv for p in pages for kv in kvs(p)], kvs(whole), "C30 pages = snapshot at revision R")
t.is_([ok(p) and ok(p)["count"] for p in pages], [9 - 2 * i for i in range(len(pages))],
      "C30 count = remaining items at R")

# ---------------------------------------------------------------- C31
d.go(get("a", prefix=True, serializable=True), "C31 serializable prefix")
d.go(get("s/", prefix=True, serializable=True, revision=14, limit=2), "C31 serializable at a revision")
d.ctl("get", "--prefix", "a", "--consistency=s", name="C31 etcdctl --consistency=s")
d.py(lambda c: c.get("a", serializable=True), "C31 get(serializable)")
d.py(raw_range(key=b"\x00", range_end=b"\x00", serializable=True, keys_only=True),
     "C31 raw serializable keys_only")

# ---------------------------------------------------------------- C30 with deletes
d.reset("C30 with deletes")
d.go_seq([put(f"p/{i:02d}", f"v{i}") for i in range(7)], "C30 setup p/00..p/06")
first = d.go(get("p/", prefix=True, limit=3), "C30 page 1")
rev = hrev(first)
d.go(delete("p/03"), "C30 delete an item of the next page")
d.go(delete("p/", prefix=True, prev_kv=True), "C30 delete every item")
pages, r, n = [first], first, 1
while ok(r) and ok(r)["more"] and n < 10:
    start = kvs(r)[-1]["key"].encode("latin-1") + b"\x00"
    n += 1
    r = d.go(get(start, range_end=prefix_end("p/"), limit=3, revision=rev), f"C30 page {n} after deletes")
    pages.append(r)
whole = d.go(get("p/", prefix=True, revision=rev), "C30 the whole list at the page revision")
t.is_([kv for p in pages for kv in kvs(p)], kvs(whole), "C30 pages after deletes = snapshot at R")
d.go(get("p/", prefix=True), "C30 the list now: empty")

# ---------------------------------------------------------------- C30 history
# A range at a revision takes one of three ways in ballast: the current
# rows when nothing in the range changed since, the current rows corrected
# by the keys that changed since, or (more than 10,000 log rows later) a
# walk of the log key by key.  The same questions at the same revisions,
# before and after 10,100 writes elsewhere, cover all three.
d.go_seq([put(f"h/{i:03d}", f"a{i}") for i in range(40)], "C30h setup h/000..h/039")
r0 = hrev(d.go(get("h/", prefix=True, count_only=True), "C30h revision after the setup"))
d.go_seq([put("h/005", "b"), delete("h/010"), delete("h/020"), put("h/020", "c"),
          put("h/040", "new"), delete("h/", range_end="h/003"),
          txn([], [put("h/030", "t"), delete("h/031"), put("h/041", "t")])],
         "C30h changes inside the range: rewrite, delete, recreate, create, txn")
# etcd's duplicate-key check lets a from-key delete through: a key
# deleted and put again at one revision (two log rows, one revision)
d.go(put("h/~", "1"), "C30h put h/~, the last key")
r = d.go(txn([], [delete("h/~", from_key=True), put("h/~", "again")]),
         "C30h a txn deletes h/~ (from-key) and puts it again")
t.ok(ok(r) and ok(r)["succeeded"], "C30h ... which etcd accepts")
rx = hrev(r)
d.go(put("h/~", "third", prev_kv=True), "C30h h/~ changed once more (prev_kv: the put)")
r1 = hrev(d.go(get("h/", prefix=True, count_only=True), "C30h revision after the changes"))
d.go_seq([put(f"o/{i}", "x") for i in range(5)], "C30h changes outside the range")
r2 = hrev(d.go(get("h/", prefix=True, count_only=True), "C30h revision now"))


def history_reads(tag):
    for rev in (r0, r0 + 3, rx, r1, r2, 0):
        at = f"{tag} at {rev or 'now'}"
        d.go(get("h/", prefix=True, revision=rev), f"{at}: the whole prefix")
        d.go(get("h/", prefix=True, revision=rev, limit=7), f"{at}: limit 7, count")
        d.go(get("h/015", range_end="h/035", revision=rev, limit=5, keys_only=True),
             f"{at}: a page of a bounded range, keys only")
        d.go(get("h/025", from_key=True, revision=rev, limit=4), f"{at}: from a key")
        d.go(get("h/", prefix=True, revision=rev, count_only=True), f"{at}: count only")
        d.go(txn([], [get("h/", prefix=True, revision=rev, limit=3)]),
             f"{at}: a range in a txn")


history_reads("C30h")
d.go_seq([txn([], [put(f"z/{b:03d}/{i:03d}", "w") for i in range(100)])
          for b in range(101)], "C30h 10,100 writes outside the range, in txns of 100")
history_reads("C30h after 10,100 writes")

# ---------------------------------------------------------------- C29
# needs Compact; fresh servers so that a missing Compact fails only here
d.reset("C29")
d.go_seq([put("c", f"v{i}") for i in range(6)], "C29 setup: c v0..v5 at 2..7")
d.go(compact(4), "C29 compact 4")
for rev in (2, 3, 4, 5, 7):
    d.go(get("c", revision=rev), f"C29 get at revision {rev} (compacted at 4)")
d.go(get("c", revision=3, count_only=True), "C29 count_only below compact")
d.go(get("c", revision=-1), "C29 negative revision after compaction = latest")
d.ctl("get", "c", "--rev=3", name="C29 etcdctl get --rev below compact")
d.ctl("get", "c", "--rev=4", name="C29 etcdctl get --rev = compact")
d.py(raw_range(key=b"c", revision=2), "C29 raw below compact")

d.close()
t.done()
