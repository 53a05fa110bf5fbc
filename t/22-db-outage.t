#!/usr/bin/python3
# The database goes away under a running ballast: requests fail fast with
# UNAVAILABLE and the workers stay up; when it is back, requests succeed
# again with no restart.
import os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import grpc

t = bltest.Tap()
pg = bltest.Postgres(fast=True)
pg.start()
b = bltest.Ballast(dsn=pg.dsn(), workers=2)
b.start()

r = bltest.etcdctl(b.endpoint, "put", "k", "before")
t.is_(r.rc, 0, "put while the database is up")
workers = sorted(b.worker_pids())

pg.stop("fast")

# a raw unary call, so that no client retry hides the answer
ch = grpc.insecure_channel(b.endpoint)
range_ = ch.unary_unary("/etcdserverpb.KV/Range", request_serializer=None,
                        response_deserializer=None)
put = ch.unary_unary("/etcdserverpb.KV/Put", request_serializer=None,
                     response_deserializer=None)


def code_of(call, payload):
    start = time.monotonic()
    try:
        call(payload, timeout=10)
        code = "OK"
    except grpc.RpcError as e:
        code = e.code().name
    return code, time.monotonic() - start


code, took = code_of(range_, b"\x0a\x01k")
t.is_(code, "UNAVAILABLE", "Range while the database is down: UNAVAILABLE")
t.ok(took < 3, "and fast (%.3f s)" % took)
code, took = code_of(put, b"\x0a\x01k\x12\x06during")
t.is_(code, "UNAVAILABLE", "Put while the database is down: UNAVAILABLE")
t.ok(took < 3, "and fast (%.3f s)" % took)
r = bltest.etcdctl(b.endpoint, "put", "k", "during")
t.ok(r.rc != 0, "etcdctl put fails while the database is down")
t.is_(sorted(b.worker_pids()), workers, "the workers stay up")

pg.start()
t.ok(bltest.wait_until(
    lambda: bltest.etcdctl(b.endpoint, "put", "k", "after").rc == 0, 20),
    "once the database is back, puts succeed again without a restart")
r = bltest.etcdctl(b.endpoint, "get", "k", "--print-value-only")
t.is_(r.out.strip(), "after", "and the data is there")
t.is_(sorted(b.worker_pids()), workers, "with the same workers")
b.stop()
t.done()
