#!/usr/bin/python3
# KV.Txn (CONFORMANCE.md checklist C37-C48), differentially against a real
# etcd 3.4 (see t/lib/bldiff.py): every compare target x result, absent
# keys, range compares, the failure branch, Else-Get, ops seeing earlier
# ops, nested txns, the op limit, the duplicate-key rules, and requests that
# fail as a whole.  Each area starts on fresh servers, so that a failure in
# one does not shift the revisions of the others.
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import bldiff
from bldiff import put, get, delete, txn, cmp, compact, hrev, kvs, ok, err

t = bltest.Tap()
d = bldiff.Diff(t)
R = bldiff.rpc()


def succeeded(r):
    o = ok(r)
    return None if o is None else bool(o.get("succeeded"))


def raw_txn(**kw):
    """A TxnRequest sent as is by python etcd3's stub."""
    return lambda c: c.kvstub.Txn(R.TxnRequest(**kw), 5)


def rop(**kw):
    return R.RequestOp(**kw)


# ---------------------------------------------------------------- C37, C38
d.go(put("present", "p"), "setup: one key")
for target in ("MOD", "CREATE", "VERSION", "LEASE"):
    r = d.go(txn([cmp(target, "absent", "=", 0)], [get("absent")], [get("present")]),
             f"C37 compare {target}==0 true on an absent key")
    t.is_(succeeded(r), True, f"C37 {target}==0 on an absent key succeeds")
    for res, val in (("!=", 0), (">", 0), ("<", 1), ("=", 1)):
        d.go(txn([cmp(target, "absent", res, val)], [get("absent")]),
             f"C37 compare {target}{res}{val} on an absent key")
d.go(txn([cmp("MOD", "present", "=", 0)], [get("present")], [get("absent")]),
     "C37 MOD==0 false on a present key")
for res, val in (("=", ""), ("!=", ""), ("!=", "x"), (">", ""), ("<", "zz"), ("=", "p")):
    r = d.go(txn([cmp("VALUE", "absent", res, val)], [get("absent")], [get("present")]),
             f"C38 compare VALUE{res}{val!r} on an absent key")
    t.is_(succeeded(r), False, f"C38 VALUE{res}{val!r} on an absent key is false")
d.go(txn([cmp("VALUE", "absent", "!=", "x"), cmp("MOD", "absent", "=", 0)], [put("absent", "1")]),
     "C38 VALUE!= on an absent key makes a create fail")
d.ctl_txn(['mod("absent") = "0"'], ["put absent 1"], ["get absent"],
          name="C37 etcdctl mod()=0 on an absent key")
d.ctl_txn(['c("absent2") = "0"', 'ver("absent2") = "0"'], ["get absent2"], [],
          name="C37 etcdctl create()=0, ver()=0")
d.ctl_txn(['val("absent2") != "x"'], ["put absent2 1"], ["get absent2"],
          name="C38 etcdctl val()!= on an absent key")
d.py(lambda c: c.transaction(compare=[c.transactions.create("absent3") == 0],
                             success=[c.transactions.put("absent3", "1")], failure=[]),
     "C37 transaction() create==0")
d.py(lambda c: c.put_if_not_exists("absent3", "2"), "C37 put_if_not_exists() on a present key")
d.py(lambda c: c.put_if_not_exists("absent4", "2"), "C37 put_if_not_exists() on an absent key")
d.py(lambda c: c.transaction(compare=[c.transactions.value("absent5") != "x"],
                             success=[c.transactions.put("absent5", "1")], failure=[]),
     "C38 transaction() value!= on an absent key")
d.py(lambda c: c.replace("absent6", "", "new"), "C38 replace() of an absent key")
d.go(get("", from_key=True), "C37/C38 state")

# ---------------------------------------------------------------- C39
d.reset("C39")
d.go_seq([put("other", "o"), put("m", "a"), put("other", "o2"), put("m", "b"), put("m", "m")],
         "C39 setup: m version 3, create 3, mod 6")
r = d.go(get("m"), "C39 m")
kv = kvs(r)[0] if kvs(r) else {"version": 3, "create_revision": 3, "mod_revision": 6}
actual = {"VERSION": kv["version"], "CREATE": kv["create_revision"],
          "MOD": kv["mod_revision"], "LEASE": 0}
