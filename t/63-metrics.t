#!/usr/bin/python3
# /metrics beyond the gRPC families (t/08 has those): each node-wide
# metric checked against what the test did, through clients nobody here
# wrote (python etcd3, etcdctl, raw Watch streams):
#  - ballast_watch_streams / ballast_watchers == the streams and watches
#    open; ballast_watch_events_sent_total grows by the events received;
#    ballast_watch_catchup_reads_total by 1 for a watch from the past;
#  - ballast_ring_revision == ballast_database_revision ==
#    etcd_debugging_mvcc_current_revision == the last write's revision,
#    lag 0 once writes settle; a write through a second node moves this
#    node's database revision (commit notifications);
#  - ballast_leases == granted - revoked - expired; renewals and
#    expiries counted; ballast_compact_revision == the compaction's;
#  - the pools: busy + idle == connections per process, by process;
#    etcd_server_has_leader 1, then 0 while PostgreSQL is down;
#  - ballast_reloads_total{result} by a good and a broken HUP,
#    ballast_respawns_total{process} by killed children, counters kept;
#  - `promtool check metrics` passes on the exposition.
import http.client, os, shutil, signal, subprocess, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import blwatch

t = bltest.Tap()

pg = bltest.Postgres(fast=True)
pg.start()
hport = bltest.free_port()
b = bltest.Ballast(dsn=pg.dsn(), workers=2, extra="http_listen 127.0.0.1:%d;" % hport)
b.start()
HTTP = ("127.0.0.1", hport)


def get_text():
    c = http.client.HTTPConnection(*HTTP, timeout=10)
    c.request("GET", "/metrics")
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    return body


def scrape():
    return bltest.parse_metrics(get_text())[0]


def val(m, name, **labels):
    """The sample's value (summed over other labels), None if absent."""
    want = frozenset(labels.items())
    vs = [v for (n, l), v in m.items() if n == name and want <= l]
    return sum(vs) if vs else None


def metric(name, **labels):
    return val(scrape(), name, **labels)


def settles(name, want, timeout=15, **labels):
    """Wait until the metric equals want; return what it last was."""
    last = [None]

    def check():
        last[0] = metric(name, **labels)
        return last[0] == want
    bltest.wait_until(check, timeout, 0.1)
    return last[0]


def promtool(text, what):
    tool = shutil.which("promtool")
    if tool is None:
        t.skip("promtool not installed (Debian package prometheus)")
        return
    r = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    ok = r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip()
    t.ok(ok, "promtool check metrics %s: no error, no lint" % what)
    if not ok:
        t.diag(r.stdout + r.stderr)


kv = blwatch.KV(b.endpoint)
client = bltest.etcd3_client(b.endpoint)

# --- at rest

t.is_(settles("ballast_leases", 0), 0, "ballast_leases: 0 on a new store (the watcher counted)")
t.is_(settles("etcd_server_has_leader", 1), 1, "etcd_server_has_leader 1 (the database is reachable)")
m = scrape()
t.is_(val(m, "etcd_server_is_leader"), val(m, "etcd_server_has_leader"),
      "etcd_server_is_leader too")
t.is_(val(m, "ballast_compact_revision"), -1, "ballast_compact_revision -1: never compacted")
t.is_(val(m, "etcd_debugging_mvcc_compact_revision"), -1, "  etcd's name says the same, as etcd does")
t.is_((val(m, "ballast_watch_streams"), val(m, "ballast_watchers")), (0, 0),
      "no Watch stream, no watcher")
for r in ("ok", "failed"):
    t.is_(val(m, "ballast_reloads_total", result=r), 0, "ballast_reloads_total{result=%s} 0" % r)
for p in ("worker", "watcher", "postgres"):
    t.is_(val(m, "ballast_respawns_total", process=p), 0, "ballast_respawns_total{process=%s} 0" % p)


def pool_settled():
    m = scrape()
    w = [val(m, "ballast_storage_pool_connections", process="worker", state=s)
         for s in ("busy", "idle", "connecting", "broken")]
    x = [val(m, "ballast_storage_pool_connections", process="watcher", state=s)
         for s in ("busy", "idle", "connecting", "broken")]
    return (w[0] + w[1], w[2] + w[3], x[0] + x[1], x[2] + x[3])


t.is_(bltest.wait_until(lambda: pool_settled() == (4, 0, 2, 0), 10) and pool_settled(),
      (4, 0, 2, 0), "pools: busy + idle == 2 workers x connections 2, and the watcher's 2")

# --- watches

