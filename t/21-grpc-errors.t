#!/usr/bin/python3
# Bad input gets etcd's (or gRPC's) error and the server keeps serving:
# unknown methods, garbage protobuf, empty keys, oversized requests,
# a malformed connection.
import os, socket, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import grpc

t = bltest.Tap()
pg = bltest.Postgres(fast=True)
pg.start()
b = bltest.Ballast(dsn=pg.dsn(), workers=1)
b.start()
etcd = bltest.Etcd()
etcd.start()

chans = {"etcd": grpc.insecure_channel(etcd.endpoint),
         "ballast": grpc.insecure_channel(b.endpoint)}


def raw(server, method, payload):
    """A unary call with raw bytes; (code name, details) or ('OK', bytes)."""
    call = chans[server].unary_unary(method, request_serializer=None,
                                     response_deserializer=None)
    try:
        return ("OK", call(payload, timeout=5))
    except grpc.RpcError as e:
        return (e.code().name, e.details())


def same(method, payload, name):
    e = raw("etcd", method, payload)
    o = raw("ballast", method, payload)
    if e[0] == "OK":
        t.is_(o[0], "OK", name)
    else:
        t.is_(o, e, name)
    return o


o = same("/etcdserverpb.KV/RangeStream", b"", "unknown method: "
         "UNIMPLEMENTED (clients fall back on it)")
t.is_(o[0], "UNIMPLEMENTED", "RangeStream is UNIMPLEMENTED")
o = raw("ballast", "/nosuch.Service/Call", b"")
t.is_(o[0], "UNIMPLEMENTED", "unknown service: UNIMPLEMENTED")
# field 1 (key) as a length-delimited field running past the end
o = raw("ballast", "/etcdserverpb.KV/Range", b"\x0a\x40abc")
t.is_(o[0], "INTERNAL", "garbage protobuf: INTERNAL, as grpc-go answers")
# empty key
same("/etcdserverpb.KV/Range", b"", "Range with no key: etcd's error")
same("/etcdserverpb.KV/Put", b"\x12\x01v", "Put with no key: etcd's error")
# ignore_value with a value
same("/etcdserverpb.KV/Put", b"\x0a\x01k\x12\x01v\x28\x01",
     "ignore_value with a value: etcd's error")
# a request over max_request_bytes (1.5 MiB) but under the gRPC limit
big = b"\x0a\x03big\x12" + bytes([0x80, 0x80, 0x64]) + b"x" * (1600 * 1024)
same("/etcdserverpb.KV/Put", big, "1.6 MiB put: request is too large")
# over the gRPC limit (2 MiB)
huge = b"\x0a\x04huge\x12" + bytes([0x80, 0x80, 0x90, 0x01]) + \
    b"x" * (2304 * 1024)
o = raw("ballast", "/etcdserverpb.KV/Put", huge)
t.is_(o[0], "RESOURCE_EXHAUSTED", "2.25 MiB message: RESOURCE_EXHAUSTED")

# garbage on a raw connection: that connection is dropped, others served
s = socket.create_connection(("127.0.0.1", b.port), timeout=5)
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(512))
try:
    data = s.recv(4096)
    closed = True if not data else (s.recv(4096) == b"")
except OSError:
    closed = True
t.ok(closed, "a connection that is not HTTP/2 is closed")
s.close()
r = bltest.etcdctl(b.endpoint, "put", "still", "alive")
t.is_(r.rc, 0, "the server keeps serving after all of that")
r = bltest.etcdctl(b.endpoint, "get", "still", "--print-value-only")
t.is_(r.out.strip(), "alive", "and reads back")
b.stop()
t.done()
