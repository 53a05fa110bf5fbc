#!/usr/bin/python3
# The LeaseKeepAlive stream's edges (CONFORMANCE.md C77), against a real
# etcd 3.4 where they can be compared: malformed renewals (the stream ends
# with grpc-go's Internal "failed to unmarshal" and gogoproto's reason,
# after the answers to the renewals before), unknown fields skipped; and
# on the server under test alone: streams cancelled with renewals in
# flight, a client that never half-closes, and many streams at once.
import os, sys, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import grpc
import bltest
import bldiff
import bllease

t = bltest.Tap()
d = bldiff.Diff(t, go=False)
rpc = bldiff.rpc()
KA = "/etcdserverpb.Lease/LeaseKeepAlive"


def channel(endpoint):
    return grpc.insecure_channel(endpoint)


def raw_stream(endpoint, messages):
    """Send these byte strings as renewals on one stream, then half-close:
    the answers as (ID, TTL) and the status the stream ended with."""
    with channel(endpoint) as ch:
        call = ch.stream_stream(KA, request_serializer=None,
                                response_deserializer=rpc.LeaseKeepAliveResponse.FromString)
        got = []
        try:
            for r in call(iter(messages), timeout=10):
                got.append((r.ID, r.TTL))
            return {"answers": got, "code": "OK"}
        except grpc.RpcError as e:
            return {"answers": got, "code": e.code().name, "error": e.details()}


eps = (d.ref.endpoint, d.target.endpoint)
for i in (0, 1):
    bltest.etcd3_client(eps[i]).leasestub.LeaseGrant(
        rpc.LeaseGrantRequest(TTL=60, ID=9001), timeout=5)

ok_msg = rpc.LeaseKeepAliveRequest(ID=9001).SerializeToString()
cases = [
    ("a truncated varint", b"\x08"),
    ("ID with wire type 2", b"\x0a\x00"),
    ("ID with wire type 7", b"\x0f"),
    ("field 0", b"\x00"),
    ("an end-group key", b"\x0c"),
    ("a 11-byte varint", b"\x08" + b"\xff" * 10 + b"\x01"),
    ("unknown field, illegal wire type", b"\x17"),
    ("unknown field, length past the end", b"\x12\x05ab"),
    ("unknown field, negative length", b"\x12" + b"\xff" * 9 + b"\x01"),
    ("unknown fields skipped", b"\x10\x01\x19" + b"\0" * 8 + b"\x25\0\0\0\0" + b"\x08\xa9\x46"),
    ("a group skipped", b"\x1b\x08\x01\x1c" + ok_msg),
    ("ID given twice: the last wins", b"\x08\x05" + ok_msg),
    ("an empty message: ID 0", b""),
]
for name, msg in cases:
    e, o = raw_stream(eps[0], [ok_msg, msg, ok_msg]), raw_stream(eps[1], [ok_msg, msg, ok_msg])
    d.same(f"renewal, {name}, renewal", e, o, repr(msg))

e, o = raw_stream(eps[0], [ok_msg] * 100 + [b"\x08"]), raw_stream(eps[1], [ok_msg] * 100 + [b"\x08"])
d.same("100 renewals then a malformed one: all 100 answered, then the error", e, o)
e, o = raw_stream(eps[0], [ok_msg] * 100 + [b"\x08"] + [ok_msg] * 10), \
    raw_stream(eps[1], [ok_msg] * 100 + [b"\x08"] + [ok_msg] * 10)
d.same("... and nothing after it is answered", e, o)

# ------------------------------------------------ the server under test alone
c = bltest.etcd3_client(d.target.endpoint)
ids = [c.leasestub.LeaseGrant(rpc.LeaseGrantRequest(TTL=60), timeout=5).ID for _ in range(20)]

# cancelled with renewals in flight, again and again
for _ in range(20):
    with channel(d.target.endpoint) as ch:
        stub = rpc.LeaseStub(ch)
        gate = threading.Event()

        def reqs():
            for i in range(500):
                yield rpc.LeaseKeepAliveRequest(ID=ids[i % len(ids)])
            gate.wait(5)

        call = stub.LeaseKeepAlive(reqs(), 10)
        n = 0
        for _r in call:
            n += 1
            if n == 50:
                break
        call.cancel()
        gate.set()
