"""blwatch: raw etcd Watch streams for the watch tests (t/40-49).

python-etcd3's generated protobuf predates watch_id, fragment and
progress_request, so the watch messages are encoded and decoded here by
hand (the protobuf wire format, only the fields of rpc.proto's Watch
messages and kv.proto's Event/KeyValue) and sent over a raw grpc
stream_stream call.  Every response is decoded into a plain dict, with
every field present (defaults included), so that two servers' sequences
compare with ==:

    {"header": {"revision": R}, "watch_id": N, "created": False,
     "canceled": False, "compact_revision": 0, "cancel_reason": "",
     "fragment": False, "events": [{"type": "PUT", "kv": {...},
     "prev_kv": {...} or None}]}

cluster_id, member_id and raft_term are kept under "ids" and dropped by
norm().  Unknown fields are kept under "unknown" so that nothing a server
sends goes unnoticed.

    s = blwatch.Stream(endpoint)
    s.create(b"foo", prefix=True, start_revision=2, prev_kv=True)
    r = s.recv()                 # one response (dict), or None on timeout
    s.cancel_watch(0); s.progress(); s.half_close(); s.close()

Pair runs the same operations on a reference etcd and the server under
test (ballast, or a second etcd with BLDIFF_TARGET=etcd, as bldiff does).
"""

import os
import queue
import threading
import time

import grpc

import bltest

WATCH = "/etcdserverpb.Watch/Watch"
FILTER_NOPUT = 0
FILTER_NODELETE = 1


# ------------------------------------------------------------ wire format

def _varint(n):
    n &= (1 << 64) - 1          # negative int64: ten bytes, two's complement
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field, wire):
    return _varint(field << 3 | wire)


def f_varint(field, n):
    """A varint field; 0 (the default) is left out, as proto3 encoders do."""
    return _key(field, 0) + _varint(n) if n else b""


def f_bytes(field, b, always=False):
    if not b and not always:
        return b""
    return _key(field, 2) + _varint(len(b)) + b


def _b(x):
    return x.encode() if isinstance(x, str) else bytes(x or b"")


def create_request(key=b"", range_end=b"", start_revision=0, progress_notify=False,
                   filters=(), prev_kv=False, watch_id=0, fragment=False):
    """A WatchRequest{create_request} as bytes."""
    packed = b"".join(_varint(f) for f in filters)
    c = (f_bytes(1, _b(key)) + f_bytes(2, _b(range_end)) + f_varint(3, start_revision)
         + f_varint(4, int(progress_notify)) + f_bytes(5, packed)
         + f_varint(6, int(prev_kv)) + f_varint(7, watch_id) + f_varint(8, int(fragment)))
    return f_bytes(1, c, always=True)


def cancel_request(watch_id):
    return f_bytes(2, f_varint(1, watch_id), always=True)


def progress_request():
    return f_bytes(3, b"", always=True)


def _read_varint(buf, i):
    shift = n = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7f) << shift
        if not b & 0x80:
            return n, i
        shift += 7


def _int64(n):
    return n - (1 << 64) if n >= 1 << 63 else n


def _fields(buf):
    """[(field, wire, value)] of a message: ints for varints, bytes else."""
    out, i = [], 0
    while i < len(buf):
        k, i = _read_varint(buf, i)
        field, wire = k >> 3, k & 7
        if wire == 0:
            v, i = _read_varint(buf, i)
        elif wire == 2:
            n, i = _read_varint(buf, i)
            v, i = bytes(buf[i:i + n]), i + n
            if i > len(buf):
                raise ValueError("truncated field")
        elif wire == 1:
            v, i = bytes(buf[i:i + 8]), i + 8
        elif wire == 5:
            v, i = bytes(buf[i:i + 4]), i + 4
        else:
            raise ValueError(f"wire type {wire}")
        out.append((field, wire, v))
    return out


def show(b):
    """bytes as text when printable ASCII, else a bytes literal."""
    if all(0x20 <= c < 0x7f for c in b) and not b.startswith(b"b'"):
        return b.decode()
    return repr(b)


def decode_kv(buf):
    kv = {"key": "", "create_revision": 0, "mod_revision": 0, "version": 0,
          "value": "", "lease": 0}
    names = {1: "key", 2: "create_revision", 3: "mod_revision", 4: "version",
             5: "value", 6: "lease"}
    for f, w, v in _fields(buf):
        name = names.get(f)
        if name is None:
            kv.setdefault("unknown", []).append((f, w, v))
        elif name in ("key", "value"):
            kv[name] = show(v)
        else:
            kv[name] = _int64(v)
    return kv


