#!/usr/bin/python3
# Maintenance and Cluster on one node (issue 6; CONFORMANCE.md section 8,
# C80-C85): every etcdctl command of them against ballast and against a
# real etcd 3.4 fed the same writes -- endpoint status/health/hashkv,
# member list, alarm list/disarm, defrag, snapshot save, member
# add/remove/update/promote, move-leader -- and python etcd3's status(),
# members, defragment(), list_alarms(), hash().  The alarms are driven with
# raw Alarm requests (ACTIVATE NOSPACE), which etcd 3.4 honours too, so that
# the refused writes, the status errors and the disarm are compared with
# etcd's own: same gRPC code, same message.
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import grpc
from etcd3 import etcdrpc as rpc

NOSPACE_MSG = "etcdserver: mvcc: database space exceeded"

t = bltest.Tap()
pg = bltest.Postgres(fast=True)
pg.start()
b = bltest.Ballast(dsn=pg.dsn())
b.start()
e = bltest.Etcd()
e.start()
SERVERS = (("ballast", b.endpoint), ("etcd", e.endpoint))


def ctl(ep, *args):
    return bltest.etcdctl(ep, *args)


def status(ep):
    r = ctl(ep, "-w", "json", "endpoint", "status")
    return r.json()[0]["Status"]


def hashkv(ep, rev=0):
    """(rc, hash, compact_revision, header revision, stderr)"""
    r = ctl(ep, "-w", "json", "endpoint", "hashkv", "--rev=%d" % rev)
    if r.rc != 0:
        return r.rc, None, None, None, r.err
    h = r.json()[0]["HashKV"]
    return 0, h["hash"], h["compact_revision"], h["header"]["revision"], ""


def last_error(err):
    """etcdctl's own 'Error: ...' line (its client logs warnings first)."""
    lines = [l for l in err.splitlines() if l.startswith("Error:")]
    return lines[-1] if lines else err.strip()


def raw(c, stub, method, req):
    """(code name, details or response) of one call, no client retry."""
    try:
        return "OK", getattr(getattr(c, stub), method)(req, timeout=5)
    except grpc.RpcError as ex:
        return ex.code().name, ex.details()


for name, ep in SERVERS:
    for args in (("put", "a", "1"), ("put", "b", "2"), ("put", "a", "3"),
                 ("del", "b")):
        t.is_(ctl(ep, *args).rc, 0, "%s: %s" % (name, " ".join(args)))

# -------------------------------------------------------------- Status (C80)
ids = {}
for name, ep in SERVERS:
    st = status(ep)
    ids[name] = st["header"]["member_id"]
    t.is_(st["leader"], st["header"]["member_id"],
          "%s: C80 Status leader is the answering member" % name)
    t.ok(st["dbSize"] > 0, "%s: dbSize > 0 (%d)" % (name, st["dbSize"]))
    t.ok(0 < st["dbSizeInUse"] <= st["dbSize"],
         "%s: 0 < dbSizeInUse <= dbSize (%d)" % (name, st["dbSizeInUse"]))
    t.ok(st["raftTerm"] >= 1 and st["raftTerm"] == st["header"]["raft_term"],
         "%s: raftTerm >= 1, as in the header" % name)
    t.ok(st["raftIndex"] >= 1 and st["raftAppliedIndex"] >= 1,
         "%s: raft indexes set" % name)
    t.ok(not st.get("isLearner") and not st.get("errors"),
         "%s: not a learner, no errors" % name)
    t.is_(st["header"]["revision"], 5, "%s: header revision is current" % name)
    r = ctl(ep, "endpoint", "status")
    t.like(r.out, r", true, false, \d+, \d+, \d+, $",
           "%s: etcdctl shows IS LEADER true, IS LEARNER false" % name)

st = status(b.endpoint)
t.is_(st["version"], "3.5.17", "ballast: version is the emulated etcd API")
t.is_((st["raftIndex"], st["raftAppliedIndex"]), (5, 5),
      "ballast: raft indexes are the revision")
ctl(b.endpoint, "put", "c", "x")
st2 = status(b.endpoint)
t.ok(st2["raftIndex"] > st["raftIndex"] and st2["raftTerm"] == st["raftTerm"],
     "ballast: raftIndex grows with writes, raftTerm stays")
