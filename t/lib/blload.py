"""blload: a Go clientv3 load running under a test that disturbs the
server (reloads, killed workers, a killed node behind haproxy), and the
checks that compare what the clients saw with the revision log.

    import blload
    path, secs = blload.binary()                # t/lib/go/blload, built once
    ld = blload.Load(path, b.endpoint, writers=3, watch="/,/w0/")
    ld.wait_ready()
    ld.wait_progress(lambda p: p["acked"] > 100, 10)
    ...                                         # disturb the server
    res = ld.stop()                             # the program's result
    rows = blload.log_rows(pg)                  # the revision log
    blload.check_log(t, rows)                   # gap-free, no duplicate
    blload.check_acked(t, rows, ld.acked())     # acknowledged = committed
    blload.check_watches(t, rows, ld)           # every event exactly once

HAProxy runs Debian's haproxy in TCP mode in front of ballast nodes,
health-checking each through its http_listen /readyz.

Everything is bounded in time; the Go program and haproxy are ended with
the test (they run under setpriv --pdeathsig KILL and are tracked by pid).
"""

import collections
import csv
import io
import json
import math
import os
import signal
import socket
import subprocess
import threading
import time

import bltest
import bldiff

GO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "go", "blload")


def binary():
    """Build t/lib/go/blload once per source hash into $BALLAST_BUILDDIR/go;
    returns (path, seconds spent building or 0.0)."""
    return bldiff.build_go(GO_DIR, "blload")


class Load:
    """The Go program running against `endpoints` ("H:P" or a list).

    Keyword arguments become its flags (writers=3 -> -writers 3; see
    t/lib/go/blload/main.go).  Attributes: ready (the "ready" line),
    result (after stop()), out (its output directory), log_path (stderr:
    clientv3's and grpc's own log lines).
    """

    def __init__(self, binary, endpoints, **flags):
        if not isinstance(endpoints, str):
            endpoints = ",".join(endpoints)
        self.out = bltest._tempdir("blload-")
        self.log_path = os.path.join(self.out, "stderr.log")
        argv = [binary, "-endpoints", endpoints, "-out", self.out]
        for k, v in flags.items():
            argv += ["-" + k.replace("_", "-"), str(v)]
        self.ready = None
        self.result = None
        self.fatal = None
        self._progress = None
        self._cond = threading.Condition()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["setpriv", "--pdeathsig", "KILL", "--"] + argv,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                if "progress" in doc:
                    self._progress = doc["progress"]
                elif "ready" in doc:
                    self.ready = doc["ready"]
                elif "result" in doc:
                    self.result = doc["result"]
                elif "fatal" in doc:
                    self.fatal = doc["fatal"]
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _wait(self, what, timeout):
        deadline = time.monotonic() + timeout
        with self._cond:
            while getattr(self, what) is None and self.fatal is None \
                    and self.proc.poll() is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
            got = getattr(self, what)
        if got is None:
            raise RuntimeError(f"blload: no {what} line within {timeout} s "
                               f"(fatal: {self.fatal}, exit {self.proc.poll()})\n"
                               f"{bltest._tail(self.log_path)}")
        return got

    def wait_ready(self, timeout=30):
        """The "ready" line: the watches are created, the load starts."""
        return self._wait("ready", timeout)

    def progress(self):
        """The latest progress line (or None)."""
        with self._cond:
            return self._progress

    def wait_progress(self, pred, timeout):
        """Wait until pred(progress) is true; returns it, or None on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.progress()
            if p is not None and pred(p):
                return p
            time.sleep(0.05)
        return None

    def stop(self, timeout=60):
        """End the load; returns the result (raises if none came)."""
        try:
            self.proc.stdin.write(b"stop\n")
            self.proc.stdin.flush()
        except OSError:
            pass
        res = self._wait("result", timeout)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        return res

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def acked(self):
        """Every acknowledged write: dicts op, key, value, rev, client."""
        with open(os.path.join(self.out, "acked.jsonl")) as f:
            return [json.loads(l) for l in f]

    def watch(self, n):
        """Watch n's whole record, with "events": [[rev, key, type], ...]."""
        with open(os.path.join(self.out, f"watch-{n}.json")) as f:
            return json.load(f)

    def failures_between(self, t0, t1=None):
        """The failures whose time (unix s) is in [t0, t1), in the whole
        milliseconds the generator stamps them with (t_ms is truncated: a
        failure in the kill's own millisecond cannot be told before it)."""
        lo = math.floor(t0 * 1000)
        hi = math.floor(t1 * 1000) if t1 is not None else float("inf")
        return [f for f in self.result["failures"] if lo <= f["t_ms"] < hi]


