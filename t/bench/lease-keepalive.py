#!/usr/bin/python3
"""LeaseKeepAlive throughput: ballast (on a private PostgreSQL) and a real
etcd 3.4, side by side.  Not a test (`make test` does not run it).

    t/bench/lease-keepalive.py [--streams M] [--leases K] [--window W]
                               [--conns C] [--seconds S] [--workers N]
                               [--only ballast|etcd] [--fsync] [--shared]

The load is t/bench/blkabench (Go, raw etcdserverpb.Lease): K leases,
M bidi LeaseKeepAlive streams over C connections, each renewing its own
K/M of them round-robin (--shared: all K) with W renewals in flight per
stream; every answer is checked (ID, order, TTL).  Several (M, W) points
are run unless --streams or --window is given.  Built once per source hash into $BALLAST_BUILDDIR/go
(objs/go) in GOPATH mode against Debian's golang-etcd-server-dev.
"""

import argparse
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
import bltest   # noqa: E402
import bldiff   # noqa: E402

SRC = os.path.join(HERE, "blkabench", "main.go")


def binary():
    d = bldiff.build_dir()
    os.makedirs(d, exist_ok=True)
    h = hashlib.sha256()
    with open(SRC, "rb") as f:
        h.update(f.read())
    h.update(subprocess.run(["go", "version"], capture_output=True, timeout=30).stdout)
    path = os.path.join(d, "blkabench-" + h.hexdigest()[:16])
    with open(os.path.join(d, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.access(path, os.X_OK):
            tmp = f"{path}.tmp{os.getpid()}"
            r = subprocess.run(["go", "build", "-o", tmp, "."], cwd=os.path.dirname(SRC),
                               env=bldiff.go_env(os.path.join(d, "cache")),
                               capture_output=True, text=True, timeout=900)
            if r.returncode != 0:
                sys.exit(f"go build failed:\n{r.stdout}{r.stderr}")
            os.rename(tmp, path)
    return path


def run(path, endpoint, a, streams, window):
    argv = [path, "-endpoint", endpoint, "-streams", str(streams), "-leases", str(a.leases),
            "-window", str(window), "-conns", str(min(a.conns, streams)),
            "-seconds", str(a.seconds)] + (["-shared"] if a.shared else [])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=a.seconds + 300)
    if r.returncode != 0:
        return {"error": r.stderr.strip()[-300:]}
    return json.loads(r.stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", type=int)
    p.add_argument("--window", type=int)
    p.add_argument("--leases", type=int, default=1000)
    p.add_argument("--conns", type=int, default=4)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--only", choices=("ballast", "etcd"))
    p.add_argument("--fsync", action="store_true", help="PostgreSQL with fsync on")
    p.add_argument("--shared", action="store_true",
                   help="every stream renews every lease (default: its own K/M)")
    a = p.parse_args()
    tap = bltest.Tap()      # the harness reports its own findings as TAP

    points = [(1, 1), (16, 1), (16, 16), (64, 16)]
    if a.streams or a.window:
        points = [(a.streams or 16, a.window or 16)]
    path = binary()

    servers = []
    if a.only != "etcd":
        pg = bltest.Postgres(fast=not a.fsync)
        pg.start()
        b = bltest.Ballast(dsn=pg.dsn(), workers=a.workers)
        b.start()
        servers.append(("ballast", b.endpoint))
    if a.only != "ballast":
        e = bltest.Etcd()
        e.start()
        servers.append(("etcd 3.4", e.endpoint))

    print(f"# {os.cpu_count()} CPUs; {a.leases} leases, {a.conns} connections max, "
          f"{a.seconds:g} s per point; ballast: {a.workers} workers, PostgreSQL fsync "
          f"{'on' if a.fsync else 'off'}")
    print(f"{'streams':>7} {'window':>6}  " +
          "  ".join(f"{n + ' /s':>14} {'p50 ms':>7} {'p99 ms':>7}" for n, _ in servers))
    for streams, window in points:
        cells = []
        for name, endpoint in servers:
            r = run(path, endpoint, a, streams, window)
            if "error" in r or r.get("errors"):
                cells.append(f"{'ERROR':>14} {'':>7} {'':>7}")
                print(f"# {name}: {r.get('error') or r.get('first_error')} "
                      f"({r.get('errors', '')} errors)", file=sys.stderr)
            else:
                cells.append(f"{r['per_second']:>14,.0f} {r['p50_ms']:>7.2f} "
                             f"{r['p99_ms']:>7.2f}")
            time.sleep(0.5)
        print(f"{streams:>7} {window:>6}  " + "  ".join(cells), flush=True)
    tap.done()


if __name__ == "__main__":
    main()