size = int(pg.psql("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                   "WHERE c.relname LIKE 'ballast\\_%' AND c.relkind = 'r'"))
t.ok(abs(st2["dbSize"] - size) <= 64 * 1024,
     "ballast: dbSize is the tables' size in PostgreSQL (%d vs %d)"
     % (st2["dbSize"], size))
ctl(e.endpoint, "put", "c", "x")

# -------------------------------------------------------------- health
for name, ep in SERVERS:
    r = ctl(ep, "endpoint", "health")
    t.ok(r.rc == 0 and "is healthy" in r.err + r.out, "%s: endpoint health" % name)

# -------------------------------------------------------------- HashKV (C84)
for name, ep in SERVERS:
    rc, h6, compact, hrev, _ = hashkv(ep)
    t.ok(rc == 0 and hrev == 6 and compact == -1,
         "%s: hashkv at the current revision 6, compact_revision -1" % name)
    t.is_(hashkv(ep, 6)[1], h6, "%s: hashkv --rev=6 is the same hash" % name)
    ctl(ep, "put", "d", "1")
    t.is_(hashkv(ep, 6)[1], h6, "%s: later writes do not change it" % name)
    t.ok(hashkv(ep)[1] != h6, "%s: the current hash moved on" % name)
    t.ok(hashkv(ep, 5)[1] not in (None, h6), "%s: revision 5 hashes apart" % name)
    t.is_(ctl(ep, "compaction", "5").rc, 0, "%s: compaction 5" % name)
    rc, h, compact, _, _ = hashkv(ep, 6)
    t.ok(rc == 0 and compact == 5, "%s: compact_revision 5 reported" % name)

# the same errors, code and message
for rev, what in ((5, "at the compact revision"), (3, "below it"),
                  (100, "in the future")):
    got = [last_error(hashkv(ep, rev)[4]) for _, ep in SERVERS]
    t.is_(got[0], got[1], "hashkv %s: %s" % (what, got[1]))
c = {name: bltest.etcd3_client(ep) for name, ep in SERVERS}
for rev in (4, 100):
    got = [raw(c[n], "maintenancestub", "HashKV", rpc.HashKVRequest(revision=rev))
           for n, _ in SERVERS]
    t.is_(got[0], got[1], "HashKV(%d) raw: %s" % (rev, got[1][0]))

# -------------------------------------------------------------- MemberList (C81)
for name, ep in SERVERS:
    r = ctl(ep, "-w", "json", "member", "list")
    ms = r.json()["members"]
    t.is_(len(ms), 1, "%s: one member" % name)
    t.is_(ms[0]["ID"], ids[name], "%s: its ID is the header's member_id" % name)
    t.is_(ms[0]["clientURLs"], ["http://" + ep], "%s: its client URL" % name)
    t.ok("revision" not in r.json()["header"], "%s: no revision in the header"
         % name)
    r = ctl(ep, "member", "list")
    t.like(r.out, r"^[0-9a-f]+, started, \S+, .*, http://%s, false$" % ep,
           "%s: member list shows it started" % name)
t.is_(ctl(b.endpoint, "-w", "json", "member", "list").json()["members"][0]["name"],
      "node1", "ballast: the member name is the `name` directive")

# -------------------------------------------------------------- alarms (C82)
for name, ep in SERVERS:
    r = ctl(ep, "alarm", "list")
    t.ok(r.rc == 0 and r.out == "", "%s: alarm list: none" % name)
    t.is_(ctl(ep, "-w", "json", "alarm", "list").out.strip(), "{}",
          "%s: alarm list -w json: {} (no header)" % name)
    r = ctl(ep, "alarm", "disarm")
    t.ok(r.rc == 0 and r.out == "", "%s: alarm disarm: nothing to do" % name)


def activate(name, member, alarm=rpc.NOSPACE, action=rpc.AlarmRequest.ACTIVATE):
    return raw(c[name], "maintenancestub", "Alarm",
               rpc.AlarmRequest(action=action, memberID=member, alarm=alarm))


for name, ep in SERVERS:
    me = ids[name]
    code, resp = activate(name, me)
    t.ok(code == "OK" and len(resp.alarms) == 1
         and resp.alarms[0].memberID == me and resp.alarms[0].alarm == rpc.NOSPACE
         and not resp.HasField("header"),
         "%s: ACTIVATE NOSPACE answers the alarm, no header" % name)
    alarm_line = "memberID:%d alarm:NOSPACE " % me
    t.is_(ctl(ep, "alarm", "list").out, alarm_line + "\n",
          "%s: alarm list shows it as etcd words it" % name)
    t.is_(status(ep).get("errors"), [alarm_line], "%s: Status errors" % name)

    r = ctl(ep, "put", "x", "y")
    t.ok(r.rc != 0 and last_error(r.err) == "Error: " + NOSPACE_MSG,
         "%s: put refused with NOSPACE" % name)
    kv = c[name].kvstub
    put = rpc.RequestOp(request_put=rpc.PutRequest(key=b"x", value=b"y"))
    dele = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=b"a"))
    get = rpc.RequestOp(request_range=rpc.RangeRequest(key=b"a"))
    nested = rpc.RequestOp(request_txn=rpc.TxnRequest(success=[put]))
    for what, stub, method, req in (
            ("Put", "kvstub", "Put", rpc.PutRequest(key=b"x", value=b"y")),
            ("Txn with a put in the branch not taken", "kvstub", "Txn",
             rpc.TxnRequest(success=[get], failure=[put])),
            ("LeaseGrant", "leasestub", "LeaseGrant", rpc.LeaseGrantRequest(TTL=60)),
            ("LeaseGrant with a too large TTL", "leasestub", "LeaseGrant",
             rpc.LeaseGrantRequest(TTL=10 ** 10))):
        got = raw(c[name], stub, method, req)
        t.is_(got, ("RESOURCE_EXHAUSTED", NOSPACE_MSG), "%s: %s refused" % (name, what))
    for what, stub, method, req in (
            ("Range", "kvstub", "Range", rpc.RangeRequest(key=b"a")),
            ("Txn without a put", "kvstub", "Txn", rpc.TxnRequest(success=[get])),
            ("Txn whose put is nested (etcd counts the top level)", "kvstub",
             "Txn", rpc.TxnRequest(success=[nested])),
            ("DeleteRange", "kvstub", "DeleteRange", rpc.DeleteRangeRequest(key=b"d"))):
        t.is_(raw(c[name], stub, method, req)[0], "OK", "%s: %s works" % (name, what))
    t.is_(ctl(ep, "get", "a", "--print-value-only").out, "3\n", "%s: get works" % name)
    t.is_(ctl(ep, "compaction", "7").rc, 0, "%s: compaction works" % name)
    t.is_(ctl(ep, "defrag").rc, 0, "%s: defrag works" % name)
    t.is_(ctl(ep, "endpoint", "health").rc, 0, "%s: endpoint health still ok" % name)

    code, resp = activate(name, 12345)
    got = sorted((a.memberID, a.alarm) for a in
                 activate(name, 0, rpc.NONE, rpc.AlarmRequest.GET)[1].alarms)
    t.is_(got, sorted([(me, rpc.NOSPACE), (12345, rpc.NOSPACE)]),
          "%s: GET lists the alarms of every member" % name)
    code, resp = activate(name, 999, rpc.NOSPACE, rpc.AlarmRequest.DEACTIVATE)
    t.ok(code == "OK" and len(resp.alarms) == 0,
         "%s: DEACTIVATE of no alarm: an empty answer" % name)
    r = ctl(ep, "alarm", "disarm")
    t.is_(sorted(r.out.splitlines()),
          sorted([alarm_line, "memberID:12345 alarm:NOSPACE "]),
          "%s: alarm disarm prints what it disarmed" % name)
    t.is_(ctl(ep, "alarm", "list").out, "", "%s: no alarm left" % name)
    t.is_(ctl(ep, "put", "x", "y").rc, 0, "%s: put works again" % name)
    t.is_(raw(c[name], "leasestub", "LeaseGrant", rpc.LeaseGrantRequest(TTL=60))[0],
          "OK", "%s: lease grant works again" % name)