# ------------------------------------------------------------ the log

Row = collections.namedtuple("Row", "rev sub key kind value")


def log_rows(pg):
    """The whole revision log (keys and values are ASCII in these tests)."""
    out = pg.psql("SELECT rev, sub, encode(key, 'escape'), kind, "
                  "encode(value, 'escape') FROM ballast_log ORDER BY rev, sub",
                  timeout=60)
    rows = []
    for line in out.splitlines():
        rev, sub, key, kind, value = line.split("|", 4)
        rows.append(Row(int(rev), int(sub), key, int(kind), value))
    return rows


def check_log(t, pg, rows, what=""):
    """Every revision from 2 to meta's revision is in the log, none twice
    within a sub-revision; returns the last revision."""
    last = int(pg.psql("SELECT revision FROM ballast_meta").strip())
    revs = sorted({r.rev for r in rows})
    missing = sorted(set(range(2, last + 1)) - set(revs))
    t.is_(missing[:10], [], f"{what}no revision from 2 to {last} is missing from the log")
    t.is_(len(rows), len({(r.rev, r.sub) for r in rows}),
          f"{what}no (revision, sub) appears twice in the log")
    dup = [k for k, n in collections.Counter((r.rev, r.key) for r in rows).items() if n > 1]
    t.is_(dup[:5], [], f"{what}no key appears twice in one revision")
    return last


def check_acked(t, rows, acked, what=""):
    """Every acknowledged write is in the log at its revision, with its
    key, kind and value; no two share a revision.  Returns the number."""
    by = {(r.rev, r.key): r for r in rows}
    bad = []
    for a in acked:
        r = by.get((a["rev"], a["key"]))
        kind = 1 if a["op"] == "del" else 0
        if r is None or r.kind != kind or (kind == 0 and r.value != a["value"]):
            bad.append((a, r))
    t.is_(bad[:5], [], f"{what}each of the {len(acked)} acknowledged writes is in the log "
          "at its acknowledged revision with its value")
    revs = collections.Counter(a["rev"] for a in acked)
    t.is_([r for r, n in revs.items() if n > 1][:5], [],
          f"{what}no two acknowledged writes share a revision")
    return len(acked)


def expected_events(rows, prefix, start, until):
    return [[r.rev, r.key, "DELETE" if r.kind == 1 else "PUT"] for r in rows
            if r.key.startswith(prefix) and start <= r.rev <= until]


def compare_events(expected, received):
    """(lost, duplicated, foreign, in_order): counts of events in the log
    the watch missed, it received more than once, it received that are
    not in the log; and whether it got exactly the log's sequence."""
    exp = collections.Counter(map(tuple, expected))
    got = collections.Counter(map(tuple, received))
    lost = sum((exp - got).values())
    dup = sum(n - 1 for n in got.values() if n > 1)
    foreign = sum(n for e, n in got.items() if e not in exp)
    return lost, dup, foreign, [list(e) for e in received] == [list(e) for e in expected]


def check_watches(t, rows, load, what=""):
    """Each watch received every event of its prefix from its start
    revision to its last sentinel exactly once, in log order, without
    clientv3 giving up on it.  Returns the totals as a dict."""
    tot = dict(expected=0, received=0, lost=0, duplicated=0, foreign=0, closures=0)
    for n, summary in enumerate(load.result["watches"] or []):
        w = load.watch(n)
        exp = expected_events(rows, w["prefix"], w["start"], w["until"])
        lost, dup, foreign, in_order = compare_events(exp, w["events"])
        tot["expected"] += len(exp)
        tot["received"] += len(w["events"])
        tot["lost"] += lost
        tot["duplicated"] += dup
        tot["foreign"] += foreign
        tot["closures"] += w["closures"]
        ok = t.ok(in_order and w["complete"],
                  f"{what}watch {w['prefix']} (from {w['start']}): {len(w['events'])} events, "
                  f"every one of the log's {len(exp)} exactly once, in order")
        if not ok:
            t.diag(f"  lost {lost}, duplicated {dup}, not in the log {foreign}, "
                   f"complete {w['complete']} (last {w['last']}, until {w['until']})")
            t.diag(f"  first difference: {_first_difference(exp, w['events'])}")
        t.is_(w["closures"], 0, f"{what}watch {w['prefix']}: clientv3 resumed it by itself "
              f"(errors: {(w['errors'] or [])[:2]})")
    return tot