for target in ("VERSION", "CREATE", "MOD", "LEASE"):
    for res in ("=", "!=", ">", "<"):
        for delta in (-1, 0, 1):
            val = actual[target] + delta
            r = d.go(txn([cmp(target, "m", res, val)], [get("m", keys_only=True)]),
                     f"C39 {target}{res}{val} (actual {actual[target]})")
            want = {"=": delta == 0, "!=": delta != 0, ">": delta < 0, "<": delta > 0}[res]
            t.is_(succeeded(r), want, f"C39 {target}{res}{val} is {want}")
for res in ("=", "!=", ">", "<"):
    for val in ("l", "m", "n", "m\x00", "", "\xff", "M"):
        vb = val.encode("latin-1")
        r = d.go(txn([cmp("VALUE", "m", res, vb)], [get("m", keys_only=True)]),
                 f"C39 VALUE{res}{bldiff.show_bytes(vb)} (actual m)")
        c = (b"m" > vb) - (b"m" < vb)
        want = {"=": c == 0, "!=": c != 0, ">": c > 0, "<": c < 0}[res]
        t.is_(succeeded(r), want, f"C39 VALUE{res}{bldiff.show_bytes(vb)} is {want}")
d.go(txn([cmp("VERSION", "m", "=", 3), cmp("MOD", "m", ">", 0), cmp("VALUE", "m", "=", "m")],
         [get("m")]), "C39 three compares all true")
d.go(txn([cmp("VERSION", "m", "=", 3), cmp("MOD", "m", "<", 0), cmp("VALUE", "m", "=", "m")],
         [get("m")], [get("other")]), "C39 one of three false")
# compares as etcdctl writes them (lease() panics in etcdctl 3.4: it builds
# a LEASE compare without key and with a string value)
for line in ('ver("m") = "3"', 'ver("m") > "3"', 'c("m") < "4"', 'create("m") != "3"',
             'm("m") > "5"', 'mod("m") = "6"', 'val("m") = "m"', 'value("m") < "n"',
             'val("m") != "m"', 'lease("m") = "0"', 'bogus("m") = "0"', 'ver("m") =='):
    d.ctl_txn([line], ["get m"], ["get other"], name=f"C39 etcdctl txn {line}")

def py_cmp(kind, res, val):
    def f(c):
        x = getattr(c.transactions, kind)("m")
        x = {"==": x == val, "!=": x != val, ">": x > val, "<": x < val}[res]
        return c.transaction(compare=[x], success=[c.transactions.get("m")], failure=[])
    return f


for kind, vals in (("version", (2, 3, 4)), ("create", (3,)), ("mod", (5, 6, 7)),
                   ("value", ("l", "m", "n"))):
    for res in ("==", "!=", ">", "<"):
        for v in vals:
            d.py(py_cmp(kind, res, v), f"C39 transaction() {kind}{res}{v}")
# raw compares: missing union field = 0 / empty; union of another target
# compares against 0; out-of-enum result or target
C = R.Compare
for label, c in [("MOD, no mod_revision (= 0)", C(key=b"m", target=C.MOD, result=C.EQUAL)),
                 ("MOD, no mod_revision, >", C(key=b"m", target=C.MOD, result=C.GREATER)),
                 ("VALUE, no value (= empty)", C(key=b"m", target=C.VALUE, result=C.GREATER)),
                 ("VERSION with a mod_revision union", C(key=b"m", target=C.VERSION,
                                                         result=C.GREATER, mod_revision=100)),
                 ("VALUE with a version union", C(key=b"m", target=C.VALUE, result=C.EQUAL,
                                                  version=3)),
                 ("LEASE = 0", C(key=b"m", target=C.LEASE, result=C.EQUAL, lease=0)),
                 ("LEASE > -5", C(key=b"m", target=C.LEASE, result=C.GREATER, lease=-5)),
                 ("result out of enum (9)", C(key=b"m", target=C.MOD, result=9, mod_revision=1)),
                 ("target out of enum (9)", C(key=b"m", target=9, result=C.EQUAL))]:
    d.py(raw_txn(compare=[c], success=[rop(request_range=R.RangeRequest(key=b"m"))]),
         f"C39 raw compare {label}")

# ---------------------------------------------------------------- C40
d.reset("C40")
d.go_seq([put("r/a", "x"), put("r/b", "x"), put("r/c", "y"), put("r/c", "y"), put("s", "x")],
         "C40 setup: r/a r/b version 1 value x, r/c version 2 value y")