def decode_event(buf):
    ev = {"type": "PUT", "kv": None, "prev_kv": None}
    for f, w, v in _fields(buf):
        if f == 1:
            ev["type"] = {0: "PUT", 1: "DELETE"}.get(v, v)
        elif f == 2:
            ev["kv"] = decode_kv(v)
        elif f == 3:
            ev["prev_kv"] = decode_kv(v)
        else:
            ev.setdefault("unknown", []).append((f, w, v))
    return ev


def decode_response(buf):
    r = {"header": {"revision": 0}, "ids": {}, "watch_id": 0, "created": False,
         "canceled": False, "compact_revision": 0, "cancel_reason": "",
         "fragment": False, "events": []}
    for f, w, v in _fields(buf):
        if f == 1:
            for hf, hw, hv in _fields(v):
                if hf == 3:
                    r["header"]["revision"] = _int64(hv)
                else:
                    r["ids"][{1: "cluster_id", 2: "member_id", 4: "raft_term"}.get(hf, hf)] = hv
        elif f == 2:
            r["watch_id"] = _int64(v)
        elif f == 3:
            r["created"] = bool(v)
        elif f == 4:
            r["canceled"] = bool(v)
        elif f == 5:
            r["compact_revision"] = _int64(v)
        elif f == 6:
            r["cancel_reason"] = v.decode()
        elif f == 7:
            r["fragment"] = bool(v)
        elif f == 11:
            r["events"].append(decode_event(v))
        else:
            r.setdefault("unknown", []).append((f, w, v))
    r["size"] = len(buf)
    return r


def norm(r):
    """A response without what differs between two servers legitimately."""
    if r is None or not isinstance(r, dict):
        return r
    return {k: v for k, v in r.items() if k not in ("ids", "size", "t")}


def brief(r):
    """A short text for diagnostics."""
    if not isinstance(r, dict):
        return repr(r)
    parts = [f"id={r['watch_id']}", f"rev={r['header']['revision']}"]
    for flag in ("created", "canceled", "fragment"):
        if r[flag]:
            parts.append(flag)
    if r["compact_revision"]:
        parts.append(f"compact={r['compact_revision']}")
    if r["cancel_reason"]:
        parts.append(repr(r["cancel_reason"]))
    evs = [f"{e['type'][0]}:{e['kv']['key'][:20]}@{e['kv']['mod_revision']}"
           + ("+prev" if e["prev_kv"] else "") for e in r["events"]]
    if evs:
        parts.append("[" + " ".join(evs[:8]) + (" ..." if len(evs) > 8 else "") +
                     f"] ({len(evs)})")
    return "{" + " ".join(parts) + "}"


# ------------------------------------------------------------ the stream

_END = object()