def _first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if list(x) != list(y):
            return f"at {i}: log {x}, received {y}"
    if len(a) != len(b):
        return f"lengths: log {len(a)}, received {len(b)}"
    return "none"


# ----------------------------------------------------------- sockets

def _tcp_table():
    """{inode: ((local ip, port), (remote ip, port))} of IPv4 TCP sockets."""
    table = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()

            def addr(s):
                ip, port = s.split(":")
                return socket.inet_ntoa(bytes.fromhex(ip)[::-1]), int(port, 16)
            table[int(fields[9])] = (addr(fields[1]), addr(fields[2]))
    return table


def socket_owner(pids, server_port, client_addr):
    """Which of pids holds the server side of the TCP connection from
    client_addr ("127.0.0.1:PORT") to server_port, or None."""
    ip, port = client_addr.rsplit(":", 1)
    want = None
    for inode, (local, remote) in _tcp_table().items():
        if local[1] == server_port and remote == (ip, int(port)):
            want = f"socket:[{inode}]"
    if want is None:
        return None
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == want:
                    return pid
            except OSError:
                pass
    return None


# ------------------------------------------------------------ haproxy

HAPROXY = "/usr/sbin/haproxy"

HAPROXY_CFG = """\
global
    log stderr format short local0 info
    stats socket {tmp}/stats.sock mode 600 level admin
    maxconn 2000

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 1s
    timeout client 300s
    timeout server 300s
    timeout check 1s
    retries 3
    option redispatch 1

frontend etcd
    bind 127.0.0.1:{port}
    default_backend ballast

backend ballast
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
    default-server inter {inter}ms fastinter {inter}ms downinter {inter}ms fall 2 rise 2 on-marked-down shutdown-sessions
{servers}
"""


class HAProxy:
    """haproxy in TCP mode on 127.0.0.1:port in front of `servers`, a list
    of (name, client port, http_listen port); each is health-checked with
    GET /readyz on its http_listen port every `inter` ms."""

    def __init__(self, servers, inter=200):
        if not os.access(HAPROXY, os.X_OK):
            raise RuntimeError(f"{HAPROXY} is missing (Debian package haproxy)")
        self.tmp = bltest._tempdir("haproxy-")
        self.port = bltest.free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.names = [s[0] for s in servers]
        self.cfg_path = os.path.join(self.tmp, "haproxy.cfg")
        self.log_path = os.path.join(self.tmp, "haproxy.log")
        lines = [f"    server {n} 127.0.0.1:{p} check port {h}" for n, p, h in servers]
        with open(self.cfg_path, "w") as f:
            f.write(HAPROXY_CFG.format(tmp=self.tmp, port=self.port, inter=inter,
                                       servers="\n".join(lines)))
        self._proc = None
        bltest._services.append(self)

    def check_config(self):
        """`haproxy -c`: (exit status, output)."""
        r = subprocess.run([HAPROXY, "-c", "-f", self.cfg_path], capture_output=True,
                           text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr

    def start(self, timeout=15):
        """Start it; wait until every server is UP."""
        self._proc = bltest._Proc([HAPROXY, "-db", "-f", self.cfg_path], self.log_path,
                                  cwd=self.tmp)
        up = lambda: self._proc.alive() and all(
            s.get("status") == "UP" for s in self.servers().values()) and self.servers()
        if not bltest.wait_until(up, timeout, 0.1):
            raise RuntimeError(f"haproxy: servers not UP within {timeout} s: "
                               f"{self.servers() if self._proc.alive() else 'exited'}\n"
                               f"{bltest._tail(self.log_path)}")

    def command(self, cmd):
        """A runtime API command on the stats socket; its answer."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(os.path.join(self.tmp, "stats.sock"))
            s.sendall(cmd.encode() + b"\n")
            buf = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            return buf.decode(errors="replace")
        finally:
            s.close()

    def servers(self):
        """{server name: its `show stat` row} (status UP/DOWN, scur, stot...)."""
        try:
            text = self.command("show stat")
        except OSError:
            return {}
        text = text.lstrip("# ")
        out = {}
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("svname") in self.names:
                out[row["svname"]] = row
        return out

    def stop(self):
        if self._proc is not None:
            self._proc.end(signal.SIGTERM, 10)
            self._proc = None

    def _cleanup(self):
        self.stop()