for label, c, want in [
        ("VERSION=1 over prefix r/ (r/c is 2)", cmp("VERSION", "r/", "=", 1, prefix=True), False),
        ("VERSION>0 over prefix r/", cmp("VERSION", "r/", ">", 0, prefix=True), True),
        ("VERSION=1 over [r/a, r/c)", cmp("VERSION", "r/a", "=", 1, range_end="r/c"), True),
        ("VALUE=x over [r/a, r/c)", cmp("VALUE", "r/a", "=", "x", range_end="r/c"), True),
        ("VALUE=x over prefix r/", cmp("VALUE", "r/", "=", "x", prefix=True), False),
        ("VALUE!=z over prefix r/", cmp("VALUE", "r/", "!=", "z", prefix=True), True),
        ("VALUE<y over prefix r/", cmp("VALUE", "r/", "<", "y", prefix=True), False),
        ("MOD<100 over prefix r/", cmp("MOD", "r/", "<", 100, prefix=True), True),
        ("CREATE>2 over prefix r/", cmp("CREATE", "r/", ">", 2, prefix=True), False),
        ("MOD=0 over an empty prefix", cmp("MOD", "q/", "=", 0, prefix=True), True),
        ("VERSION=0 over an empty range", cmp("VERSION", "r/d", "=", 0, range_end="r/z"), True),
        ("VALUE='' over an empty prefix", cmp("VALUE", "q/", "=", "", prefix=True), False),
        ("VALUE!=x over an empty prefix", cmp("VALUE", "q/", "!=", "x", prefix=True), False),
        ("VERSION>0 from key r/b (range_end \\0)", cmp("VERSION", "r/b", ">", 0, range_end="\x00"), True),
        ("VALUE=x from key r/b (s is x, r/c is y)", cmp("VALUE", "r/b", "=", "x", range_end="\x00"), False),
        ("MOD=0 with range_end < key (empty)", cmp("MOD", "r/c", "=", 0, range_end="r/a"), True),
        ("LEASE=0 over prefix r/", cmp("LEASE", "r/", "=", 0, prefix=True), True)]:
    r = d.go(txn([c], [get("r/", prefix=True, count_only=True)]), f"C40 {label}")
    t.is_(succeeded(r), want, f"C40 {label}: {want}")
d.py(lambda c: c.transaction(compare=[c.transactions.version("r/", range_end="r0") == 1],
                             success=[c.transactions.get("r/a")], failure=[]),
     "C40 transaction() version over a range")
d.py(lambda c: c.transaction(compare=[c.transactions.value("r/a", range_end="r/c") == "x"],
                             success=[c.transactions.put("t", "1")], failure=[]),
     "C40 transaction() value over a range")

# ---------------------------------------------------------------- C41, C42
d.reset("C41")
d.go_seq([put("k", "v1"), put("k", "v2"), put("j", "j1")], "C41 setup")
r = d.go(txn([cmp("MOD", "k", "=", 2)], [put("k", "new")],
             [put("f/1", "x"), get("k"), delete("j", prev_kv=True), txn([], [get("f/1")]),
              get("nothing")]), "C41 failure branch with every op type")
o = ok(r) or {}
t.is_((o.get("succeeded"), [list(x) for x in o.get("responses", [])]),
      (False, [["response_put"], ["response_range"], ["response_delete_range"],
               ["response_txn"], ["response_range"]]),
      "C41 succeeded=false, one typed response per failure op")
d.go(txn([cmp("MOD", "k", "=", 3)], [put("k", "new")], []), "C41 compare true: success branch")
r = d.go(txn([cmp("MOD", "k", "=", 3)], [put("k", "newer")], [get("k")]),
         "C42 stale mod_revision: Else-Get")
t.is_([kv["value"] for r2 in (ok(r) or {}).get("responses", [])
       for kv in r2.get("response_range", {}).get("kvs", [])], ["new"],
      "C42 Else-Get returns the current kv")
d.ctl_txn(['mod("k") = "3"'], ["put k x"], ["get k"], name="C42 etcdctl Else-Get")
d.ctl_txn(['mod("k") = "6"'], ["put k x --prev-kv"], ["get k"], name="C41 etcdctl success, prev-kv")
d.ctl_txn(['val("k") = "nope"'], ["put k y"], ["put f/2 z", "get f/ --prefix", "del j --prev-kv"],
          name="C41 etcdctl failure branch ops")
