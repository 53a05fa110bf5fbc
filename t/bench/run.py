#!/usr/bin/python3
"""t/bench/run.py: ballast against etcd 3.4 on this machine, side by side.

For each mode (put, range, txn, list, watch, lease) it starts a fresh etcd
(temp dir, loopback, default durability), runs the load generator
(t/bench/go, built into objs/bench/) against it, stops it; then starts a
fresh ballast with its embedded PostgreSQL (fsync and synchronous_commit
on, `worker_processes auto`), runs the same load, stops it.  For each run
it measures the CPU seconds of all of that server's processes and their
peak memory (PSS, so PostgreSQL's shared memory counts once), and prints a
table with the ratio ballast/etcd.  It also measures raw PostgreSQL with
pgbench (one-row insert + commit, single-row select; 16 and 64 clients).
Results go to objs/bench/results-<date>.json as well.

    python3 t/bench/run.py                      # everything (`make bench`)
    python3 t/bench/run.py --mode put --seconds 30
    python3 t/bench/run.py --mode list,watch --sides ballast

See t/bench/README.
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import resource
import select
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import bltest  # noqa: E402
import bldiff  # noqa: E402

ROOT = bltest.repo_root()
GO_DIR = os.path.join(ROOT, "t", "bench", "go")
CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# (mode, run name, generator arguments): the runs of one mode share one
# server start (range: l then s; list: current then a fixed past revision,
# which reuses the first run's preload)
RUNS = [
    ("put", "put", ["-mode", "put"]),
    ("range", "range-l", ["-mode", "range", "-consistency", "l"]),
    ("range", "range-s", ["-mode", "range", "-consistency", "s"]),
    ("txn", "txn", ["-mode", "txn"]),
    ("list", "list-cur", ["-mode", "list", "-rev", "current"]),
    ("list", "list-past", ["-mode", "list", "-rev", "fixed"]),
    ("watch", "watch", ["-mode", "watch"]),
    ("lease", "lease", ["-mode", "lease"]),
    # the server's memory holding 100k keys of 256 B and 10k watchers (100
    # streams) while 100 puts reach every watcher: the table's PSS column
    ("memory", "memory", ["-mode", "watch", "-preload-keys", "100000",
                          "-watchers", "10000", "-streams", "100", "-total", "100",
                          "-put-rate", "10", "-drain", "30s"]),
]
MODES = ["put", "range", "txn", "list", "watch", "lease", "memory"]

# what the issue asks of each run (ratio ballast/etcd)
TARGETS = {
    "put": ("ops", 1.0), "range-l": ("ops", 1.0), "range-s": ("ops", 1.0),
    "txn": ("ops", 1.0), "list-cur": ("ops", 1.0), "list-past": ("ops", 1.0),
    "watch": ("p99", 1.0),
}


def say(*args):
    print(*args, flush=True)


# ------------------------------------------------------------ the generator

def build_generator(objdir):
    """Build t/bench/go once per source hash into objdir; return its path."""
    try:
        path, secs = bldiff.build_go(GO_DIR, "blbench", objdir, os.path.join(objdir, "gocache"))
    except RuntimeError as e:
        raise SystemExit(f"bench: {e}\n(apt-get install golang-go golang-etcd-server-dev)")
    if secs:
        say(f"built the load generator {os.path.relpath(path, ROOT)} in {secs:.0f} s")
    return path


# ------------------------------------------------------- process accounting

def scan():
    """{pid: (state, ppid, pgrp, start, cpu ticks incl. reaped children)} of every
    process, zombies included (their time moves to the parent when reaped)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                s = f.read()
        except OSError:
            continue
        f = s[s.rindex(")") + 2:].split()
        out[int(name)] = (f[0], int(f[1]), int(f[2]), int(f[19]),
                          int(f[11]) + int(f[12]) + int(f[13]) + int(f[14]))
    return out


def pss_kib(pid):
    """(PSS, RSS) of a process in KiB, from smaps_rollup (RSS from statm if that fails)."""
    pss = rss = None
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    if rss is None:
        try:
            with open(f"/proc/{pid}/statm") as f:
                rss = int(f.read().split()[1]) * PAGE // 1024
        except OSError:
            return 0, 0
    return (pss if pss is not None else rss), rss