# -------------------------------------------------------------- defrag (C83)
for name, ep in SERVERS:
    r = ctl(ep, "defrag")
    t.ok(r.rc == 0 and "Finished defragmenting etcd member[%s]" % ep in r.out,
         "%s: defrag" % name)
t.like(b.error_log(), r"starting VACUUM \(ANALYZE\)", "ballast: defrag ran a VACUUM")

# -------------------------------------------------------------- not supported (C85)
snap = os.path.join(b.tmp, "snap.db")
r = ctl(b.endpoint, "snapshot", "save", snap)
t.ok(r.rc != 0 and "code = Unimplemented" in r.err
     and "snapshot is not supported by ballast: back up the PostgreSQL database"
     in r.err and not os.path.exists(snap),
     "snapshot save: Unimplemented, naming pg_dump/pg_basebackup")
for args in (("member", "add", "n2", "--peer-urls=http://127.0.0.1:1"),
             ("member", "remove", "1234"),
             ("member", "update", "1234", "--peer-urls=http://127.0.0.1:1"),
             ("member", "promote", "1234")):
    r = ctl(b.endpoint, *args)
    t.ok(r.rc != 0 and "code = Unimplemented" in r.err
         and "membership changes are not supported by ballast" in r.err,
         "%s: Unimplemented, naming how nodes join" % " ".join(args[:2]))
