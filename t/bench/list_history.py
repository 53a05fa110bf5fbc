#!/usr/bin/python3
"""List latency as the revision log grows (the KV issue's "O(page), not
O(history)" check).

Kubernetes lists a prefix in pages of 500: the first page at the current
revision, the next ones at that page's revision (a read in the past).
This script builds a store of KEYS objects under /registry/pods/ whose
history holds ROWS log rows in all (each object updated ROWS/KEYS times),
then times both kinds of page through ballast with the Go-free python
etcd3 client, for each history size, and prints p50/p99 per size.

The history is written straight into ballast's tables (one INSERT per
size, in the same shape ballast writes it): writing a million revisions
through the API would take longer than the measurement.

    python3 t/bench/list_history.py [--keys 1000] [--sizes 10000,1000000]
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import bltest                                     # noqa: E402
import etcd3.etcdrpc as rpc                       # noqa: E402

PREFIX = b"/registry/pods/"


def fill(pg, keys, rows):
    """A store whose log has `rows` rows: `keys` keys, rows/keys versions
    each, revisions 2..rows+1 in key-major rounds, as updates make them."""
    versions = max(1, rows // keys)
    pg.psql(f"""
        TRUNCATE ballast_log, ballast_kv;
        INSERT INTO ballast_log (rev, sub, key, kind, create_rev, version,
                                 lease, value, prev_rev)
        SELECT 1 + (v - 1) * {keys} + i + 1, 0,
               '{PREFIX.decode()}'::bytea || lpad(i::text, 6, '0')::bytea,
               0, 2 + i, v, 0,
               repeat('x', 1024 + (i % 4) * 1024)::bytea,
               CASE WHEN v = 1 THEN 0 ELSE 1 + (v - 2) * {keys} + i + 1 END
        FROM generate_series(1, {versions}) v, generate_series(0, {keys} - 1) i;
        INSERT INTO ballast_kv (key, create_rev, mod_rev, version, lease, value)
        SELECT DISTINCT ON (key) key, create_rev, rev, version, lease, value
        FROM ballast_log ORDER BY key, rev DESC;
        UPDATE ballast_meta SET revision = {versions * keys + 1};
        ANALYZE ballast_log; ANALYZE ballast_kv;
    """)
    # let the bulk load's writes settle before anything is timed
    pg.psql("CHECKPOINT")
    return versions * keys + 1


def page(stub, key, end, limit, revision):
    t0 = time.perf_counter()
    r = stub.Range(rpc.RangeRequest(key=key, range_end=end, limit=limit,
                                    revision=revision), timeout=60)
    return (time.perf_counter() - t0) * 1000.0, r


def list_all(stub, revision=0, limit=500):
    """One paginated list as kube-apiserver does it; per-page latencies."""
    end = PREFIX[:-1] + bytes([PREFIX[-1] + 1])
    key, times, n = PREFIX, [], 0
    while True:
        ms, r = page(stub, key, end, limit, revision)
        times.append(ms)
        n += len(r.kvs)
        if revision == 0:
            revision = r.header.revision
        if not r.more:
            return times, n, revision
        key = r.kvs[-1].key + b"\x00"


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--sizes", default="10000,1000000")
    ap.add_argument("--lists", type=int, default=30)
    a = ap.parse_args()

    pg = bltest.Postgres(fast=True)
    pg.start()
    b = bltest.Ballast(dsn=pg.dsn(), workers=2)
    b.start()
    # the history is rewritten under the running server: its watcher
    # rightly reports revisions that appeared without notifications
    b.allow_alerts()
    client = bltest.etcd3_client(b.endpoint)
    stub = client.kvstub

    print(f"{'log rows':>10} {'kind':<22} {'pages':>5} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'objects':>8}")
    for size in [int(s) for s in a.sizes.split(",")]:
        head = fill(pg, a.keys, size)
        past = head // 2
        for kind, rev in (("current revision", 0), ("past revision (R/2)", past)):
            times, n = [], 0
            for _ in range(a.lists):
                t, n, _ = list_all(stub, rev)
                times += t
            print(f"{size:>10} {kind:<22} {len(times) // a.lists:>5} "
                  f"{statistics.median(times):>8.2f} {pct(times, 99):>8.2f} "
                  f"{n:>8}")
            sys.stdout.flush()
    b.stop()
    bltest.cleanup()


if __name__ == "__main__":
    main()