d.py(lambda c: c.transaction(compare=[c.transactions.mod("k") == 1],
                             success=[c.transactions.put("k", "x")],
                             failure=[c.transactions.get("k"), c.transactions.put("f/3", "3"),
                                      c.transactions.delete("f/1")]),
     "C41 transaction() failure branch")
d.py(lambda c: c.replace("k", "x", "y"), "C42 replace() with the current value")
d.py(lambda c: c.replace("k", "x", "z"), "C42 replace() with a stale value")
d.go(get("", from_key=True), "C41/C42 state")

# ---------------------------------------------------------------- C43
d.reset("C43")
d.go_seq([put("c", "c0"), put("z", "z0")], "C43 setup")
r = d.go(txn([], [put("a", "1"), get("a"), delete("c", prev_kv=True), get("c"),
                  put("b", "2"), get("", from_key=True), get("a", count_only=True)]),
         "C43 later ops see earlier writes")
o = ok(r) or {}
t.is_([len(x.get("response_range", {}).get("kvs") or []) for x in o.get("responses", [])
       if "response_range" in x], [1, 0, 3, 0], "C43 a seen, c gone, a b z listed")
d.go(txn([], [put("n", "1"), txn([], [get("n"), get("", from_key=True, keys_only=True)])]),
     "C43 nested txn sees an earlier write")
d.go(txn([], [delete("z"), txn([], [get("z")]), put("y", "9")]), "C43 nested sees a delete")
d.go(txn([], [put("a", "2"), get("a", revision=1 + 3)]),
     "C43 Range at the pre-txn revision in a txn that wrote")
d.go(txn([], [put("a", "3"), get("a", revision=99)]), "C43 Range at a future revision")
cur = hrev(d.go(get("a"), "C43 current revision"))
d.go(txn([], [put("a", "4"), get("a", revision=cur + 1)]),
     "C43 Range at the txn's own revision (future before the txn)")
d.go(txn([], [put("w", "1"), get("w", revision=cur)]),
     "C43 Range of a just-written key at the pre-txn revision")
d.ctl_txn([], ["put e 1", "get e", "del c", "get --prefix ''"], [], name="C43 etcdctl later op sees write")
d.py(lambda c: c.transaction(compare=[], success=[c.transactions.put("f", "1"),
                                                  c.transactions.get("f")], failure=[]),
     "C43 transaction() put then get")

# ---------------------------------------------------------------- C44
d.reset("C44")
d.go_seq([put("a", "1"), put("b", "1")], "C44 setup")
d.go(txn([cmp("MOD", "a", ">", 0)],
         [txn([cmp("VERSION", "b", "=", 1)], [put("c", "then")], [put("c", "else")]),
          get("c")]), "C44 nested txn, own compare true")
d.go(txn([cmp("MOD", "a", ">", 0)],
         [txn([cmp("VERSION", "b", "=", 5)], [put("d", "then")], [put("d", "else"), get("a")])]),
     "C44 nested txn, own compare false")
d.go(txn([cmp("MOD", "a", "=", 0)], [get("a")],
         [txn([cmp("MOD", "e", "=", 0)], [put("e", "created")], [get("e")]), get("e")]),
     "C44 nested txn in the failure branch (Patroni style)")
d.go(txn([], [put("n1", "x"), txn([cmp("MOD", "n1", "=", 0)], [get("n1")], [put("n2", "y")])]),
     "C44 nested compares see the state before the txn")
d.go(txn([], [txn([], [txn([cmp("VALUE", "a", "=", "1")],
                           [txn([], [put("deep", "4"), get("deep")])], [])])]),
     "C44 four levels")
d.go(txn([], [txn([cmp("VERSION", "a", "=", 1)], [put("s1", "1")], [put("s1", "2")]),
              txn([cmp("VERSION", "a", "=", 2)], [put("s2", "1")], [put("s2", "2")])]),
     "C44 two sibling nested txns, different branches")
d.go(txn([], [txn()]), "C44 empty nested txn")
d.go(txn([cmp("VERSION", "a", "=", 1)], [get("a")], [get("b")]), "C44 read-only outer")
d.go(txn([], [txn([], [get("a")]), get("b")]), "C44 nested read-only txn (a write txn?)")
d.py(lambda c: c.transaction(
    compare=[c.transactions.version("a") > 0],
    success=[c.transactions.txn(compare=[c.transactions.mod("p") == 0],
                                success=[c.transactions.put("p", "1")],
                                failure=[c.transactions.get("p")])],
    failure=[]), "C44 transaction() with a nested txn")
