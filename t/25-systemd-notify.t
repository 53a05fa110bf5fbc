#!/usr/bin/python3
# systemd's notification protocol as the service manager sees it: a unix
# datagram socket in NOTIFY_SOCKET, the sender's pid from SCM_CREDENTIALS.
# READY=1 only once the database is up and a request succeeds; HUP ->
# RELOADING=1 (+ MONOTONIC_USEC) then READY=1 once the new workers serve,
# even when that waits for the database; a bad configuration -> READY=1
# with "reload failed" and the old workers serving; QUIT -> STOPPING=1;
# WATCHDOG=1 at half WATCHDOG_USEC; the embedded PostgreSQL (built with
# systemd support) never speaks on our socket; an abstract socket works.
import os, signal, socket, struct, sys, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import grpc


class Listener:
    """What systemd does: bind a datagram socket, read each message with
    the credentials the kernel attaches."""

    def __init__(self, name):
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + name[1:] if name.startswith("@") else name)
        self.msgs = []           # (monotonic time, pid, {VAR: value}, raw)
        self.on_message = None   # called in the thread with each message
        self.cv = threading.Condition()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        csize = socket.CMSG_SPACE(struct.calcsize("iII"))
        while True:
            data, anc, _, _ = self.sock.recvmsg(4096, csize)
            pid = None
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", cdata[:12])[0]
            text = data.decode("utf-8", "replace")
            fields = dict(l.split("=", 1) for l in text.split("\n") if "=" in l)
            msg = (time.monotonic(), pid, fields, text)
            if self.on_message:
                self.on_message(msg)
            with self.cv:
                self.msgs.append(msg)
                self.cv.notify_all()

    def states(self):
        """Every message but the watchdog pings."""
        with self.cv:
            return [m for m in self.msgs if "WATCHDOG" not in m[2]]

    def wait(self, var, after, timeout):
        """The first message with var set among states()[after:], waiting
        up to timeout s; None if none came."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for m in self.states()[after:]:
                    if var in m[2]:
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cv.wait(left)


def raw_put(endpoint, key, value):
    """One unary Put with no client retry: the gRPC code name."""
    ch = grpc.insecure_channel(endpoint)
    put = ch.unary_unary("/etcdserverpb.KV/Put", request_serializer=None,
                         response_deserializer=None)
    k, v = key.encode(), value.encode()
    try:
        put(bytes([0x0a, len(k)]) + k + bytes([0x12, len(v)]) + v, timeout=5)
        return "OK"
    except grpc.RpcError as e:
        return e.code().name
    finally:
        ch.close()


def titles(pid):
    """{child pid: title} of the master's children."""
    return {p: bltest._cmdline(p) for p in bltest.child_pids(pid)}


t = bltest.Tap()

# ------------------------------------------------ a database that is down
pg = bltest.Postgres(fast=True)              # initdb'd, not started
b = bltest.Ballast(dsn=pg.dsn(), workers=2)
sock_path = os.path.join(b.tmp, "notify.sock")
L = Listener(sock_path)
at_ready = {}                                # what the machine looked like


def snapshot(msg):
    if "READY" in msg[2] and b.master_pid:
        at_ready.setdefault(len([m for m in L.msgs if "WATCHDOG" not in m[2]]),
                            titles(b.master_pid))


L.on_message = snapshot
b.start(wait=False, env={"NOTIFY_SOCKET": sock_path,
                         "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": None})
master = b.master_pid

time.sleep(3)
t.ok(bltest.pid_alive(master), "ballast runs while the database is down")
t.is_(L.states(), [], "no READY=1 (nor anything else) while the database "
      "is down, after 3 s")
dogs = [m for m in L.msgs if "WATCHDOG" in m[2]]
t.is_(raw_put(b.endpoint, "k", "early"), "UNAVAILABLE",
      "and indeed it cannot serve a Put yet")
t.ok(4 <= len(dogs) <= 8, "WATCHDOG=1 every 0.5 s with WATCHDOG_USEC=1 s "
     "(%d in about 3 s)" % len(dogs))
t.ok(all(m[2] == {"WATCHDOG": "1"} and m[1] == master for m in dogs),
     "from the master, the ping alone")

before_db = time.monotonic()
pg.start()
ready = L.wait("READY", 0, 30)
t.ok(ready is not None, "READY=1 once the database is up")
code = raw_put(b.endpoint, "k", "v1")
t.is_(code, "OK", "a Put sent right after READY=1 succeeds (no retry)")
if ready:
    t.diag("READY=1 %.2f s after the database was started" % (ready[0] - before_db))
    t.ok(ready[0] > before_db, "READY=1 came after the database was started")
    t.is_(ready[1], master, "from the master's pid")
    t.like(ready[2].get("STATUS", ""), r"^serving", "with STATUS=serving...")
    t.ok("MAINPID" not in ready[2], "no MAINPID: the master is the process "
         "started (daemon off)")
t.like(b.error_log(), r"every process is ready, serving",
       "the error log says when it is ready")

