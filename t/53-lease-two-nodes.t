#!/usr/bin/python3
# Leases with two ballast nodes on one PostgreSQL (issue 5, "correct with
# many nodes"): a lease granted through node A and renewed through node B
# does not expire; a lease nobody renews is expired exactly once (one
# revision, one DELETE in ballast_log) although both nodes run expiry;
# after node A is killed -9 (master and every child), node B alone
# expires what A granted, still exactly once, and B's renewals go on.
import os, signal, sys, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import bldiff

TTL = 2
t = bltest.Tap()
if bldiff.target_kind() != "ballast":
    t.skip_all("two ballast nodes on one database: ballast only")

pg = bltest.Postgres()
pg.start()


def conf(name):
    """The harness's default config, with this node's name."""
    lines = ["daemon off;", "worker_processes 2;", "error_log {tmp}/error.log info;",
             "pid {tmp}/ballast.pid;", f"name {name};", "listen 127.0.0.1:{port};",
             "storage postgres {", '    dsn "{dsn}";', "    connections 2;", "}"]
    if bltest._is_root():
        lines.append(f"user nobody {bltest._nobody()[2]};")
    return "\n".join(lines) + "\n"


nodes = [bltest.Ballast(dsn=pg.dsn(), conf=conf(f"node{i}")) for i in (1, 2)]
for n in nodes:
    n.start()
rpc = bldiff.rpc()
ca = bltest.etcd3_client(nodes[0].endpoint)
cb = bltest.etcd3_client(nodes[1].endpoint)


def grant(c, ttl):
    return c.leasestub.LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl), timeout=5).ID


def exists(c, key):
    return c.get(key)[0] is not None


def deletes(key):
    """(DELETE rows, distinct revisions) of key in ballast_log."""
    out = pg.psql("SELECT count(*), count(DISTINCT rev) FROM ballast_log "
                  f"WHERE key = convert_to('{key}', 'UTF8') AND kind = 1").strip()
    return tuple(int(x) for x in out.split("|"))


class Renewer:
    """Renews a lease through one node every 0.5 s until stopped."""

    def __init__(self, c, lease_id):
        self.c, self.id = c, lease_id
        self.answers, self.errors = [], []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                self.answers += [a.TTL for a in self.c.refresh_lease(self.id)]
            except Exception as e:
                self.errors.append(repr(e)[:200])
            self.stop.wait(0.5)

    def end(self):
        self.stop.set()
        self.thread.join(10)
        return time.monotonic()


# ------------------------------------ granted on A, renewed on B
kept = grant(ca, TTL)
ca.put("kept/k", "v", lease=kept)
ren = Renewer(cb, kept)

# ------------------------------------ nobody renews: expired once
lone = grant(ca, TTL)
ca.put("lone/a", "v", lease=lone)
ca.put("lone/b", "v", lease=lone)
t.ok(bltest.wait_until(lambda: not exists(cb, "lone/a") and not exists(ca, "lone/b"),
                       TTL + 3, 0.05),
     "a lease nobody renews expires (both nodes running expiry)")
t.is_(deletes("lone/a"), (1, 1), "... deleted once (ballast_log)")
t.is_(pg.psql("SELECT count(DISTINCT rev) FROM ballast_log WHERE kind = 1 AND key IN "
              "(convert_to('lone/a', 'UTF8'), convert_to('lone/b', 'UTF8'))").strip(), "1",
      "... both its keys in one revision")

# many due at once, both nodes' expiry racing for them
N = 50
for i in range(N):
    c = (ca, cb)[i % 2]
    c.put(f"race/{i:02d}", "v", lease=grant(c, TTL))
t.ok(bltest.wait_until(lambda: not list(ca.get_prefix("race/")), TTL + 4, 0.05),
     f"{N} leases granted through both nodes expired")
t.is_(pg.psql("SELECT count(*), count(DISTINCT rev) FROM ballast_log WHERE kind = 1 "
              "AND key >= convert_to('race/', 'UTF8') AND key < convert_to('race0', 'UTF8')"
              ).strip(), f"{N}|{N}", f"... each deleted once, in a revision of its own")

time.sleep(TTL)
t.ok(exists(ca, "kept/k") and exists(cb, "kept/k"),
     "granted on A, renewed on B: still there after several TTLs")

# ------------------------------------ kill node A
doomed = grant(ca, TTL + 1)
ca.put("doomed/k", "v", lease=doomed)
granted = time.monotonic()
a = nodes[0]
a.allow_alerts()        # its children may see the master die first
family = bltest.child_pids(a.master_pid)
t.ok(len(family) >= 3, f"node A: master, {len(family)} children (workers, watcher)")
a.signal(signal.SIGKILL)
for pid in family:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
t.ok(bltest.wait_until(lambda: not any(bltest.pid_alive(p) for p in family + [a.master_pid]),
                       10), "node A is gone (kill -9, master and children)")
killed = time.monotonic()
t.diag(f"node A killed {killed - granted:.2f} s after the grant of a {TTL + 1} s lease")
ca.close()

t.ok(bltest.wait_until(lambda: not exists(cb, "doomed/k"), TTL + 4, 0.05),
     "node B expires the lease granted on the dead node A")
delay = time.monotonic() - granted
t.ok(delay <= TTL + 1 + 1.0, f"... {delay:.2f} s after the grant (TTL {TTL + 1} s)")
t.is_(deletes("doomed/k"), (1, 1), "... deleted once (ballast_log)")
r = cb.leasestub.LeaseTimeToLive(rpc.LeaseTimeToLiveRequest(ID=doomed), timeout=5)
t.is_(r.TTL, -1, "... and the lease is gone")

time.sleep(2 * TTL)
t.ok(exists(cb, "kept/k"), "B's renewals keep A's lease alive after A died")
stopped = ren.end()
t.ok(ren.answers and all(x == TTL for x in ren.answers) and not ren.errors,
     f"{len(ren.answers)} renewals through B, each TTL {TTL}" +
     (f"; errors: {ren.errors[:3]}" if ren.errors else ""))
t.ok(bltest.wait_until(lambda: not exists(cb, "kept/k"), TTL + 3, 0.05),
     "renewals stopped: B expires it")
t.diag(f"gone {time.monotonic() - stopped:.2f} s after the renewals stopped")
t.is_(deletes("kept/k"), (1, 1), "... deleted once (ballast_log)")

cb.close()
t.done()
