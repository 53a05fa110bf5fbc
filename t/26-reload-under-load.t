#!/usr/bin/python3
# Reloads and a killed worker under a Go clientv3 load (CONFORMANCE C71).
#
# One ballast on a private PostgreSQL; t/lib/go/blload runs for the whole
# test: puts and deletes, linearizable and serializable gets, Kubernetes'
# optimistic updates (Txn MOD = seen -> Put else Range), watches on five
# prefixes (WithRev), and four leases kept alive by clientv3's KeepAlive
# holding keys.  Meanwhile ten HUPs, the configuration rewritten before
# most of them to change worker_processes; after each, the master says the
# new generation serves, as many workers serve as configured and the old
# ones are gone; during the first, the database takes no new connection
# for 1.5 s, and the old workers serve until the new ones have theirs.
# Then a worker holding watch streams is killed with
# SIGKILL: the master respawns it, clientv3 reconnects and resumes.
#
# Asserted: no unary RPC failed across the reloads (clientv3's own retries
# are fine, what the application sees must be success); every watch got
# every event of its prefix exactly once and in log order, and reconnected
# after each reload and the kill without giving up; no lease lapsed (the
# gap between keepalive answers stayed under the TTL, its keys were never
# deleted and still hold it); every acknowledged write is in the log at
# its revision; the log has no gap and no duplicate.
import os, re, signal, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import blload

# worker_processes before each HUP (a repeat: reload without a change)
WORKERS = [4, 1, 3, 3, 2, 4, 4, 1, 3, 2]
LEASE_TTL = 5
SHUTDOWN = 2                # worker_shutdown_timeout, s

t = bltest.Tap()
path, secs = blload.binary()
t.diag(f"built blload in {secs:.1f} s" if secs else "blload (cached)")

pg = bltest.Postgres(fast=True)
pg.start()
b = bltest.Ballast(dsn=pg.dsn(), workers=2,
                   extra=f"worker_shutdown_timeout {SHUTDOWN}s;")
base_conf = open(b.conf_path).read()
b.start()


def processes():
    """(serving workers, draining workers) of the master."""
    serving, draining = [], []
    for p in bltest.child_pids(b.master_pid):
        cmd = bltest._cmdline(p)
        if cmd == "ballast: worker process":
            serving.append(p)
        elif cmd.startswith("ballast: worker process"):
            draining.append(p)
    return serving, draining


def generations():
    return len(re.findall(r"reconfigured: generation \d+ serving", b.error_log()))


t.is_(len(processes()[0]), 2, "two workers serve at the start")

ld = blload.Load(path, b.endpoint, writers=3, readers=2, txns=2,
                 watch="/,/w0/,/w1/,/txn/,/lease/", lease_clients=2, leases=2,
                 lease_ttl=LEASE_TTL, pace="5ms", settle="30s")
ld.wait_ready()
t.ok(ld.wait_progress(lambda p: p["acked"] > 100, 20), "the load is running")

# ---------------------------------------------------------------- reloads
current = 2
timings = []
for i, n in enumerate(WORKERS):
    if n != current:
        b.rewrite_conf(base_conf.replace("worker_processes 2;",
                                         f"worker_processes {n};"))
    old = set(sum(processes(), []))
    gens = generations()
    t0 = time.monotonic()
    if i == 0:
        # the database takes no new connection (its postmaster stopped;
        # the old workers' sessions go on): the new workers must neither
        # take clients nor report ready, so the old ones keep serving
        os.kill(pg.pid, signal.SIGSTOP)
        try:
            b.reload()
            bltest.wait_until(lambda: len(processes()[0]) > len(old), 5)
            time.sleep(1.5)
            waiting = generations() == gens and set(processes()[0]) >= old \
                and not processes()[1]
        finally:
            os.kill(pg.pid, signal.SIGCONT)
        t.ok(waiting, "HUP while the database takes no new connection: the "
             "old workers serve until the new ones have theirs")
    else:
        b.reload()
    served = bltest.wait_until(
        lambda: generations() > gens and len(processes()[0]) == n
        and old.isdisjoint(processes()[0]), 20)
    t1 = time.monotonic()
    gone = bltest.wait_until(lambda: not any(bltest.pid_alive(p) for p in old),
                             SHUTDOWN + 10)
    t2 = time.monotonic()
    serving, draining = processes()
    t.ok(served and gone and len(serving) == n and not draining,
         f"HUP {i + 1}: {n} worker(s) serve (configured {n}, was {current}), "
         f"the old ones are gone")
    if not (served and gone):
        t.diag(f"  serving {serving}, draining {draining}, old {sorted(old)}")
    timings.append((t1 - t0, t2 - t0))
    current = n
    # the load goes on between reloads
    before = ld.progress()["ok"]
    ld.wait_progress(lambda p: p["ok"] > before + 50, 10)
    time.sleep(0.5)