class Stream:
    """One raw Watch stream (its own channel, so its own connection unless
    a channel is given).  lazy: nothing is read until start_reading(), so
    the server sees a slow reader (flow control stops it)."""

    def __init__(self, endpoint, channel=None, metadata=None, lazy=False):
        self.endpoint = endpoint
        self.channel = channel or grpc.insecure_channel(
            endpoint, options=[("grpc.max_receive_message_length", 64 << 20)])
        self._own = channel is None
        self._reqs = queue.Queue()
        self._resps = queue.Queue()
        self.error = None            # (code name, details) once the stream ended
        self.done = threading.Event()
        call = self.channel.stream_stream(WATCH, request_serializer=None,
                                          response_deserializer=None)
        self.call = call(self._gen(), metadata=metadata)
        self._thread = threading.Thread(target=self._reader, daemon=True)
        if not lazy:
            self._thread.start()

    def start_reading(self):
        """A lazy stream (a reader that does not read) starts reading."""
        if not self._thread.is_alive() and not self.done.is_set():
            self._thread.start()

    def _gen(self):
        while True:
            m = self._reqs.get()
            if m is _END:
                return
            yield m

    def _reader(self):
        try:
            for raw in self.call:
                r = decode_response(raw)
                r["t"] = time.monotonic()
                self._resps.put(r)
            self.error = ("OK", "")
        except grpc.RpcError as e:
            self.error = (e.code().name, e.details())
        finally:
            self.done.set()
            self._resps.put(_END)

    def send(self, raw):
        self._reqs.put(raw)

    def create(self, key=b"", range_end=b"", prefix=False, from_key=False, **kw):
        key = _b(key)
        if prefix:
            range_end = prefix_end(key)
        elif from_key:
            range_end = b"\0"
        self.send(create_request(key, range_end, **kw))

    def cancel_watch(self, watch_id):
        self.send(cancel_request(watch_id))

    def progress(self):
        self.send(progress_request())

    def half_close(self):
        self._reqs.put(_END)

    def recv(self, timeout=5.0):
        """The next response, or None when none came within timeout (or the
        stream ended: see .error)."""
        try:
            r = self._resps.get(timeout=timeout)
        except queue.Empty:
            return None
        if r is _END:
            self._resps.put(_END)      # stays ended
            return None
        return r

    def recv_n(self, n, timeout=5.0):
        """n responses (fewer if they do not come within timeout)."""
        out, deadline = [], time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r = self.recv(left)
            if r is None:
                break
            out.append(r)
        return out

    def recv_all(self, quiet=0.5, timeout=10.0):
        """Every response until none came for `quiet` seconds."""
        out, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.recv(quiet)
            if r is None:
                break
            out.append(r)
        return out

    def recv_for(self, seconds):
        """Every response that comes within the next `seconds`."""
        out, deadline = [], time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            r = self.recv(left)
            if r is None:
                return out
            out.append(r)

    def recv_events(self, n, timeout=10.0):
        """Responses until n events have arrived (or timeout)."""
        out, got, deadline = [], 0, time.monotonic() + timeout
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r = self.recv(left)
            if r is None:
                break
            out.append(r)
            got += len(r["events"])
        return out

    def close(self):
        """Cancel the call (RST_STREAM), as clients end watch streams."""
        self.call.cancel()
        if self._thread.is_alive():
            self.done.wait(5)
        if self._own:
            self.channel.close()


def prefix_end(key):
    key = bytearray(_b(key))
    for i in range(len(key) - 1, -1, -1):
        if key[i] < 0xff:
            key[i] += 1
            return bytes(key[:i + 1])
    return b"\0"


# ------------------------------------------------------------ KV writes

class KV:
    """Writes and reads through the KV service (etcd3's generated stubs,
    which have everything KV needs)."""

    def __init__(self, endpoint):
        import etcd3.etcdrpc as R
        self.R = R
        self.channel = grpc.insecure_channel(endpoint)
        self.stub = R.KVStub(self.channel)

    def put(self, key, value=b"", lease=0):
        return self.stub.Put(self.R.PutRequest(key=_b(key), value=_b(value), lease=lease),
                             timeout=10).header.revision

    def delete(self, key, range_end=b"", prefix=False):
        if prefix:
            range_end = prefix_end(key)
        return self.stub.DeleteRange(self.R.DeleteRangeRequest(
            key=_b(key), range_end=_b(range_end)), timeout=10).header.revision

    def txn(self, *ops):
        """ops: ("put", key, value) or ("del", key, range_end)."""
        R = self.R
        reqs = []
        for op in ops:
            if op[0] == "put":
                reqs.append(R.RequestOp(request_put=R.PutRequest(key=_b(op[1]),
                                                                 value=_b(op[2]))))
            else:
                end = op[2] if len(op) > 2 else b""
                reqs.append(R.RequestOp(request_delete_range=R.DeleteRangeRequest(
                    key=_b(op[1]), range_end=_b(end))))
        return self.stub.Txn(R.TxnRequest(success=reqs), timeout=10).header.revision

    def compact(self, revision):
        self.stub.Compact(self.R.CompactionRequest(revision=revision, physical=True),
                          timeout=30)

    def rev(self):
        return self.stub.Range(self.R.RangeRequest(key=b"\0"), timeout=10).header.revision

    def close(self):
        self.channel.close()


# ------------------------------------------------------------ two servers

def target_kind():
    kind = os.environ.get("BLDIFF_TARGET", "ballast")
    if kind not in ("ballast", "etcd"):
        raise ValueError(f"BLDIFF_TARGET must be ballast or etcd, not {kind!r}")
    return kind