d.go(get("", from_key=True), "C44 state")

# ---------------------------------------------------------------- C45
d.reset("C45")
cur = hrev(d.go(get("x"), "C45 current revision"))
puts = lambda n, p="o": [put(f"{p}{i:03d}", "v") for i in range(n)]
r = d.go(txn([], puts(128)), "C45 128 puts")
t.is_(hrev(r), cur + 1, "C45 128 ops are allowed (one revision)")
r = d.go(txn([], puts(129)), "C45 129 puts")
t.is_(err(r), ("InvalidArgument", "etcdserver: too many operations in txn request"),
      "C45 too many operations")
d.go(txn([], [get("x")] * 129), "C45 129 gets")
d.go(txn([], [], puts(129)), "C45 129 ops in the failure branch (not taken)")
d.go(txn([cmp("MOD", f"c{i}", "=", 0) for i in range(129)], [put("y", "1")]), "C45 129 compares")
d.go(txn([cmp("MOD", f"c{i}", "=", 0) for i in range(128)], [put("y", "1")]), "C45 128 compares")
d.go(txn([], puts(99, "p") + [txn([], puts(28, "q"))]), "C45 100 outer ops + 28 nested")
d.go(txn([], puts(99, "r") + [txn([], puts(29, "s"))]), "C45 100 outer ops + 29 nested")
d.go(txn([cmp("MOD", "x", "=", 0)] * 120, [txn([], puts(9, "u"))]),
     "C45 120 compares + nested 9 ops (budget 8)")
d.go(txn([cmp("MOD", "x", "=", 0)] * 120, [txn([], puts(8, "u"))]),
     "C45 120 compares + nested 8 ops")
d.go(txn([], [txn([], [txn([], puts(127, "v"))])]), "C45 nested 127 under 1 under 1")
d.go(txn([], [txn([], puts(127, "w"))]), "C45 nested 127 under 1")
d.ctl_txn([], [f"put x{i} v" for i in range(129)], [], name="C45 etcdctl 129 puts")
d.py(lambda c: c.transaction(compare=[], success=[c.transactions.put(f"z{i}", "v")
                                                  for i in range(129)], failure=[]),
     "C45 transaction() 129 puts")
d.go(get("", from_key=True, count_only=True), "C45 state")