me_hex = "%x" % ids["ballast"]
r = ctl(b.endpoint, "move-leader", me_hex)
t.ok(r.rc == 0 and "Leadership transferred from %s to %s" % (me_hex, me_hex) in r.out,
     "move-leader to itself: done, as etcd")
got = [last_error(ctl(ep, "move-leader", "1234").err) for _, ep in SERVERS]
t.is_(got[0], got[1], "move-leader to no member: %s" % got[1])
# python etcd3's protos predate Downgrade (3.5): an empty request, by hand
downgrade = grpc.insecure_channel(b.endpoint).unary_unary(
    "/etcdserverpb.Maintenance/Downgrade", request_serializer=None,
    response_deserializer=None)
try:
    downgrade(b"", timeout=5)
    got = ("OK", "")
except grpc.RpcError as ex:
    got = (ex.code().name, ex.details())
t.ok(got[0] == "UNIMPLEMENTED" and "downgrade is not supported by ballast"
     in got[1], "Downgrade: Unimplemented (%s)" % got[1])

# -------------------------------------------------------------- python etcd3
for name, ep in SERVERS:
    s = c[name].status()
    t.ok(s.leader is not None and s.leader.id == ids[name],
         "%s: etcd3 status() finds the leader in MemberList" % name)
    t.ok(s.db_size > 0 and s.raft_term >= 1 and s.raft_index >= 1,
         "%s: etcd3 status() sizes and raft fields" % name)
    ms = list(c[name].members)
    t.ok(len(ms) == 1 and ms[0].client_urls == ["http://" + ep],
         "%s: etcd3 members" % name)
    try:
        c[name].defragment()
        got = "ok"
    except Exception as ex:
        got = repr(ex)
    t.is_(got, "ok", "%s: etcd3 defragment()" % name)
    t.is_(list(c[name].list_alarms()), [], "%s: etcd3 list_alarms(): none" % name)
    h1, h2 = c[name].hash(), c[name].hash()
    t.ok(isinstance(h1, int) and h1 == h2, "%s: etcd3 hash() is stable" % name)
    c[name].put("hash-me", "1")
    t.ok(c[name].hash() != h1, "%s: etcd3 hash() follows the data" % name)
t.is_(c["ballast"].status().version, "3.5.17", "ballast: etcd3 status().version")

# endpoints given as URLs, as operators write them: etcdctl 3.4 then sends
# "http://host:port" as :authority for these commands, which etcd accepts
for name, ep in SERVERS:
    for args in (["endpoint", "status"], ["endpoint", "hashkv"], ["defrag"],
                 ["endpoint", "health"], ["member", "list"], ["alarm", "list"]):
        r = ctl("http://" + ep, *args)
        t.is_(r.rc, 0, "%s: etcdctl --endpoints=http://%s %s" % (
            name, ep, " ".join(args)) + ("" if r.rc == 0 else ": " + r.stderr[-300:]))

b.stop()
t.done()
