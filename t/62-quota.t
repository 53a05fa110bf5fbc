#!/usr/bin/python3
# The quota (limits { quota }, etcd's --quota-backend-bytes) and the
# NOSPACE alarm, on two nodes of one PostgreSQL: node1 has a tiny quota,
# node2 the default.  Filling the database past it raises NOSPACE from
# node1's watcher; then puts, transactions that put and lease grants fail
# exactly as etcd's do on BOTH nodes (the alarm is cluster-wide), reads,
# deletes, compaction and defrag still work; a disarm while still over the
# quota is undone by the next check; after deletes, a physical compaction
# and a defrag (defragment vacuum_full) the disarm sticks; filled again,
# raising the quota by a reload and disarming restores writes too.
import os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import bldiff
import grpc
from etcd3 import etcdrpc as rpc

NOSPACE = "etcdserver: mvcc: database space exceeded"
QUOTA = 2 * 1024 * 1024

t = bltest.Tap()
if bldiff.target_kind() != "ballast":
    t.skip_all("the quota of ballast nodes on one database: ballast only")

pg = bltest.Postgres(fast=True)
pg.start()


HPORT = bltest.free_port()


def health(query=""):
    """node2's GET /health: (status, body)"""
    import urllib.request, urllib.error
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/health%s"
                                    % (HPORT, query), timeout=10) as r:
            return r.status, r.read().decode().strip()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode().strip()


def conf(name, quota):
    lines = ["daemon off;", "worker_processes 2;", "error_log {tmp}/error.log info;",
             "pid {tmp}/ballast.pid;", f"name {name};", "listen 127.0.0.1:{port};",
             "storage postgres {", '    dsn "{dsn}";', "    connections 2;", "}",
             "defragment vacuum_full;"]
    if quota is not None:
        lines.append("limits { quota %s; }" % quota)
    else:
        lines.append("http_listen 127.0.0.1:%d;" % HPORT)
    if bltest._is_root():
        lines.append(f"user nobody {bltest._nobody()[2]};")
    return "\n".join(lines) + "\n"


n1 = bltest.Ballast(dsn=pg.dsn(), conf=conf("node1", "2m"))
n2 = bltest.Ballast(dsn=pg.dsn(), conf=conf("node2", None))
n1.start()
n2.start()
c1, c2 = bltest.etcd3_client(n1.endpoint), bltest.etcd3_client(n2.endpoint)


def ctl(node, *args):
    return bltest.etcdctl(node.endpoint, *args)


def raw(c, stub, method, req):
    try:
        getattr(getattr(c, stub), method)(req, timeout=5)
        return ("OK", "")
    except grpc.RpcError as ex:
        return (ex.code().name, ex.details())


def put_raw(c, key, value):
    return raw(c, "kvstub", "Put", rpc.PutRequest(key=key, value=value))


def fill(c):
    """Put 64 KiB random values until one is refused; (puts, answer)."""
    deadline = time.monotonic() + 60
    n = 0
    while time.monotonic() < deadline:
        got = put_raw(c, b"big/%d" % n, os.urandom(64 * 1024))
        if got[0] != "OK":
            return n, got
        n += 1
        time.sleep(0.02)
    return n, ("TIMEOUT", "")


def alarms(node):
    return ctl(node, "alarm", "list").out


def db_size(node):
    return ctl(node, "-w", "json", "endpoint", "status").json()[0]["Status"]["dbSize"]


id1 = ctl(n1, "-w", "json", "get", "x").json()["header"]["member_id"]
line1 = "memberID:%d alarm:NOSPACE \n" % id1

t.is_(alarms(n1), "", "no alarm at first")
t.is_(health(), (200, '{"health":"true","reason":""}'), "node2 /health: healthy")
n, got = fill(c1)
t.is_(got, ("RESOURCE_EXHAUSTED", NOSPACE),
      "node1: a put is refused with etcd's NOSPACE error after %d puts" % n)
t.ok(n * 64 * 1024 >= QUOTA / 4, "only once the database grew (%d puts)" % n)
t.is_(alarms(n1), line1, "alarm list on node1: NOSPACE raised by node1")
t.is_(alarms(n2), line1, "alarm list on node2: the same alarm (cluster-wide)")
t.ok(db_size(n1) > QUOTA, "dbSize is over the quota (%d)" % db_size(n1))
t.like(n1.error_log(), r"over the quota of %d: alarm NOSPACE raised by member %x"
       % (QUOTA, id1), "node1 logged why it raised the alarm")