# ---------------------------------------------------------------- C46, C47
d.reset("C46")
d.go_seq([put("d/a", "1"), put("d/b", "1"), put("e", "1")], "C46 setup")
allowed = []
for label, ops, dup in [
        ("two puts of one key", [put("a", "1"), put("a", "2")], True),
        ("put a, put b, put a", [put("a", "1"), put("b", "1"), put("a", "3")], True),
        ("delete prefix d/, then put d/x", [delete("d/", prefix=True), put("d/x", "1")], True),
        ("put d/x, then delete prefix d/", [put("d/x", "1"), delete("d/", prefix=True)], True),
        ("delete d/a, put d/a", [delete("d/a"), put("d/a", "1")], True),
        ("delete d/a, put d/b", [delete("d/a"), put("d/b", "1")], False),
        ("delete [d/a, d/c), put d/c (end excluded)", [delete("d/a", range_end="d/c"), put("d/c", "1")], False),
        ("delete [d/a, d/c), put d/b", [delete("d/a", range_end="d/c"), put("d/b", "1")], True),
        ("delete from key d/ (range_end \\0), put e", [delete("d/", from_key=True), put("e", "2")], None),
        ("delete from key d/, put d/a", [delete("d/", from_key=True), put("d/a", "2")], None),
        ("delete [d/z, d/a) (empty), put d/m", [delete("d/z", range_end="d/a"), put("d/m", "2")], None),
        ("put a, nested put a", [put("a", "1"), txn([], [put("a", "2")])], True),
        ("nested put a, put a", [txn([], [put("a", "2")]), put("a", "1")], True),
        ("nested then/else put a", [txn([cmp("MOD", "a", "=", 0)], [put("a", "1")], [put("a", "2")])], False),
        ("then/else put a, two levels down in a success branch",
         [txn([], [txn([], [put("a", "1")], [put("a", "2")])])], False),
        ("then/else put a, two levels down in a failure branch",
         [txn([], [], [txn([], [put("a", "1")], [put("a", "2")])])], False),
        ("then/else put a, three levels down",
         [txn([], [txn([], [], [txn([], [put("a", "1")], [put("a", "2"), put("b", "2")])])])], False),
        ("two nested txns put a", [txn([], [put("a", "1")]), txn([], [put("a", "2")])], True),
        ("nested else put a, nested then put a",
         [txn([], [], [put("a", "1")]), txn([], [put("a", "2")])], True),
        ("delete prefix d/, nested put d/x", [delete("d/", prefix=True), txn([], [put("d/x", "1")])], True),
        ("nested delete prefix d/, put d/x", [txn([], [delete("d/", prefix=True)]), put("d/x", "1")], True),
        ("nested delete d/, later nested put d/x",
         [txn([], [delete("d/", prefix=True)]), txn([], [put("d/x", "1")])], True),
        ("nested put d/x, later nested delete d/",
         [txn([], [put("d/x", "1")]), txn([], [delete("d/", prefix=True)])], None),
        ("nested then delete d/, nested else put d/x",
         [txn([], [delete("d/", prefix=True)], [put("d/x", "1")])], None),
        ("two levels deep put a vs put a", [put("a", "1"), txn([], [txn([], [put("a", "2")])])], True),
        ("overlapping deletes", [delete("d/", prefix=True), delete("d/a"), delete("d/", from_key=True)], False),
        ("range and put of one key", [get("e"), put("e", "3"), get("e")], False),
        ("delete and range of one key", [delete("e", prev_kv=True), get("e")], False),
        ("put and nested get of one key", [put("e", "4"), txn([], [get("e")])], False),
        ("nested delete d/a and nested put d/b", [txn([], [delete("d/a")]), txn([], [put("d/b", "2")])], False)]:
    # the check is static: with the ops in the branch not taken (and the
    # taken one empty) nothing is written, so that one difference here
    # shifts no revision of the cases after it
    r = d.go(txn([cmp("VERSION", "never", ">", 0)], ops), f"C46/C47 {label} (not taken)")
    if dup is not None:
        t.is_(err(r) == ("InvalidArgument", "etcdserver: duplicate key given in txn request"),
              dup, f"C46/C47 {label}: {'duplicate' if dup else 'allowed'}")
    if not dup:
        allowed.append((label, ops))
for label, ops in allowed:
    d.go(txn([], ops), f"C47 {label}: executed")
r = d.go(txn([cmp("MOD", "a", "=", 0)], [put("a", "s")], [put("a", "f")]),
         "C47 put a in success and in failure")
d.go(txn([cmp("MOD", "a", "=", 0)], [put("b", "s")], [put("a", "1"), put("a", "2")]),
     "C46 duplicate in the failure branch (not taken) still refused")
d.ctl_txn([], ["put x 1", "put x 2"], [], name="C46 etcdctl two puts of one key")
d.ctl_txn([], ["del d/ --prefix", "put d/q 1"], [], name="C46 etcdctl put inside a delete range")
d.ctl_txn([], ["put x 1"], ["put x 2"], name="C47 etcdctl success and failure put x")
d.py(lambda c: c.transaction(compare=[], success=[c.transactions.put("x", "1"),
                                                  c.transactions.put("x", "2")], failure=[]),
     "C46 transaction() two puts of one key")
d.py(lambda c: c.transaction(compare=[], success=[c.transactions.delete("d/a", range_end="d/c"),
                                                  c.transactions.delete("d/b")], failure=[]),
     "C47 transaction() overlapping deletes")
d.go(get("", from_key=True), "C46/C47 state")

# ---------------------------------------------------------------- C48
d.reset("C48")
d.go_seq([put("a", "a0"), put("b", "b0")], "C48 setup")
before = d.go(get("", from_key=True), "C48 state before")
for label, ops in [
        ("put, put with an unknown lease", [put("a", "1"), put("b", "2", lease=999)]),
        ("put, put ignore_value of a missing key", [put("a", "1"), put("m", ignore_value=True)]),
        ("put, put ignore_lease of a missing key", [put("a", "1"), put("m", "v", ignore_lease=True)]),
        ("unknown lease + ignore_value on a missing key (which error?)",
         [put("m", lease=999, ignore_value=True)]),
        ("delete, put with an unknown lease", [delete("a"), put("c", "2", lease=5)]),
        ("put, get at a future revision", [put("a", "1"), get("b", revision=1000)]),
        ("nested taken branch with an unknown lease",
         [put("a", "1"), txn([cmp("MOD", "a", ">", 0)], [put("c", "1", lease=7)], [])])]:
    r = d.go(txn([cmp("VERSION", "a", "=", 1)], ops, [get("a")]), f"C48 {label}")
    t.ok(err(r) is not None, f"C48 {label}: the whole txn fails")