r = bllease.ka_stream(c, ids)
t.ok(r.get("ok") and all(a.get("TTL") == 60 for a in r["ok"]),
     "20 streams cancelled with renewals in flight: the server goes on")

# a stream that stays open: renewals answered as they come
with channel(d.target.endpoint) as ch:
    stub = rpc.LeaseStub(ch)
    queue = []
    cond = threading.Condition()

    def reqs():
        while True:
            with cond:
                cond.wait_for(lambda: queue, 10)
                if not queue:
                    return
                item = queue.pop(0)
            if item is None:
                return
            yield rpc.LeaseKeepAliveRequest(ID=item)

    call = stub.LeaseKeepAlive(reqs(), 30)
    answers = []
    for i in (ids[0], 424242, ids[1]):
        with cond:
            queue.append(i)
            cond.notify()
        r = next(call)
        answers.append((r.ID, r.TTL))
    t.is_(answers, [(ids[0], 60), (424242, 0), (ids[1], 60)],
          "an open stream answers each renewal as it comes, unknown ones with TTL 0")
    time.sleep(1)
    with cond:
        queue.append(ids[2])
        cond.notify()
    r = next(call)
    t.is_((r.ID, r.TTL), (ids[2], 60), "... and again after a pause")
    with cond:
        queue.append(None)
        cond.notify()
    t.ok(list(call) == [], "half-closed: the stream ends with OK")

# many streams at once, each its own leases, pipelined
results = []


def client(k):
    cl = bltest.etcd3_client(d.target.endpoint)
    try:
        mine = [ids[(k + j) % len(ids)] for j in range(5)] * 40
        results.append((mine, bllease.ka_stream(cl, mine, timeout=30)))
    finally:
        cl.close()


threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
for th in threads:
    th.start()
for th in threads:
    th.join(60)
t.ok(len(results) == 16 and all(
    r.get("ok") is not None and [a["ID"] for a in r["ok"]] == mine
    and all(a.get("TTL") == 60 for a in r["ok"]) for mine, r in results),
    "16 streams x 200 pipelined renewals: every answer in its stream's order")

# a reload: the draining worker answers the renewals it read, then ends
# the stream UNAVAILABLE "etcdserver: server stopped" at once (clientv3
# opens a new stream to a serving worker), not at worker_shutdown_timeout
lid = c.lease(60).id
with channel(d.target.endpoint) as ch:
    call = ch.stream_stream(KA, request_serializer=None,
                            response_deserializer=rpc.LeaseKeepAliveResponse.FromString)
    reqs = []
    cond = threading.Condition()
    closed = []

    def gen():
        yield rpc.LeaseKeepAliveRequest(ID=lid).SerializeToString()
        with cond:
            cond.wait_for(lambda: closed, timeout=30)

    answers, status = [], {}
    started = time.monotonic()
    ended = None
    try:
        for r in call(gen(), timeout=30):
            answers.append((r.ID, r.TTL))
            if len(answers) == 1:
                started = time.monotonic()
                d.target.reload()
        status = {"code": "OK"}
    except grpc.RpcError as e:
        status = {"code": e.code().name, "error": e.details()}
    ended = time.monotonic() - started
    with cond:
        closed.append(1)
        cond.notify_all()
t.is_(answers, [(lid, 60)], "reload: the renewal read before it is answered")
t.is_(status, {"code": "UNAVAILABLE", "error": "etcdserver: server stopped"},
      "reload: the KeepAlive stream ends UNAVAILABLE, etcd's 'server stopped'")
t.ok(ended < 5, "reload: it ends %.2f s after HUP, not at "
     "worker_shutdown_timeout" % ended)
t.is_(c.get_lease_info(lid).TTL > 0, True, "the lease lives on after the reload")

c.close()
d.close()
t.done()