class Pair:
    """A reference etcd 3.4 and the server under test, both fresh.

    progress: the progress notification interval in seconds (etcd's
    --experimental-watch-progress-notify-interval, ballast's
    watch { progress_notify_interval }), None for the default.
    etcd_args / ballast_extra: more flags / config text.
    """

    def __init__(self, t, progress=None, etcd_args=(), ballast_extra="", workers=2):
        self.t = t
        self.kind = target_kind()
        eargs = list(etcd_args)
        extra = ballast_extra
        if progress is not None:
            eargs.append(f"--experimental-watch-progress-notify-interval={progress}s")
            extra = f"watch {{ progress_notify_interval {progress}s; }}\n" + extra
        self.ref = bltest.Etcd(args=eargs)
        self.ref.start()
        self.pg = None
        if self.kind == "etcd":
            self.target = bltest.Etcd(args=eargs)
            self.target.start()
            self.target_name = "etcd#2"
        else:
            self.pg = bltest.Postgres(fast=True)
            self.pg.start()
            self.target = bltest.Ballast(dsn=self.pg.dsn(), workers=workers, extra=extra)
            self.target.start()
            self.target_name = "ballast"
        t.diag(f"reference etcd {self.ref.endpoint}, target {self.target_name} "
               f"{self.target.endpoint}")
        self.kv = (KV(self.ref.endpoint), KV(self.target.endpoint))
        self.failures = 0
        self._wrote = 0.0

    @property
    def endpoints(self):
        return (self.ref.endpoint, self.target.endpoint)

    def streams(self):
        """A new raw Watch stream on each server: (ref, target)."""
        return Stream(self.ref.endpoint), Stream(self.target.endpoint)

    def settle(self):
        """A write just made may not have reached ballast's event ring yet,
        and what a worker answers without reading the store (the created
        revision and the start of a watch from "now", cancel and progress
        headers) is the revision the ring has reached: give the ring its
        few milliseconds."""
        left = self._wrote + 0.1 - time.monotonic()
        if left > 0:
            time.sleep(left)

    def create(self, streams, *args, **kw):
        """The same create_request on both streams of a pair."""
        self.settle()
        for s in streams:
            s.create(*args, **kw)

    def both(self, streams, fn):
        """fn(stream) on both streams of a pair, once the ring settled."""
        self.settle()
        for s in streams:
            fn(s)

    # writes on both; the revisions must agree
    def _both(self, name, *args):
        self._wrote = time.monotonic()
        e = getattr(self.kv[0], name)(*args)
        o = getattr(self.kv[1], name)(*args)
        self._wrote = time.monotonic()
        if e != o:
            self.t.diag(f"{name}{args!r}: etcd revision {e}, {self.target_name} {o}")
        return o

    def put(self, key, value=b"", lease=0):
        return self._both("put", key, value, lease)

    def delete(self, key, range_end=b"", prefix=False):
        return self._both("delete", key, range_end, prefix)

    def txn(self, *ops):
        return self._both("txn", *ops)

    def compact(self, revision):
        return self._both("compact", revision)

    def check(self, name, streams, n, by_id=False, timeout=5.0):
        """n responses from each stream of the pair (ref, target), compared;
        by_id: only the order within each watch id matters (etcd sends the
        responses of one revision to several watches in map order).
        Returns the target's responses."""
        se, so = streams
        e = se.recv_n(n, timeout)
        o = so.recv_n(n, timeout)
        if len(e) != n:
            self.t.diag(f"{name}: etcd sent {len(e)} responses, the test expects {n}")
        if by_id:
            key = lambda r: r["watch_id"]
            self.same(name, sorted(e, key=key), sorted(o, key=key))
        else:
            self.same(name, e, o)
        return o

    def quiet(self, name, streams, wait=0.3):
        """Neither stream has anything more to say (within wait seconds)."""
        se, so = streams
        e = se.recv_all(wait)
        o = so.recv_all(wait)
        return self.same(name + ": nothing more", e, o)

    def same(self, name, e, o):
        """Compare two response sequences (or responses) after norm()."""
        ne = [norm(r) for r in e] if isinstance(e, list) else norm(e)
        no = [norm(r) for r in o] if isinstance(o, list) else norm(o)
        good = self.t.ok(ne == no, name)
        if not good:
            self.failures += 1
            show_e = [brief(r) for r in e] if isinstance(e, list) else brief(e)
            show_o = [brief(r) for r in o] if isinstance(o, list) else brief(o)
            self.t.diag(f"  etcd:    {show_e}\n  {self.target_name + ':':8} {show_o}")
            if isinstance(e, list) and isinstance(o, list):
                for i, (x, y) in enumerate(zip(ne, no)):
                    if x != y:
                        self.t.diag(f"  first difference at response {i}:\n"
                                    f"    etcd:   {x}\n    target: {y}")
                        break
        return good