after = d.go(get("", from_key=True), "C48 state after the failed txns")
t.is_(after, before, "C48 no partial write, no revision taken")
for label, fail_ops in [
        ("unknown lease", [put("a", "x", lease=999)]),
        ("ignore_value of a missing key", [put("m", ignore_value=True)]),
        ("future revision", [get("a", revision=1000)]),
        ("all three", [put("a", "x", lease=999), put("m", ignore_value=True), get("a", revision=1000)])]:
    r = d.go(txn([cmp("VERSION", "a", "=", 1)], [put("ok", label)], fail_ops),
             f"C48 {label} in the untaken branch: ignored")
    t.is_(succeeded(r), True, f"C48 {label} in the untaken branch: succeeded")
d.go(txn([], [txn([cmp("MOD", "a", "=", 0)], [put("c", "1", lease=7)], [put("c", "2")])]),
     "C48 invalid op in a nested untaken branch: ignored")
d.go(txn([cmp("VERSION", "a", "=", 1)], [get("a", revision=1000)], [get("a")]),
     "C48 read-only txn, future revision in the taken branch")
d.go(txn([cmp("VERSION", "a", "=", 9)], [get("a", revision=1000)], [get("a")]),
     "C48 read-only txn, future revision in the untaken branch")
# an empty RequestOp is refused statically, in either branch
d.py(raw_txn(success=[rop(request_range=R.RangeRequest(key=b"a"))], failure=[rop()]),
     "C48 empty RequestOp in the failure branch")
d.py(raw_txn(success=[rop(request_put=R.PutRequest(key=b"q", value=b"1")), rop()]),
     "C48 empty RequestOp after a put")
d.py(raw_txn(success=[rop(request_put=R.PutRequest(key=b"q", value=b"1"))],
             failure=[rop(request_put=R.PutRequest(key=b"q", value=b"1", lease=999))]),
     "C48 raw: unknown lease in the untaken failure branch")
d.py(lambda c: c.transaction(compare=[], success=[c.transactions.put("a", "1"),
                                                  c.transactions.put("b", "2", lease=999)],
                             failure=[]), "C48 transaction() with an unknown lease")
d.ctl_txn([], ["put a 1", "put b 2 --lease=3e7"], [], name="C48 etcdctl txn with an unknown lease")
# negative and compacted revisions in a txn Range: checked against the
# compact revision (-1 in a fresh store, the revision after a compaction)
d.go(txn([], [get("a", revision=-1)]), "C48 Range revision -1 in a txn, never compacted")
d.go(txn([], [get("a", revision=-2)]), "C48 Range revision -2 in a txn, never compacted")
d.go(get("a", revision=-2), "C48 plain Range revision -2, never compacted")
cur = hrev(d.go(put("a", "c1"), "C48 a write"))
d.go(put("a", "c2"), "C48 another write")
d.go(compact(cur), "C48 compact")
d.go(txn([cmp("VERSION", "a", ">", 0)], [put("b", "1"), get("a", revision=cur - 1)], [get("a")]),
     "C48 Range at a compacted revision in the taken branch")
d.go(txn([cmp("VERSION", "a", ">", 0)], [put("b", "2"), get("a", revision=cur)], [get("a")]),
     "C48 Range at the compact revision in the taken branch")
d.go(txn([cmp("VERSION", "a", "=", 0)], [put("b", "3")], [get("a", revision=cur - 1)]),
     "C48 compacted Range in the failure branch, taken")
d.go(txn([cmp("VERSION", "a", ">", 0)], [put("b", "4")], [get("a", revision=cur - 1)]),
     "C48 compacted Range in the failure branch, not taken")
d.go(txn([], [get("a", revision=-1)]), "C48 Range revision -1 in a txn after a compaction")
d.go(get("a", revision=-1), "C48 plain Range revision -1 after a compaction")
d.go(get("", from_key=True), "C48 final state")

d.close()
t.done()
