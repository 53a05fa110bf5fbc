#!/usr/bin/python3
# Put and Range, differentially: the same requests go to a real etcd 3.4
# and to ballast (etcdctl and python etcd3 as clients); the answers must be
# identical except for the cluster/member ids and the raft term.
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest

t = bltest.Tap()

pg = bltest.Postgres(fast=True)
pg.start()
b = bltest.Ballast(dsn=pg.dsn(), workers=2)
b.start()
etcd = bltest.Etcd()
etcd.start()


def norm(doc):
    """Drop what legitimately differs between two clusters."""
    if isinstance(doc, dict):
        return {k: norm(v) for k, v in doc.items()
                if k not in ("cluster_id", "member_id", "raft_term")}
    if isinstance(doc, list):
        return [norm(v) for v in doc]
    return doc


def both(*args, name=None):
    """Run one etcdctl command against both servers and compare."""
    e = bltest.etcdctl(etcd.endpoint, "-w", "json", *args)
    o = bltest.etcdctl(b.endpoint, "-w", "json", *args)
    label = name or "etcdctl " + " ".join(args)
    if e.rc != 0 or o.rc != 0:
        # etcdctl's JSON log lines carry times and ids: compare the verdict
        def verdict(r):
            return (r.rc, [l for l in r.err.splitlines()
                           if l.startswith("Error:")])
        t.is_(verdict(o), verdict(e), label + " (same failure)")
        return None
    t.is_(norm(o.json()), norm(e.json()), label)
    return o.json()


# a fresh store: revision 1, nothing there
r = both("get", "foo", name="get on an empty store")
t.is_(r and r["header"]["revision"], 1, "empty store is at revision 1")

r = both("put", "foo", "bar", name="first put")
t.is_(r and r["header"]["revision"], 2, "first put gets revision 2")
both("put", "foo", "bar", name="identical re-put bumps the revision")
both("get", "foo", name="version 2, create_revision kept")

for k, v in [("a", "1"), ("foo/1", "x"), ("foo/2", "y"), ("fop", "z"),
             ("fo", "w"), ("g", "last"), ("b", "")]:
    both("put", k, v, name=f"put {k}")

both("get", "--prefix", "foo", name="prefix")
both("get", "--prefix", "f", name="prefix f")
both("get", "--prefix", "foo", "--limit", "1", name="limit 1: more, count")
both("get", "--prefix", "f", "--limit", "2", name="limit 2")
both("get", "--prefix", "f", "--limit", "100", name="limit above count")
both("get", "--from-key", "foo", name="from key")
both("get", "--from-key", "", name="all keys via from-key")
both("get", "a", "fo", name="explicit range [a, fo)")
both("get", "fo", "a", name="range_end before key: empty")
both("get", "--prefix", "f", "--count-only", name="count_only")
both("get", "--prefix", "f", "--keys-only", name="keys_only")
both("get", "nothere", name="missing key: no kvs, count 0")
both("get", "b", name="empty value")
both("put", "foo", "baz", "--prev-kv", name="put --prev-kv")
both("put", "newkey", "v", "--prev-kv", name="put --prev-kv on a new key")
both("get", "--prefix", "f", "--order", "DESCEND", name="descending keys")
both("get", "--prefix", "f", "--sort-by", "MODIFY", name="sort by mod")
both("get", "--prefix", "f", "--sort-by", "VERSION", "--order", "DESCEND",
     name="sort by version descending")
both("get", "--prefix", "f", "--sort-by", "VALUE", "--order", "ASCEND",
     "--limit", "2", name="sort by value, limit")
both("get", "--prefix", "f", "--sort-by", "CREATE", "--limit", "2",
     name="non-key target without order (etcd's limit-then-sort)")
both("get", "--prefix", "", name="all keys")
both("get", "", name="empty key")
both("put", "", "x", name="put with an empty key")
both("put", "missing", "--ignore-value", name="ignore_value on a missing key")
both("put", "foo", "--ignore-value", name="ignore_value keeps the value")
both("get", "foo", name="after ignore_value")
both("put", "foo", "v2", "--lease", "1234", name="unknown lease")

# python etcd3: arbitrary bytes in keys and values, byte order
pe = bltest.etcd3_client(etcd.endpoint)
pb = bltest.etcd3_client(b.endpoint)
keys = [b"\x00", b"k\x00z", b"k\xff", b"k\xff\xff", b"k", b"k\x01",
        b"\xff\xfe", "ключ".encode()]
for k in keys:
    pe.put(k, b"v" + k)
    pb.put(k, b"v" + k)


def dump(client, prefix):
    return [(v, m.key, m.create_revision, m.mod_revision, m.version)
            for v, m in client.get_prefix(prefix)]


t.is_(dump(pb, b"k"), dump(pe, b"k"), "etcd3: binary keys in byte order")
t.is_(dump(pb, b"\x00")[:1], dump(pe, b"\x00")[:1], "etcd3: the key \\0")
t.is_(pb.get("ключ".encode())[0], "vключ".encode(), "etcd3: utf-8 key")
t.is_([m.key for _, m in pb.get_all()], [m.key for _, m in pe.get_all()],
      "etcd3: every key, in order")
t.is_(pb.get(b"absent"), pe.get(b"absent"), "etcd3: missing key")
bv = pb.put(b"big", b"x" * 100000)
ev = pe.put(b"big", b"x" * 100000)
t.is_(bv.header.revision, ev.header.revision, "etcd3: 100 kB value")
t.is_(pb.get(b"big")[0], pe.get(b"big")[0], "etcd3: 100 kB value read back")

b.stop()
t.done()