t.diag("reload: new generation serving after %.2f s (max %.2f), old workers "
       "gone after %.2f s (max %.2f)" % (
           sum(a for a, _ in timings) / len(timings), max(a for a, _ in timings),
           sum(b_ for _, b_ in timings) / len(timings), max(b_ for _, b_ in timings)))
p = ld.progress()
t.ok(all(m for m in p["watch_member"]) and min(p["watch_last"]) > 0,
     "every watch is receiving events after the reloads")

# ------------------------------------------- a worker with watches killed
# the worker that holds the most watch connections (by socket inode)
serving, _ = processes()
owners = [blload.socket_owner(serving, b.port, local) for local in p["watch_local"]]
held = {w: owners.count(w) for w in serving if w in owners}
t.ok(held, f"watch connections are held by workers {held}")
victim = max(held, key=held.get) if held else serving[0]
moved = [i for i, w in enumerate(owners) if w == victim]
rev_at_kill = p["last_rev"]
kill_time = time.time()
os.kill(victim, signal.SIGKILL)
t.ok(bltest.wait_until(lambda: victim not in processes()[0]
                       and len(processes()[0]) == current, 10),
     f"the killed worker {victim} is respawned ({current} serve)")

before_locals = [p["watch_local"][i] for i in moved]
after = ld.wait_progress(
    lambda q: all(q["watch_local"][i] != before_locals[k] and q["watch_last"][i] > rev_at_kill
                  for k, i in enumerate(moved)), 20)
t.ok(after, f"the {len(moved)} watches it held reconnected and go on past revision "
     f"{rev_at_kill}")
time.sleep(1)

# --------------------------------------------------------------- results
res = ld.stop()
rows = blload.log_rows(pg)
last = blload.check_log(t, pg, rows)
acked = ld.acked()
blload.check_acked(t, rows, acked)
tot = blload.check_watches(t, rows, ld)

during_reloads = ld.failures_between(0, kill_time)
after_kill = ld.failures_between(kill_time)
sent = sum(o["sent"] for o in res["ops"].values())
t.is_(len(during_reloads), 0, f"no unary RPC failed across {len(WORKERS)} reloads "
      f"({sent} sent in all)")
for f in during_reloads[:5]:
    t.diag(f"  {f}")
t.is_(res["stale_reads"], 0, "no linearizable read missed a write acknowledged "
      f"before it was sent {res['stale_ex'][:2]}")

dials = res["dials"]
t.ok(all(dials[f"watch{i}"] > len(WORKERS) for i in range(len(res["watches"]))),
     "each watch client reconnected after every reload "
     f"({[dials[f'watch{i}'] for i in range(len(res['watches']))]} connections)")

for l in res["leases"]:
    t.ok(not l["lost"] and not l["lapsed"] and l["max_gap_ms"] < LEASE_TTL * 1000
         and l["remaining_ttl"] > 0 and l["keys_held"] == l["keys"] and not l.get("error"),
         f"lease {l['id']} (TTL {l['ttl']} s) never lapsed: {l['keepalives']} keepalive "
         f"answers, longest gap {l['max_gap_ms']} ms, {l['remaining_ttl']} s left, "
         f"{l['keys_held']}/{l['keys']} keys held")
    if l["lost"] or l.get("error"):
        t.diag(f"  {l}")
lease_deletes = [r for r in rows if r.key.startswith("/load/lease/") and r.kind == 1]
t.is_(lease_deletes[:5], [], "no key of a lease was ever deleted (no lease expired)")

# the kill is an alert by design; nothing else may be
alerts = [l for l in b.error_log().splitlines()
          if ("[alert]" in l or "[emerg]" in l) and f"{victim} exited on signal 9" not in l]
t.is_(alerts[:5], [], "no alert in the error log but the killed worker's")
b.allow_alerts()

t.diag(f"requests sent {sent}, failed {res['failed']} "
       f"({len(during_reloads)} during reloads, {len(after_kill)} after the worker kill); "
       f"acknowledged writes {len(acked)}; revisions {res['start_rev']}..{last}")
t.diag(f"watch events expected {tot['expected']}, received {tot['received']}, "
       f"lost {tot['lost']}, duplicated {tot['duplicated']}; reloads {len(WORKERS)}")
t.diag("ops: " + ", ".join(f"{k} {v['ok']}/{v['sent']}" for k, v in sorted(res["ops"].items())))
for f in after_kill[:5]:
    t.diag(f"  after the kill: {f['client']} {f['op']}: {f['err']}")
b.stop()
t.done()
