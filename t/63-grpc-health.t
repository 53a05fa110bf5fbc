#!/usr/bin/python3
# grpc.health.v1.Health (issue 6): Check answers SERVING for the server
# ("") and the etcd services while the worker's database pool is up,
# NOT_SERVING while PostgreSQL is down, SERVING again once it is back;
# an unknown service is NOT_FOUND "unknown service", as grpc-go (and so
# etcd 3.4) answers.  Watch sends the status at once and again on each
# change; for an unknown service, SERVICE_UNKNOWN.  Requests are encoded
# by hand (field 1, the service name) and sent with identity serializers.
import os, sys, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import grpc

SERVING, NOT_SERVING, SERVICE_UNKNOWN = b"\x08\x01", b"\x08\x02", b"\x08\x03"

t = bltest.Tap()
pg = bltest.Postgres(fast=True)
pg.start()
b = bltest.Ballast(dsn=pg.dsn(), workers=1)
b.start()
e = bltest.Etcd()
e.start()


def req(service):
    s = service.encode()
    return b"\x0a" + bytes([len(s)]) + s if s else b""


def channel(ep):
    return grpc.insecure_channel(ep)


def check(ch, service):
    call = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=None,
                          response_deserializer=None)
    try:
        return call(req(service), timeout=5)
    except grpc.RpcError as ex:
        return (ex.code().name, ex.details())


class Watch:
    """A Watch stream read by a thread into .got."""

    def __init__(self, ch, service):
        call = ch.unary_stream("/grpc.health.v1.Health/Watch",
                               request_serializer=None, response_deserializer=None)
        self.it = call(req(service), timeout=120)
        self.got, self.end = [], None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for m in self.it:
                self.got.append(m)
        except grpc.RpcError as ex:
            self.end = ex.code().name

    def cancel(self):
        self.it.cancel()
        self.thread.join(5)


bch, ech = channel(b.endpoint), channel(e.endpoint)
for service in ("", "no.such.Service"):
    t.is_(check(bch, service), check(ech, service),
          "Check(%r) as etcd 3.4: %r" % (service, check(ech, service)))
t.is_(check(bch, "no.such.Service"), ("NOT_FOUND", "unknown service"),
      "unknown service: NOT_FOUND \"unknown service\"")
for service in ("", "etcdserverpb.KV", "etcdserverpb.Watch", "etcdserverpb.Lease",
                "etcdserverpb.Cluster", "etcdserverpb.Maintenance"):
    t.is_(check(bch, service), SERVING, "Check(%r): SERVING" % service)

w = Watch(bch, "")
wu = Watch(bch, "no.such.Service")
t.ok(bltest.wait_until(lambda: w.got == [SERVING], 5), "Watch(''): SERVING at once")
t.ok(bltest.wait_until(lambda: wu.got == [SERVICE_UNKNOWN], 5),
     "Watch(unknown): SERVICE_UNKNOWN, stream open")

pg.stop("fast")
t.ok(bltest.wait_until(lambda: check(bch, "") == NOT_SERVING, 10),
     "PostgreSQL down: Check NOT_SERVING")
t.is_(check(bch, "etcdserverpb.KV"), NOT_SERVING, "for the etcd services too")
t.ok(bltest.wait_until(lambda: w.got == [SERVING, NOT_SERVING], 5),
     "Watch sent NOT_SERVING")
r = bltest.etcdctl(b.endpoint, "get", "x")
t.ok(r.rc != 0, "(and a read fails meanwhile)")

pg.start()
t.ok(bltest.wait_until(lambda: check(bch, "") == SERVING, 20),
     "PostgreSQL back: Check SERVING again")
t.ok(bltest.wait_until(lambda: w.got == [SERVING, NOT_SERVING, SERVING], 5),
     "Watch sent SERVING again")
t.is_(wu.got, [SERVICE_UNKNOWN], "the unknown service's watch got nothing more")
t.is_(bltest.etcdctl(b.endpoint, "put", "x", "y").rc, 0, "writes work again")
w.cancel()
wu.cancel()
t.ok(w.end == "CANCELLED" and wu.end == "CANCELLED", "watches cancelled by the client")
t.is_(check(bch, ""), SERVING, "the worker serves on after the cancels")

b.stop()
t.done()