a = blwatch.Stream(b.endpoint)
a.create(b"m/", prefix=True)
a.create(b"m/3")
bb = blwatch.Stream(b.endpoint)
bb.create(b"m/", prefix=True)
created = a.recv_n(2) + bb.recv_n(1)
t.is_([r["created"] for r in created], [True] * 3, "three watches created on two streams")
# (a worker publishes before its loop sleeps: a scrape on the other one
# may come a moment earlier, so values are waited for)
t.is_(settles("ballast_watch_streams", 2), 2, "ballast_watch_streams 2")
t.is_(settles("ballast_watchers", 3), 3, "ballast_watchers 3")
m = scrape()
sent0 = val(m, "ballast_watch_events_sent_total")
reads0 = val(m, "ballast_watch_catchup_reads_total")

revs = [kv.put("m/%d" % i, "v%d" % i) for i in range(10)]
got_a = sum(len(r["events"]) for r in a.recv_events(11))
got_b = sum(len(r["events"]) for r in bb.recv_events(10))
t.is_((got_a, got_b), (11, 10), "the streams received 11 and 10 events")
t.is_(settles("ballast_watch_events_sent_total", sent0 + 21), sent0 + 21,
      "ballast_watch_events_sent_total grew by those 21")
t.is_(metric("ballast_watch_catchup_reads_total"), reads0,
      "ballast_watch_catchup_reads_total: live watches read no log")

last = revs[-1]
t.is_(settles("ballast_ring_lag_revisions", 0), 0, "ballast_ring_lag_revisions back to 0")
m = scrape()
t.is_((val(m, "ballast_ring_revision"), val(m, "ballast_database_revision"),
       val(m, "etcd_debugging_mvcc_current_revision")), (last, last, last),
      "ring, database and etcd's current revision == the last put's (%d)" % last)

# a watch from the past is caught up from the log: one page
bb.create(b"m/", prefix=True, start_revision=revs[0])
hist = bb.recv_events(10)
t.is_(sum(len(r["events"]) for r in hist), 10, "a watch from the first put's revision gets 10 events")
t.is_(settles("ballast_watch_catchup_reads_total", reads0 + 1), reads0 + 1,
      "ballast_watch_catchup_reads_total +1: one log page")
t.is_(settles("ballast_watch_events_sent_total", sent0 + 31), sent0 + 31,
      "  its 10 events counted as sent")
t.is_(settles("ballast_watchers", 4), 4, "ballast_watchers 4")

a.cancel_watch(1)
t.ok(bltest.wait_until(lambda: any(r["canceled"] for r in a.recv_n(1, 2)), 5), "cancel one watch")
t.is_(settles("ballast_watchers", 3), 3, "ballast_watchers 3")
bb.close()
t.is_(settles("ballast_watch_streams", 1), 1, "a stream closed: ballast_watch_streams 1")
t.is_(settles("ballast_watchers", 1), 1, "  and its two watchers gone: ballast_watchers 1")

# a write through another node reaches this node's watcher by NOTIFY
n2 = bltest.Ballast(dsn=pg.dsn(), workers=1)
with open(n2.conf_path) as f:
    n2.rewrite_conf(f.read().replace("name node1;", "name node2;"))
n2.start()
rev2 = blwatch.KV(n2.endpoint).put("m/other-node", "x")
t.is_(settles("ballast_database_revision", rev2), rev2,
      "a put through node 2: ballast_database_revision == its revision (%d)" % rev2)
t.is_(settles("ballast_ring_revision", rev2), rev2, "  and the ring has it")
got = a.recv_events(1)
t.is_(sum(len(r["events"]) for r in got), 1, "  (the watch on this node got it)")
n2.stop()

# --- leases

renew0 = metric("ballast_lease_renewals_total")
expired0 = metric("ballast_leases_expired_total")
leases = [client.lease(600) for i in range(3)]
client.revoke_lease(leases[1].id)
t.is_(settles("ballast_leases", 2), 2, "3 leases granted, 1 revoked: ballast_leases 2")
ttls = [r.TTL for i in (0, 2) for r in client.refresh_lease(leases[i].id)]
t.is_(ttls, [600, 600], "two keepalives answered with the TTL")
t.is_(settles("ballast_lease_renewals_total", renew0 + 2), renew0 + 2,
      "two keepalives: ballast_lease_renewals_total +2")
ttls = [r.TTL for r in client.refresh_lease(leases[1].id)]
t.is_(ttls, [0], "a keepalive of the revoked lease: TTL 0")
time.sleep(0.3)                   # had it counted, both workers would say so
t.is_(metric("ballast_lease_renewals_total"), renew0 + 2, "  a keepalive of a revoked lease is not a renewal")
short = client.lease(8)           # outlives the next count (every 5 s)
t.is_(settles("ballast_leases", 3, timeout=7), 3, "an 8 s lease: ballast_leases 3")
t.is_(settles("ballast_leases_expired_total", expired0 + 1, timeout=20), expired0 + 1,
      "it expires: ballast_leases_expired_total +1")