# ------------------------------------------------------ a good reload
n = len(L.states())
old = set(b.worker_pids())
sent = time.monotonic()
b.reload()
rel = L.wait("RELOADING", n, 10)
t.ok(rel is not None, "HUP: RELOADING=1")
if rel:
    mono = int(rel[2].get("MONOTONIC_USEC", "0"))
    t.ok(sent - 1 <= mono / 1e6 <= time.monotonic() + 1,
         "with MONOTONIC_USEC on CLOCK_MONOTONIC (%d)" % mono)
ready = L.wait("READY", n + 1, 20)
t.ok(ready is not None, "then READY=1")
if ready:
    t.diag("HUP -> READY=1: %.3f s" % (ready[0] - sent))
    t.like(ready[2].get("STATUS", ""), r"^serving, configuration generation",
           "STATUS: serving the new generation")
    seen = at_ready.get(n + 1, {})
    new = [p for p, title in seen.items()
           if p not in old and title.endswith("worker process")]
    t.is_(len(new), 2, "when READY=1 came the 2 new workers were running")
t.ok(bltest.wait_until(lambda: not (set(b.worker_pids()) & old), 30),
     "the old workers drain and exit")
t.is_(raw_put(b.endpoint, "k", "v2"), "OK", "the new workers serve")

# ------------------------------------- a reload while the database is down
pg.stop("fast")
n = len(L.states())
old = set(b.worker_pids())
b.reload()
t.ok(L.wait("RELOADING", n, 10) is not None,
     "HUP with the database down: RELOADING=1")
t.is_(L.wait("READY", n + 1, 3), None,
      "no READY=1 while the new workers cannot reach the database (3 s)")
pg.start()
ready = L.wait("READY", n + 1, 12)
t.ok(ready is not None, "READY=1 once they can")
if ready:
    t.like(ready[2].get("STATUS", ""), r"^serving",
           "and the reload succeeded")
t.ok(bltest.wait_until(lambda: not (set(b.worker_pids()) & old), 30),
     "the old generation drains")
t.ok(bltest.wait_until(lambda: raw_put(b.endpoint, "k", "v3") == "OK", 5),
     "and the new one serves")

# ------------------------------------------------- a bad configuration
b.allow_alerts()                   # "reconfiguration failed" is an alert
good = open(b.conf_path).read()
b.rewrite_conf(good + "bogus_directive on;\n")
n = len(L.states())
old = set(b.worker_pids())
b.reload()
t.ok(L.wait("RELOADING", n, 10) is not None, "bad configuration: RELOADING=1")
ready = L.wait("READY", n + 1, 10)
t.ok(ready is not None, "then READY=1: the service is still up")
if ready:
    t.like(ready[2].get("STATUS", ""),
           r'^reload failed: unknown directive "bogus_directive" in .*'
           r'ballast\.conf:\d+; the old configuration keeps serving',
           "STATUS says why the reload failed, with file:line")
time.sleep(0.5)
t.is_(set(b.worker_pids()), old, "the old workers are still the ones")
t.is_(raw_put(b.endpoint, "k", "v4"), "OK", "and they serve")
b.rewrite_conf(good)

# ------------------------------------------------------------- QUIT
n = len(L.states())
b.signal(signal.SIGQUIT)
stop = L.wait("STOPPING", n, 10)
t.ok(stop is not None, "QUIT: STOPPING=1")
if stop:
    t.like(stop[2].get("STATUS", ""), r"graceful", "STATUS: graceful")
t.ok(bltest.wait_until(lambda: not bltest.pid_alive(master), 30),
     "the master exits")
b.stop()
t.is_(b.exit_status, 0, "with status 0")

got = [next(k for k in ("READY", "RELOADING", "STOPPING") if k in m[2])
       for m in L.states()]
t.is_(got, ["READY", "RELOADING", "READY", "RELOADING", "READY",
            "RELOADING", "READY", "STOPPING"],
      "every state change, in order, nothing else")
t.is_({m[1] for m in L.msgs}, {master}, "every message came from the master")

# ---------------------------- embedded PostgreSQL, abstract socket, no dog
e = bltest.Ballast(embedded=True, workers=1)
name = "@bltest-notify-%d" % os.getpid()
A = Listener(name)
e.start(wait=False, env={"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "1000000",
                         "WATCHDOG_PID": "1"})
ready = A.wait("READY", 0, 90)
t.ok(ready is not None, "embedded: READY=1 on an abstract socket")
t.is_(raw_put(e.endpoint, "k", "v"), "OK", "and it serves")
time.sleep(1.2)
t.is_({m[1] for m in A.msgs}, {e.master_pid},
      "only the master spoke: the embedded PostgreSQL did not inherit "
      "NOTIFY_SOCKET")
t.is_([m for m in A.msgs if "WATCHDOG" in m[2]], [],
      "no WATCHDOG=1 when WATCHDOG_PID names another process")
n = len(A.states())
e.stop()
stop = A.wait("STOPPING", n, 5)
t.ok(stop is not None and "fast" in stop[2].get("STATUS", ""),
     "TERM: STOPPING=1, fast shutdown")
t.is_(len(A.states()), n + 1, "and nothing else")
t.done()