class Tree:
    """A server's processes: the root, its process group, their descendants
    (PostgreSQL backends call setsid()), and earlier members still alive.

    cpu() is the sum of utime+stime+cutime+cstime of the live members plus,
    for members that vanished without a member to reap them, their last
    seen value: a process that exits between two reads is counted in its
    parent's cutime/cstime.  A sampler thread reads the tree every 100 ms
    (that keeps the member list fresh) and records the peak PSS.
    """

    def __init__(self, root):
        self.root = root
        self.known = {}      # pid -> (start, ppid, ticks)
        self.orphaned = 0    # ticks of members gone with no member left to reap them
        self.lock = threading.Lock()
        self.peak_pss = self.peak_rss = 0
        self.nprocs = 0
        self._stop = threading.Event()
        self._thread = None

    def _sample(self):
        stats = scan()
        with self.lock:
            return self._update(stats)

    def _update(self, stats):
        fam = {p for p, st in stats.items() if st[2] == self.root or p == self.root}
        fam |= {p for p, (start, _, _) in self.known.items() if p in stats and stats[p][3] == start}
        grew = True
        while grew:
            more = {p for p, st in stats.items() if st[1] in fam} - fam
            fam |= more
            grew = bool(more)
        for p, (start, ppid, ticks) in list(self.known.items()):
            if p not in fam:
                del self.known[p]
                if ppid not in fam:
                    self.orphaned += ticks
        for p in fam:
            st = stats[p]
            self.known[p] = (st[3], st[1], st[4])
        return fam

    def cpu(self):
        """CPU seconds of the tree so far (see the class)."""
        self._sample()
        with self.lock:
            return (sum(t for _, _, t in self.known.values()) + self.orphaned) / CLK

    def cpu_by_kind(self):
        """{kind of process: CPU seconds so far} of the live members (a
        process that exited counts with the parent that reaped it)."""
        self._sample()
        out = {}
        with self.lock:
            items = list(self.known.items())
        for p, (start, _, ticks) in items:
            kind = proc_kind(p)
            out[kind] = out.get(kind, 0) + ticks / CLK
        return out

    def rss_by_kind(self):
        """{kind of process: RSS in KiB} of the live members, now."""
        fam = self._sample()
        out = {}
        for p in fam:
            kind = proc_kind(p)
            out[kind] = out.get(kind, 0) + pss_kib(p)[1]
        return out

    def _loop(self):
        while not self._stop.wait(0.1):
            fam = self._sample()
            pss = rss = 0
            for p in fam:
                a, b = pss_kib(p)
                pss += a
                rss += b
            with self.lock:
                self.peak_pss = max(self.peak_pss, pss)
                self.peak_rss = max(self.peak_rss, rss)
                self.nprocs = max(self.nprocs, len(fam))

    def start_sampling(self):
        with self.lock:
            self.peak_pss = self.peak_rss = 0
            self.nprocs = 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop_sampling(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self.lock:
            return self.peak_pss / 1024, self.peak_rss / 1024, self.nprocs


def proc_kind(pid):
    """A short name for what a server process does, from its title."""
    cmd = bltest._cmdline(pid)
    if cmd.startswith("ballast: "):
        return cmd[len("ballast: "):].replace(" process", "").split()[0]
    if cmd.startswith("postgres: "):
        rest = cmd[len("postgres: "):]
        return "pg backends" if "[local]" in rest or "idle" in rest else "pg other"
    if "/postgres" in cmd.split(" ")[0]:
        return "pg other"
    return os.path.basename(cmd.split(" ")[0]) or "?"


def system_busy():
    """Busy CPU seconds of the whole machine (all cores) from /proc/stat,
    without interrupt time (loopback traffic's softirqs land there)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[7]) / CLK   # user nice system steal: irq time is nobody's


def proc_cpu(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        f = s[s.rindex(")") + 2:].split()
        return (int(f[11]) + int(f[12])) / CLK
    except OSError:
        return 0.0


def self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------ servers

class EtcdSide:
    name = "etcd"
    kind = "etcd"

    def start(self):
        self.srv = bltest.Etcd()
        self.srv.start()
        self.endpoint = self.srv.endpoint
        self.root = self.srv._proc.pid
        r = subprocess.run([bltest.ETCD, "--version"], capture_output=True, text=True, timeout=10)
        self.version = r.stdout.splitlines()[0] if r.stdout else "etcd"
        self.info = {"data_dir": os.path.join(self.srv.tmp, "data")}

    def stop(self):
        self.srv.stop()

    def log_tail(self):
        return 


class BallastSide:
    name = "ballast"
    kind = "ballast"

    def __init__(self, args):
        self.args = args

    def start(self):
        lines = ["daemon off;", "worker_processes auto;", "error_log {tmp}/error.log info;",
                 "pid {tmp}/ballast.pid;"]
        if bltest._is_root():
            lines.append(f"user nobody {bltest._nobody()[2]};")
        lines += ["name node1;", "listen 127.0.0.1:{port};",
                  "storage embedded {", "    data_dir {tmp}/data;", "}"]
        self.srv = bltest.Ballast(conf="\n".join(lines) + "\n")
        if self.args.ballast_bin:
            self.srv.bin = self.args.ballast_bin
        self.srv.start(wait=False)
        self.srv.wait_ready(timeout=120)   # the first start runs initdb
        self.endpoint = self.srv.endpoint
        self.root = self.srv.master_pid
        with open(self.srv.bin, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
        built = datetime.datetime.fromtimestamp(os.stat(self.srv.bin).st_mtime).isoformat(timespec="seconds")
        self.version = f"ballast ({os.path.relpath(self.srv.bin, ROOT)}, sha256 {digest}, built {built})"
        self.info = self._pg_settings()

    def _pg_settings(self):
        """The embedded PostgreSQL's durability settings, as it reports them."""
        data = os.path.join(self.srv.tmp, "data")
        psql = os.path.join(bltest._pg_bindir(), "psql")
        q = ("SELECT name || '=' || setting FROM pg_settings WHERE name IN "
             "('fsync','synchronous_commit','full_page_writes','wal_sync_method',"
             "'shared_buffers','max_connections','server_version') ORDER BY name")
        try:
            r = subprocess.run([psql, "-XAt", "-h", data, "-p", "5432", "-U", "ballast",
                                "-d", "postgres", "-c", q],
                               capture_output=True, text=True, timeout=10)
            if r.returncode == 0:
                return dict(l.split("=", 1) for l in r.stdout.splitlines() if "=" in l)
            return {"settings_error": r.stderr.strip()}
        except (OSError, subprocess.TimeoutExpired) as e:
            return {"settings_error": str(e)}

    def stop(self):
        self.srv.stop()

    def log_tail(self):
        text = self.srv.error_log().splitlines()
        bad = [l for l in text if re.search(r"\[(warn|error|crit|alert|emerg)\]", l)]
        return "\n".join(bad[-20:])


class EtcdAsBallast(EtcdSide):
    """--against etcd: a second etcd in ballast's place (to check the bench)."""
    name = "ballast"


# ------------------------------------------------------------------- a run

class GenFailed(Exception):
    pass


def read_line(proc, buf, deadline, log_path):
    fd = proc.stdout.fileno()
    while b"\n" not in buf[0]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise GenFailed(f"generator: no answer in time\n{bltest._tail(log_path, 10)}")
        if select.select([fd], [], [], min(left, 1.0))[0]:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise GenFailed(f"generator exited (status {proc.wait(5)})\n{bltest._tail(log_path, 10)}")
            buf[0] += chunk
    line, buf[0] = buf[0].split(b"\n", 1)
    return json.loads(line)


def one_run(gen, side, tree, run_name, gen_args, args, tmp):
    """Run the generator once against side; return the run's record."""
    rec = {"run": run_name, "side": side.name, "server": side.version}
    log_path = os.path.join(tmp, f"gen-{side.name}-{run_name}.log")
    argv = [gen, "-endpoints", side.endpoint, "-sync", "-label", f"{side.name}/{run_name}",
            "-duration", f"{args.seconds}s", *gen_args, *args.gen_arg]
    rec["argv"] = " ".join(argv[1:])
    load = os.getloadavg()
    rec["loadavg_before"] = [round(x, 2) for x in load]
    # the load average also counts our previous run: what others use right
    # now (CPUs busy outside this idle server and the driver), measured
    # before the generator starts (the watch mode must put right after its
    # watchers are created, so nothing may wait between ready and go)
    c, sb, d = tree.cpu(), system_busy(), self_cpu()
    time.sleep(1)
    foreign = (system_busy() - sb) - (tree.cpu() - c) - (self_cpu() - d)
    foreign = max(0.0, foreign)
    rec["other_cpus_before"] = round(foreign, 2)
    # memory of the idle server, to set against its memory once the
    # generator is ready (watch: with every watcher created)
    rss_idle = tree.rss_by_kind()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--", *argv],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
    buf = [b""]
    try:
        msg = read_line(proc, buf, time.monotonic() + 600, log_path)
        if "fatal" in msg:
            raise GenFailed(msg["fatal"])
        if msg.get("phase") != "ready":
            raise GenFailed(f"unexpected: {msg}")
        rec["prep"] = {k: v for k, v in msg.items() if k != "phase"}
        rss_ready = tree.rss_by_kind()
        rec["rss_kib_idle"] = rss_idle
        rec["rss_kib_ready"] = rss_ready
        if load[0] > 2:
            say(f"  WARNING: load average {load[0]:.2f} > 2 before {run_name} on {side.name}; "
                f"other processes were using {foreign:.1f} CPUs in the second before")
        k0 = tree.cpu_by_kind()
        c0, s0, g0, d0 = tree.cpu(), system_busy(), proc_cpu(proc.pid), self_cpu()
        tree.start_sampling()
        t0 = time.monotonic()
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        msg = read_line(proc, buf, time.monotonic() + args.seconds + 180, log_path)
        wall = time.monotonic() - t0
        c1, s1, g1, d1 = tree.cpu(), system_busy(), proc_cpu(proc.pid), self_cpu()
        k1 = tree.cpu_by_kind()
        pss, rss, nprocs = tree.stop_sampling()
        rec["cpu_by_process"] = {k: round(v - k0.get(k, 0), 2) for k, v in sorted(k1.items())
                                 if round(v - k0.get(k, 0), 2) != 0}
        if "fatal" in msg:
            raise GenFailed(msg["fatal"])
        if msg.get("phase") != "done":
            raise GenFailed(f"unexpected: {msg}")
        res = read_line(proc, buf, time.monotonic() + 60, log_path)
        if "fatal" in res:
            raise GenFailed(res["fatal"])
        rec["result"] = res
        rec["wall_s"] = round(wall, 3)
        rec["cpu_s"] = round(c1 - c0, 2)
        rec["gen_cpu_s"] = round(g1 - g0, 2)
        # approximate: a process's stime includes softirq work that /proc/stat
        # books as interrupt time, which system_busy() leaves out
        rec["other_cpu_s"] = max(0.0, round((s1 - s0) - (c1 - c0) - (g1 - g0) - (d1 - d0), 2))
        rec["peak_pss_mib"] = round(pss, 1)
        rec["peak_rss_mib"] = round(rss, 1)
        rec["processes"] = nprocs
        ops = res.get("ops") or 0
        rec["cpu_ms_per_op"] = round(1000 * rec["cpu_s"] / ops, 4) if ops else None
        if rec["other_cpu_s"] > 0.1 * wall * os.cpu_count():
            say(f"  WARNING: other processes used {rec['other_cpu_s']:.1f} CPU s during "
                f"{run_name} on {side.name} ({wall:.0f} s): the machine was shared")
        proc.wait(30)
    except GenFailed as e:
        tree.stop_sampling()
        rec["failed"] = str(e)
        say(f"  FAILED: {run_name} on {side.name}: {str(e).splitlines()[0]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return rec


def short(rec):
    r = rec.get("result")
    if r is None:
        return f"  {rec['side']:8} {rec['run']:9} failed: {rec.get('failed', '?').splitlines()[0]}"
    return (f"  {rec['side']:8} {rec['run']:9} {r['ops_per_s']:10.0f} ops/s  p50 {r['p50_ms']:.2f} ms"
            f"  p99 {r['p99_ms']:.2f} ms  cpu {rec['cpu_s']:.1f} s  pss {rec['peak_pss_mib']:.0f} MiB"
            f"  errors {r['errors']}")


def run_mode(mode, sides, gen, args, tmp, results):
    runs = [(name, ga) for m, name, ga in RUNS if m == mode]
    for side in sides:
        t0 = time.monotonic()
        try:
            side.start()
        except Exception as e:   # noqa: BLE001  (a server that does not start: note it, go on)
            say(f"  FAILED: {side.name} did not start for {mode}: {str(e).splitlines()[0]}")
            for name, _ in runs:
                results.append({"run": name, "side": side.name, "failed": f"start: {e}"})
            continue
        started = time.monotonic() - t0
        tree = Tree(side.root)
        for name, ga in runs:
            rec = one_run(gen, side, tree, name, ga, args, tmp)
            rec["server_start_s"] = round(started, 2)
            rec["server_info"] = side.info
            results.append(rec)
            say(short(rec))
        problems = side.log_tail()
        t1 = time.monotonic()
        side.stop()
        if side.kind == "ballast" and problems:
            say("  ballast error.log (warn and worse, last 20):")
            for line in problems.splitlines():
                say("    " + line[:300])
            results[-1]["log_problems"] = problems
        results[-1]["server_stop_s"] = round(time.monotonic() - t1, 2)


# ------------------------------------------------------------------ pgbench

PGB_INSERT = ("INSERT INTO bench_ins (k, v) VALUES (:k, '" + "v" * 256 + "');\n")
PGB_SELECT = "\\set id random(1, 10000)\nSELECT v FROM bench_sel WHERE id = :id;\n"


def run_pgbench(seconds, which, tmp):
    """Raw PostgreSQL: fsync and synchronous_commit on, the embedded server's
    memory settings; -M prepared, 2 pgbench threads."""
    out = {"seconds": seconds}
    pg = bltest.Postgres()
    with open(os.path.join(pg.datadir, "postgresql.conf"), "a") as f:
        f.write("shared_buffers = 128MB\nmax_connections = 200\n")
    pg.start()
    try:
        pg.psql("CREATE TABLE bench_ins (id bigserial PRIMARY KEY, k bigint NOT NULL, v text NOT NULL);"
                "CREATE TABLE bench_sel (id int PRIMARY KEY, v text NOT NULL);"
                "INSERT INTO bench_sel SELECT g, repeat('v', 256) FROM generate_series(1, 10000) g;"
                "VACUUM ANALYZE bench_sel; CHECKPOINT;")
        out["settings"] = dict(l.split("=", 1) for l in pg.psql(
            "SELECT name || '=' || setting FROM pg_settings WHERE name IN "
            "('fsync','synchronous_commit','full_page_writes','wal_sync_method',"
            "'shared_buffers','max_connections','server_version') ORDER BY name").splitlines()
            if "=" in l)
        scripts = {}
        for name, text in (("insert", PGB_INSERT.replace(":k", ":client_id")), ("select", PGB_SELECT)):
            path = os.path.join(tmp, f"pgbench-{name}.sql")
            with open(path, "w") as f:
                f.write(text)
            scripts[name] = path
        for name in which:
            for clients in (16, 64):
                argv = [os.path.join(pg.bindir, "pgbench"), "-n", "-M", "prepared", "-c", str(clients),
                        "-j", "2", "-T", str(seconds), "-f", scripts[name], "-h", pg.sockdir,
                        "-p", str(pg.port), "-U", "postgres", "postgres"]
                load = os.getloadavg()[0]
                if load > 2:
                    say(f"  WARNING: load average {load:.2f} > 2 before pgbench {name} -c {clients}")
                r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
                m = re.search(r"tps = ([0-9.]+) \(without initial", r.stdout)
                lat = re.search(r"latency average = ([0-9.]+) ms", r.stdout)
                key = f"{name}_c{clients}"
                if r.returncode != 0 or not m:
                    out[key] = {"failed": (r.stdout + r.stderr)[-500:]}
                    say(f"  FAILED: pgbench {name} -c {clients}: {r.stderr.strip()[:200]}")
                    continue
                out[key] = {"tps": float(m.group(1)), "latency_ms": float(lat.group(1)) if lat else None}
                say(f"  pgbench {name:6} -c {clients:2}: {float(m.group(1)):10.0f} tps"
                    + (f"  latency avg {lat.group(1)} ms" if lat else ""))
    finally:
        pg.stop()
    return out


# -------------------------------------------------------------------- table

def fmt(x, width, digits=0):
    if x is None:
        return "-".rjust(width)
    return f"{x:{width}.{digits}f}"


def ratio(b, e):
    if b is None or e is None or e == 0:
        return None
    return b / e


def table(results, pgb):
    by = {}
    for rec in results:
        by.setdefault(rec["run"], {})[rec["side"]] = rec
    lines = []
    head = (f"{'run':10} {'side':8} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU s':>7}"
            f" {'CPU ms/op':>9} {'PSS MiB':>8} {'errors':>7}  target")
    lines += [head, "-" * len(head)]
    for _, name, _ in RUNS:
        if name not in by:
            continue
        vals = {}
        for side in ("etcd", "ballast"):
            rec = by[name].get(side)
            if rec is None:
                continue
            r = rec.get("result")
            if r is None:
                lines.append(f"{name:10} {side:8} FAILED: {rec.get('failed', '?').splitlines()[0][:80]}")
                continue
            v = (r["ops_per_s"], r["p50_ms"], r["p99_ms"], rec["cpu_s"], rec["cpu_ms_per_op"],
                 rec["peak_pss_mib"], r["errors"])
            vals[side] = v
            flag = ""
            if r.get("aborted"):
                flag += " ABORTED"
            if r.get("stalled_seconds"):
                flag += f" stalled {r['stalled_seconds']} s"
            lines.append(f"{name:10} {side:8} {fmt(v[0], 9)} {fmt(v[1], 8, 2)} {fmt(v[2], 8, 2)}"
                         f" {fmt(v[3], 7, 1)} {fmt(v[4], 9, 3)} {fmt(v[5], 8, 0)} {v[6]:7d} {flag}")
        if "etcd" in vals and "ballast" in vals:
            e, b = vals["etcd"], vals["ballast"]
            rs = [ratio(b[i], e[i]) for i in range(6)]
            verdict = ""
            if name in TARGETS:
                what, want = TARGETS[name]
                if what == "ops":
                    got = rs[0]
                    ok = got is not None and got >= want
                    verdict = f"ops/s >= {want}: {'met' if ok else 'MISSED'}"
                else:
                    got = rs[2]
                    ok = got is not None and got <= want
                    verdict = f"p99 <= {want}: {'met' if ok else 'MISSED'}"
            lines.append(f"{'':10} {'b/e':8} {fmt(rs[0], 9, 2)} {fmt(rs[1], 8, 2)} {fmt(rs[2], 8, 2)}"
                         f" {fmt(rs[3], 7, 2)} {fmt(rs[4], 9, 2)} {fmt(rs[5], 8, 2)} {'':7}  {verdict}")
        lines.append("")
    # mode-specific numbers
    extra = []
    for rec in results:
        r = rec.get("result")
        if r is None:
            continue
        side, name = rec["side"], rec["run"]
        if name == "txn":
            extra.append(f"{name:10} {side:8} {r['txns_per_s']:.0f} txns/s, {r['conflicts']} conflicts, "
                         f"{r['give_ups']} give-ups")
        elif name.startswith("list"):
            extra.append(f"{name:10} {side:8} {r['objects_per_s']:.0f} objects/s, {r['pages_per_s']:.0f} "
                         f"pages/s, {r['mib_per_s']:.0f} MiB/s (rev {r['fixed_rev'] if r['rev'] == 'fixed' else 'current'})")
        elif name == "memory":
            extra.append(f"{name:10} {side:8} {r['preload_keys']} keys of {r.get('val_size', 256)} B "
                         f"(written in {r['preload_s']:.1f} s), {r['watchers']} watchers/"
                         f"{r['streams']} streams, {r['puts_ok']}/{r['puts']} puts; exactly once: "
                         f"{r['exactly_once']}; peak of all its processes: PSS "
                         f"{rec['peak_pss_mib']:.0f} MiB, RSS {rec['peak_rss_mib']:.0f} MiB "
                         f"({rec['processes']} processes)")
        elif name == "watch":
            extra.append(f"{name:10} {side:8} {r['watchers']} watchers/{r['streams']} streams, "
                         f"{r['puts_ok']}/{r['puts']} puts at {r['put_rate']}/s; exactly once: "
                         f"{r['exactly_once']} (missing {r['events_missing']}, dup {r['events_duplicated']}); "
                         f"from put sent p50/p99 {r['from_send_p50_ms']}/{r['from_send_p99_ms']} ms; "
                         f"put p99 {r['put_p99_ms']} ms")
            # what the watchers cost: server memory with them minus idle;
            # ballast's watches live in its workers, etcd's in its one process
            kind = "worker" if side == "ballast" else "etcd"
            idle = rec.get("rss_kib_idle", {}).get(kind)
            ready = rec.get("rss_kib_ready", {}).get(kind)
            if idle is not None and ready is not None and r["watchers"]:
                per = (ready - idle) / 1024 / (r["watchers"] / 1000)
                rec["rss_mib_per_1000_watchers"] = round(per, 2)
                extra.append(f"{name:10} {side:8} {kind} RSS {idle / 1024:.1f} MiB idle, "
                             f"{ready / 1024:.1f} MiB with the watchers: {per:.2f} MiB "
                             f"per 1,000 watchers")
        elif name == "lease":
            extra.append(f"{name:10} {side:8} {r['leases']} leases over {r['clients']} streams; "
                         f"grants {r['grants_per_s']:.0f}/s before the run")
        if r.get("missed_puts"):
            extra.append(f"{name:10} {side:8} watchers' created header.revision {r.get('created_rev_min')}"
                         f"..{r.get('created_rev_max')}; missed: "
                         + ", ".join(f"{k} by {v}" for k, v in r["missed_puts"].items()))
        if side == "ballast" and rec.get("cpu_by_process"):
            extra.append(f"{name:10} {side:8} CPU s by process: "
                         + ", ".join(f"{k} {v:.1f}" for k, v in rec["cpu_by_process"].items()))
        if r.get("error_samples"):
            for msg, n in list(r["error_samples"].items())[:3]:
                extra.append(f"{name:10} {side:8} error x{n}: {msg[:150]}")
    if extra:
        lines += ["details:"] + ["  " + x for x in extra] + [""]
    if pgb:
        lines.append(f"raw PostgreSQL 15 (pgbench -M prepared, {pgb['seconds']} s each, fsync="
                     f"{pgb.get('settings', {}).get('fsync')}, synchronous_commit="
                     f"{pgb.get('settings', {}).get('synchronous_commit')}):")
        for key in ("insert_c16", "insert_c64", "select_c16", "select_c64"):
            if key in pgb:
                v = pgb[key]
                lines.append(f"  {key:11} " + (f"{v['tps']:10.0f} tps" if "tps" in v else "FAILED"))
        for run, key, what in (("put", "insert", "put"), ("range-l", "select", "range (linearizable)"),
                               ("range-s", "select", "range (serializable)")):
            b = by.get(run, {}).get("ballast", {}).get("result")
            if b is None:
                continue
            fr = []
            for c in (16, 64):
                tps = pgb.get(f"{key}_c{c}", {}).get("tps")
                if tps:
                    fr.append(f"{b['ops_per_s'] / tps:.2f} of pgbench {key} -c {c}")
            if fr:
                lines.append(f"  ballast {what} {b['ops_per_s']:.0f} ops/s ({b.get('clients')} clients) = "
                             + ", ".join(fr))
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description="ballast vs etcd 3.4, side by side (make bench)")
    ap.add_argument("--mode", default="all",
                    help="comma-separated: put,range,txn,list,watch,lease (default: all)")
    ap.add_argument("--seconds", type=int, default=20, help="length of each run per server (20)")
    ap.add_argument("--sides", default="etcd,ballast", help="etcd,ballast (default both)")
    ap.add_argument("--against", choices=["ballast", "etcd"], default="ballast",
                    help="what runs in ballast's place: ballast, or a second etcd (to test the bench)")
    ap.add_argument("--ballast-bin", default=os.environ.get("BALLAST_BIN"),
                    help="ballast binary (default objs/ballast)")
    ap.add_argument("--pgbench-seconds", type=int, default=10,
                    help="length of each pgbench run, 0 to skip (10)")
    ap.add_argument("--gen-arg", action="append", default=[],
                    help="extra generator flag, e.g. --gen-arg=-conns=16 (repeatable)")
    ap.add_argument("--out", help="JSON results file (default objs/bench/results-<date>.json)")
    args = ap.parse_args()

    modes = MODES if args.mode == "all" else args.mode.split(",")
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r}")
    objdir = os.path.join(os.environ.get("BALLAST_BUILDDIR") or os.path.join(ROOT, "objs"), "bench")
    t_start = time.monotonic()
    tap = bltest.Tap()   # the harness reports server trouble (not ok lines) through it

    gen = build_generator(objdir)
    sides = []
    for s in args.sides.split(","):
        if s == "etcd":
            sides.append(EtcdSide())
        elif s == "ballast":
            if args.against == "etcd":
                sides.append(EtcdAsBallast())
            else:
                sides.append(BallastSide(args))
                b = args.ballast_bin or os.path.join(ROOT, "objs", "ballast")
                if not os.access(b, os.X_OK):
                    raise SystemExit(f"bench: {b} is missing (run make first)")
        else:
            ap.error(f"unknown side {s!r}")

    nruns = sum(1 for m, _, _ in RUNS if m in modes) * len(sides)
    pg_which = [w for m, w in (("put", "insert"), ("range", "select")) if m in modes]
    pg_time = args.pgbench_seconds * 2 * len(pg_which)
    tmp = bltest._tempdir("bench-")
    fs = subprocess.run(["stat", "-f", "-c", "%T", tmp], capture_output=True, text=True).stdout.strip()
    say(f"bench: {len(modes)} modes, {nruns} runs of {args.seconds} s each (a fresh server per mode "
        f"and side, etcd then ballast), plus {pg_time} s of pgbench; expect about "
        f"{(nruns * (args.seconds + 9) + pg_time + 20) / 60:.0f} min")
    say(f"bench: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, servers' data in "
        f"{tmp} ({fs}), generator {os.path.relpath(gen, ROOT)}")

    results = []
    for m in modes:
        say(f"{m}:")
        run_mode(m, sides, gen, args, tmp, results)

    pgb = None
    if args.pgbench_seconds > 0 and pg_which:
        say("raw PostgreSQL (pgbench):")
        try:
            pgb = run_pgbench(args.pgbench_seconds, pg_which, tmp)
        except Exception as e:   # noqa: BLE001
            say(f"  FAILED: pgbench: {e}")
            pgb = {"failed": str(e), "seconds": args.pgbench_seconds}

    infos = {}
    for rec in results:
        if "server_info" in rec:
            infos[rec["side"]] = rec["server_info"]
    elapsed = time.monotonic() - t_start
    say("")
    say(f"ballast vs etcd 3.4 on this machine ({os.cpu_count()} CPUs), {args.seconds} s per run, "
        f"took {elapsed / 60:.1f} min")
    servers = {rec["side"]: rec["server"] for rec in results if "server" in rec}
    for side in ("etcd", "ballast"):
        if side in servers:
            say(f"{side}: {servers[side]}")
    if "ballast" in infos:
        i = infos["ballast"]
        say(f"ballast's embedded PostgreSQL: " + ", ".join(f"{k}={v}" for k, v in sorted(i.items())))
    say("ops/s: operations per second (list: whole lists of 10k keys; watch: events delivered); "
        "p50/p99: latency; CPU s: all of the server's processes during the run; PSS: peak, "
        "shared memory counted once; b/e: ballast / etcd")
    say("")
    say(table(results, pgb))

    out = args.out or os.path.join(objdir, "results-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
                                   + ".json")
    doc = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "seconds": args.seconds,
           "cpus": os.cpu_count(), "elapsed_s": round(elapsed, 1), "modes": modes,
           "runs": results, "pgbench": pgb, "tmp_fs": fs}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    say(f"results: {os.path.relpath(out, ROOT) if out.startswith(ROOT) else out}")

    bltest.cleanup()
    tap.finished = True
    failed = [r for r in results if "failed" in r]
    if tap.failed:
        say(f"bench: the harness reported {tap.failed} problem(s) with the servers (not ok lines above)")
    return 1 if failed and len(failed) == len(results) else 0


if __name__ == "__main__":
    sys.exit(main())