t.is_(settles("ballast_leases", 2), 2, "  and ballast_leases is 2 again")

# --- compaction

crev = revs[5]
kv.compact(crev)
m_ok = settles("ballast_compact_revision", crev)
t.is_(m_ok, crev, "compacted at %d: ballast_compact_revision %d" % (crev, crev))
t.is_(metric("etcd_debugging_mvcc_compact_revision"), crev, "  etcd_debugging_mvcc_compact_revision too")

text = get_text()
m, types, errors = bltest.parse_metrics(text)
t.is_(errors, [], "the exposition parses line by line")
t.is_({n: types.get(n) for n in ("ballast_watchers", "ballast_leases", "ballast_reloads_total",
                                 "ballast_watch_events_sent_total", "etcd_server_has_leader")},
      {"ballast_watchers": "gauge", "ballast_leases": "gauge", "ballast_reloads_total": "counter",
       "ballast_watch_events_sent_total": "counter", "etcd_server_has_leader": "gauge"},
      "  with the TYPE of each")
promtool(text, "with everything populated")
a.close()

# --- reloads, respawns

before = scrape()
old = set(b.worker_pids())
b.reload()
t.is_(settles("ballast_reloads_total", 1, timeout=20, result="ok"), 1,
      "HUP: ballast_reloads_total{result=ok} 1")
t.ok(bltest.wait_until(lambda: old.isdisjoint(b.worker_pids()) and len(b.worker_pids()) == 2, 20),
     "  a new generation of workers")
m = scrape()
t.is_(val(m, "ballast_watch_events_sent_total"), val(before, "ballast_watch_events_sent_total"),
      "  ballast_watch_events_sent_total kept its total")
t.is_(val(m, "ballast_leases_expired_total"), val(before, "ballast_leases_expired_total"),
      "  ballast_leases_expired_total (the new watcher's slot) kept its total")
t.is_(settles("ballast_leases", 2), 2, "  the new watcher counts the leases: 2")

b.allow_alerts()                  # a bad configuration and killed children are [alert]s
with open(b.conf_path) as f:
    good = f.read()
with open(b.conf_path, "w") as f:
    f.write(good + "no_such_directive on;\n")
b.reload()
t.is_(settles("ballast_reloads_total", 1, timeout=20, result="failed"), 1,
      "HUP with a broken configuration: ballast_reloads_total{result=failed} 1")
t.is_(metric("ballast_reloads_total", result="ok"), 1, "  {result=ok} stays 1")
with open(b.conf_path, "w") as f:
    f.write(good)

victim = b.worker_pids()[0]
os.kill(victim, signal.SIGKILL)
t.is_(settles("ballast_respawns_total", 1, process="worker"), 1,
      "a worker killed: ballast_respawns_total{process=worker} 1")
t.ok(bltest.wait_until(lambda: metric("ballast_workers") == 2, 10), "  ballast_workers 2 again")
watchers = [p for p in bltest.child_pids(b.master_pid) if "watcher process" in bltest._cmdline(p)]
t.is_(len(watchers), 1, "one watcher process")
os.kill(watchers[0], signal.SIGKILL)
t.is_(settles("ballast_respawns_total", 1, process="watcher"), 1,
      "the watcher killed: ballast_respawns_total{process=watcher} 1")
now = kv.rev()
t.is_(settles("ballast_database_revision", now), now,
      "  the new watcher reports the database revision (%d)" % now)
t.is_(metric("ballast_ring_revision"), now, "  and the ring's is the same")

# --- the database goes away

pg.stop("fast")
t.is_(settles("etcd_server_has_leader", 0, timeout=20), 0, "PostgreSQL stopped: etcd_server_has_leader 0")


def down():
    m = scrape()
    return sum(val(m, "ballast_storage_pool_connections", process="worker", state=s)
               for s in ("busy", "idle"))


t.ok(bltest.wait_until(lambda: down() == 0, 20), "  no worker connection busy or idle")
t.ok(metric("ballast_storage_errors_total") > 0, "  ballast_storage_errors_total counted the failures")
promtool(get_text(), "while the database is down")
pg.start()
t.is_(settles("etcd_server_has_leader", 1, timeout=30), 1, "PostgreSQL back: etcd_server_has_leader 1")
t.is_(bltest.wait_until(lambda: pool_settled() == (4, 0, 2, 0), 30) and pool_settled(),
      (4, 0, 2, 0), "  the pools are whole again")

b.stop()
t.done()