# node2's watcher learns of it at its next heartbeat, within a second
t.ok(bltest.wait_until(lambda: put_raw(c2, b"x", b"y")[0] != "OK", 3),
     "node2 refuses writes within seconds")
t.like(n2.error_log(), r"alarm NOSPACE is raised", "node2 logged the alarm too")
# etcd: /health is false while an alarm is raised, unless excluded
t.is_(health(), (503, '{"health":"false","reason":"ALARM NOSPACE"}'),
      "node2 /health: 503, ALARM NOSPACE (as etcd 3.5)")
t.is_(health("?exclude=NOSPACE"), (200, '{"health":"true","reason":""}'),
      "node2 /health?exclude=NOSPACE: 200")
st = ctl(n2, "-w", "json", "endpoint", "status").json()[0]["Status"]
t.is_(st.get("errors"), [line1.rstrip("\n")], "Status errors on node2 list it")

for c, name in ((c1, "node1"), (c2, "node2")):
    t.is_(put_raw(c, b"x", b"y"), ("RESOURCE_EXHAUSTED", NOSPACE),
          "%s: Put refused" % name)
    txn = rpc.TxnRequest(failure=[rpc.RequestOp(request_put=rpc.PutRequest(key=b"x"))])
    t.is_(raw(c, "kvstub", "Txn", txn), ("RESOURCE_EXHAUSTED", NOSPACE),
          "%s: Txn with a put refused" % name)
    t.is_(raw(c, "leasestub", "LeaseGrant", rpc.LeaseGrantRequest(TTL=30)),
          ("RESOURCE_EXHAUSTED", NOSPACE), "%s: LeaseGrant refused" % name)
    t.is_(raw(c, "kvstub", "Range", rpc.RangeRequest(key=b"big/0")), ("OK", ""),
          "%s: Range works" % name)
r = ctl(n2, "put", "x", "y")
t.ok(r.rc != 0 and r.err.rstrip().endswith("Error: " + NOSPACE),
     "etcdctl put on node2: Error: %s" % NOSPACE)
t.is_(ctl(n2, "get", "big/0", "--keys-only").out.strip(), "big/0", "etcdctl get works")

# disarmed while still over the quota: raised again by the next check
r = ctl(n2, "alarm", "disarm")
t.is_(r.out, line1, "alarm disarm (on node2) disarms node1's alarm")
t.ok(bltest.wait_until(lambda: alarms(n2) == line1, 5),
     "still over the quota: raised again within seconds")

# room made: deletes, a physical compaction and a defrag, then the disarm holds
t.is_(ctl(n1, "del", "--prefix", "big/").rc, 0, "deletes work under NOSPACE")
rev = ctl(n1, "-w", "json", "get", "x").json()["header"]["revision"]
t.is_(ctl(n1, "compaction", "--physical", str(rev)).rc, 0, "compaction works")
r = ctl(n2, "defrag")
t.is_(r.rc, 0, "defrag (VACUUM FULL) works")
t.ok(db_size(n1) < QUOTA, "dbSize is under the quota after it (%d)" % db_size(n1))
t.is_(ctl(n1, "alarm", "disarm").out, line1, "alarm disarm")
t.ok(bltest.wait_until(lambda: put_raw(c2, b"x", b"y") == ("OK", ""), 3),
     "writes work again on node2")
t.is_(put_raw(c1, b"x", b"y"), ("OK", ""), "and on node1")
time.sleep(2.5)
t.is_(alarms(n1), "", "and the alarm stays off")
t.is_(raw(c1, "leasestub", "LeaseGrant", rpc.LeaseGrantRequest(TTL=30))[0], "OK",
      "lease grants work again")

# filled again; this time the quota is raised by a reload
n, got = fill(c2)
t.is_(got, ("RESOURCE_EXHAUSTED", NOSPACE), "filled again: NOSPACE (%d puts)" % n)
n1.rewrite_conf(conf("node1", "1g"))
n1.reload()
t.ok(bltest.wait_until(lambda: "reconfigured" in n1.error_log(), 15),
     "node1 reloaded with quota 1g")
t.is_(ctl(n1, "alarm", "disarm").out, line1, "alarm disarm")
time.sleep(2.5)
t.is_(alarms(n1), "", "under the new quota the alarm stays off")
t.is_(put_raw(c2, b"x", b"z"), ("OK", ""), "puts work again")
t.is_(ctl(n1, "get", "x", "--print-value-only").out, "z\n", "and are there")

n2.stop()
n1.stop()
t.done()
