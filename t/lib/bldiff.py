"""bldiff: differential testing of ballast against a real etcd 3.4.

The same operation goes to a reference etcd and to the server under test,
through one of three clients, and the two answers are compared after
normalisation (cluster_id, member_id and raft_term are dropped from every
header; everything else -- header revision, kvs with all their fields,
more, count, deleted, prev_kv(s), succeeded, typed responses, error code
and message -- must be identical).  One TAP line per operation.

    import bldiff
    t = bltest.Tap()
    d = bldiff.Diff(t)                      # starts etcd + the target
    r = d.go(bldiff.put("k", "v"), "C05 first put")     # Go clientv3
    d.ctl("get", "k", name="etcdctl get")               # etcdctl -w json
    d.py(lambda c: c.replace("k", "v", "w"), "etcd3 replace")  # python etcd3
    t.done()

The server under test is ballast (on a private PostgreSQL) unless the
environment says BLDIFF_TARGET=etcd: then it is a second real etcd 3.4, which
is how the tests themselves are verified (everything must pass there).

Operations for the Go client are dicts (see t/lib/go/bldiff/main.go) built
with put(), get(), delete(), txn(), cmp(), compact(), lease_grant(); byte
fields may be given as bytes or str.  The Go program is built once per
source hash into $BALLAST_BUILDDIR/go (default objs/go), GOPATH mode against
Debian's golang-etcd-server-dev, with no network (GOPROXY=off).

Results are normalised dicts: {"ok": response} or {"error_code": "NAME",
"error": "message", ...}; byte fields are shown as text when printable
ASCII, else as a Python bytes literal; int64 fields are ints.
"""

import base64
import fcntl
import hashlib
import json
import os
import select
import shutil
import subprocess
import sys
import time

import bltest

DROP = ("cluster_id", "member_id", "raft_term")
DOWN = {"Unavailable", "DeadlineExceeded", "Canceled"}   # a server may be gone
BYTE_FIELDS = ("key", "value", "range_end", "v")
INT_FIELDS = ("revision", "create_revision", "mod_revision", "version", "lease",
              "count", "deleted", "compact_revision", "ID", "TTL", "grantedTTL",
              "cluster_id", "member_id", "raft_term")
GO_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "go", "bldiff", "main.go")
GOPATH = "/usr/share/gocode"


# ------------------------------------------------------------ normalisation

def show_bytes(b):
    """bytes as readable text: itself if printable ASCII, else a bytes literal."""
    if all(0x20 <= c < 0x7f for c in b) and not b.startswith(b"b'"):
        return b.decode()
    return repr(b)


def norm(doc):
    """Drop what legitimately differs between two clusters, recursively."""
    if isinstance(doc, dict):
        return {k: norm(v) for k, v in doc.items() if k not in DROP}
    if isinstance(doc, list):
        return [norm(v) for v in doc]
    return doc


def _readable(doc, b64):
    """A copy with base64 byte fields decoded and int64 strings made ints."""
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            if k in BYTE_FIELDS and b64 and (isinstance(v, str) or v is None):
                v = show_bytes(base64.b64decode(v or ""))   # null: empty bytes
            elif k in INT_FIELDS and isinstance(v, str) and v.lstrip("-").isdigit():
                v = int(v)
            else:
                v = _readable(v, b64)
            out[k] = v
        return out
    if isinstance(doc, list):
        return [_readable(v, b64) for v in doc]
    return doc



def dumps(doc, limit=4000):
    s = json.dumps(doc, sort_keys=True, default=repr)
    return s if len(s) <= limit else s[:limit] + f"... ({len(s)} chars)"


# --------------------------------------------------------- operation builders

def _b(x):
    if x is None:
        return None
    return x.encode() if isinstance(x, str) else bytes(x)


def _op(kind, **kw):
    d = {"op": kind}
    for k, v in kw.items():
        if v is None or v is False or (v == 0 and not isinstance(v, (bytes, str))):
            continue
        d[k] = _b(v) if k in BYTE_FIELDS else v
    return d


def put(key, value=b"", lease=0, prev_kv=False, ignore_value=False, ignore_lease=False):
    return _op("put", key=key, value=value, lease=lease, prev_kv=prev_kv,
               ignore_value=ignore_value, ignore_lease=ignore_lease)


def get(key, range_end=None, prefix=False, from_key=False, limit=0, revision=0,
        sort_order=None, sort_target=None, serializable=False, keys_only=False,
        count_only=False, min_mod_revision=0, max_mod_revision=0,
        min_create_revision=0, max_create_revision=0):
    return _op("get", key=key, range_end=range_end, prefix=prefix, from_key=from_key,
               limit=limit, revision=revision, sort_order=sort_order,
               sort_target=sort_target, serializable=serializable, keys_only=keys_only,
               count_only=count_only, min_mod_revision=min_mod_revision,
               max_mod_revision=max_mod_revision, min_create_revision=min_create_revision,
               max_create_revision=max_create_revision)


def delete(key, range_end=None, prefix=False, from_key=False, prev_kv=False):
    return _op("delete", key=key, range_end=range_end, prefix=prefix,
               from_key=from_key, prev_kv=prev_kv)


def cmp(target, key, result, value, range_end=None, prefix=False):
    """A compare: target VERSION/CREATE/MOD/VALUE/LEASE, result = != > <."""
    c = {"target": target, "result": result, "key": _b(key)}
    if target == "VALUE":
        c["v"] = _b(value)
    else:
        c["n"] = int(value)
    if range_end is not None:
        c["range_end"] = _b(range_end)
    if prefix:
        c["prefix"] = True
    return c


def txn(compare=(), success=(), failure=()):
    return {"op": "txn", "compare": list(compare), "success": list(success),
            "failure": list(failure)}


def compact(revision, physical=False):
    return _op("compact", revision=revision, physical=physical)


def lease_grant(lease_id, ttl):
    return {"op": "lease_grant", "id": lease_id, "ttl": ttl}


def lease_revoke(lease_id):
    return {"op": "lease_revoke", "id": lease_id}


def prefix_end(key):
    """clientv3's getPrefix: last byte < 0xff incremented, the rest dropped."""
    key = bytearray(_b(key))
    for i in range(len(key) - 1, -1, -1):
        if key[i] < 0xff:
            key[i] += 1
            return bytes(key[:i + 1])
    return b"\x00"


def _to_wire(op):
    """A Python op (bytes fields) as JSON-able (base64 byte fields)."""
    if isinstance(op, list):
        return [_to_wire(o) for o in op]
    if isinstance(op, dict):
        return {k: (base64.b64encode(v).decode() if isinstance(v, (bytes, bytearray))
                    else _to_wire(v)) for k, v in op.items()}
    return op


def bldiff_show(what):
    return show_op(what) if isinstance(what, (dict, list)) else str(what)


def show_op(op):
    """An op as short readable text (for diagnostics)."""
    def conv(x):
        if isinstance(x, (bytes, bytearray)):
            return show_bytes(bytes(x))
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        if isinstance(x, list):
            return [conv(v) for v in x]
        return x
    return json.dumps(conv(op), sort_keys=False)


# ------------------------------------------------------------- result access

def ok(r):
    """The response of a successful result, else None."""
    return r.get("ok") if isinstance(r, dict) else None


def hrev(r):
    """header.revision of a successful result (0 on error, so that a test
    doing arithmetic with it goes on and fails its checks instead)."""
    o = ok(r) or {}
    return (o.get("header") or {}).get("revision") or 0


def kvs(r):
    o = ok(r)
    return (o or {}).get("kvs") or []


def err(r):
    """(code, message) of a failed result, or None."""
    if isinstance(r, dict) and "error_code" in r:
        return r["error_code"], r.get("error")
    return None


# ----------------------------------------------------------------- Go client

def build_dir():
    base = os.environ.get("BALLAST_BUILDDIR") or os.path.join(bltest.repo_root(), "objs")
    return os.path.join(base, "go")


def go_env(cache):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update(GO111MODULE="off", GOPATH=GOPATH, GOCACHE=cache, GOPROXY="off",
               GOFLAGS="", GOENV="off", CGO_ENABLED="0", GOTELEMETRY="off")
    env.setdefault("HOME", "/nonexistent")
    return env


def build_go(src_dir, name, objdir=None, cache=None):
    """Build the Go program in src_dir (GOPATH mode, Debian's clientv3) once
    per hash of its .go files and the toolchain, into objdir (default
    build_dir()) as NAME-<hash>; returns (path, seconds spent building, 0.0
    if it was there).  One build at a time: parallel prove runs share it."""
    if shutil.which("go") is None:
        raise RuntimeError("no go toolchain (golang-go)")
    d = objdir or build_dir()
    os.makedirs(d, exist_ok=True)
    h = hashlib.sha256()
    for f_name in sorted(os.listdir(src_dir)):
        if f_name.endswith(".go"):
            h.update(f_name.encode() + b"\0")
            with open(os.path.join(src_dir, f_name), "rb") as f:
                h.update(f.read())
    h.update(subprocess.run(["go", "version"], capture_output=True, timeout=30).stdout)
    path = os.path.join(d, f"{name}-" + h.hexdigest()[:16])
    with open(os.path.join(d, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.access(path, os.X_OK):
            return path, 0.0
        start = time.monotonic()
        tmp = f"{path}.tmp{os.getpid()}"
        r = subprocess.run(["go", "build", "-o", tmp, "."], cwd=src_dir,
                           env=go_env(cache or os.path.join(d, "cache")),
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"go build of {src_dir} failed ({r.returncode}):\n"
                               f"{r.stdout}{r.stderr}")
        os.rename(tmp, path)
        return path, time.monotonic() - start


def go_binary():
    """The Go client t/lib/go/bldiff: (path, seconds spent building)."""
    if not os.path.isfile(GO_SRC):
        raise RuntimeError(f"{GO_SRC} is missing")
    return build_go(os.path.dirname(GO_SRC), "bldiff")


class GoClient:
    """The Go program, running against one endpoint, fed op by op."""

    def __init__(self, binary, endpoint, timeout=15):
        self.endpoint = endpoint
        self.timeout = timeout
        # stderr (clientv3's and grpc's log lines) to a file: a pipe nobody
        # reads would fill up and block the program
        self.log_path = os.path.join(bltest._tempdir("go-"), "stderr.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["setpriv", "--pdeathsig", "KILL", "--", binary, "-endpoint", endpoint],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        self._buf = b""

    def _readline(self):
        deadline = time.monotonic() + self.timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"Go client ({self.endpoint}): no answer in {self.timeout} s\n"
                                   f"{bltest._tail(self.log_path)}")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Go client ({self.endpoint}) exited:\n"
                                       f"{bltest._tail(self.log_path)}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def run(self, op):
        """One op (dict) -> its normalised result."""
        self.proc.stdin.write(json.dumps(_to_wire(op)).encode() + b"\n")
        self.proc.stdin.flush()
        res = json.loads(self._readline())
        if "bad_input" in res:
            raise RuntimeError(f"Go client refused {show_op(op)}: {res['bad_input']}")
        return norm(_readable(res, True))

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# ------------------------------------------------------------ etcdctl client

FIELDS_DROP = ('"ClusterID" :', '"MemberID" :', '"RaftTerm" :')


def ctl_run(endpoint, args, input=None, write="json"):
    """etcdctl -w WRITE args -> normalised result: {"ok": parsed JSON (json),
    the output lines without ClusterID/MemberID/RaftTerm (fields), or the
    output text (simple)} or, when etcdctl fails, {"rc": n, "error_lines":
    [...]} (its Error:/panic: lines; the rest of its stderr carries times
    and ids)."""
    r = bltest.etcdctl(endpoint, "-w", write, *args, input=input)
    if r.rc != 0:
        lines = [l for l in r.err.splitlines() if l.startswith(("Error:", "panic:"))]
        return {"rc": r.rc, "error_lines": lines}
    if write == "fields":
        return {"ok": [l for l in r.out.splitlines() if not l.startswith(FIELDS_DROP)]}
    if write != "json":
        return {"ok": r.out}
    try:
        doc = json.loads(r.out)
    except ValueError:
        return {"ok_text": r.out}
    return {"ok": norm(_readable(doc, True))}


def ctl_txn_input(compares=(), success=(), failure=()):
    """The stdin of `etcdctl txn`: three blocks, each ended by a blank line."""
    return "".join(l + "\n" for l in compares) + "\n" + \
        "".join(l + "\n" for l in success) + "\n" + \
        "".join(l + "\n" for l in failure) + "\n"


# ------------------------------------------------------- python etcd3 client

def pyjson(x):
    """What python-etcd3 returned, as normalised JSON-able data."""
    import etcd3   # noqa: F401 (loads etcd3.client and etcd3.leases)
    from google.protobuf import json_format
    from google.protobuf.message import Message
    KVMetadata = sys.modules["etcd3.client"].KVMetadata
    Lease = sys.modules["etcd3.leases"].Lease
    if isinstance(x, Message):
        d = json_format.MessageToDict(x, preserving_proto_field_name=True,
                                      including_default_value_fields=True)
        return norm(_readable(d, True))
    if isinstance(x, Lease):
        return {"lease_id": x.id, "ttl": x.ttl}
    if isinstance(x, KVMetadata):
        return {"key": show_bytes(x.key), "create_revision": x.create_revision,
                "mod_revision": x.mod_revision, "version": x.version,
                "lease_id": x.lease_id, "response_header": pyjson(x.response_header)}
    if isinstance(x, (bytes, bytearray)):
        return show_bytes(bytes(x))
    if isinstance(x, (list, tuple)) or hasattr(x, "__next__"):
        return [pyjson(v) for v in x]
    if isinstance(x, dict):
        return {k: pyjson(v) for k, v in x.items()}
    return x


def py_run(client, fn):
    """fn(client) -> {"ok": pyjson(result)} or the error's gRPC status."""
    import grpc
    try:
        return {"ok": pyjson(fn(client))}
    except grpc.RpcError as e:
        return {"error_code": e.code().name, "error": e.details()}
    except Exception as e:   # etcd3's own exceptions wrap the RpcError
        cause = e.__context__
        if not isinstance(cause, grpc.RpcError):
            raise                # not the server's answer: a bug in the test
        return {"exception": type(e).__name__, "error_code": cause.code().name,
                "error": cause.details()}


def rpc():
    """etcd3's generated protobuf module (RangeRequest, TxnRequest, ...)."""
    import etcd3.etcdrpc
    return etcd3.etcdrpc


# ----------------------------------------------------------------- servers

def target_kind():
    kind = os.environ.get("BLDIFF_TARGET", "ballast")
    if kind not in ("ballast", "etcd"):
        raise ValueError(f"BLDIFF_TARGET must be ballast or etcd, not {kind!r}")
    return kind


class Diff:
    """A reference etcd and a server under test, and the three drivers.

    fsync: keep PostgreSQL's fsync on (default: off, for speed).
    Attributes: ref (bltest.Etcd), target (bltest.Ballast or bltest.Etcd),
    target_name, pg (bltest.Postgres or None), go_build_seconds.
    """

    def __init__(self, t, fsync=False, go=True, workers=2):
        self.t = t
        self.kind = target_kind()
        self.workers = workers
        self.pg = None
        self.dbname = "postgres"
        self._dbs = 0
        self._go = None
        self._py = None
        self.go_build_seconds = None
        self.failures = 0
        self.ref = bltest.Etcd()
        self.ref.start()
        if self.kind == "etcd":
            self.target = bltest.Etcd()
            self.target.start()
            self.target_name = "etcd#2"
        else:
            self.pg = bltest.Postgres(fast=not fsync)
            self.pg.start()
            self.target = bltest.Ballast(dsn=self.pg.dsn(), workers=workers)
            self.target.start()
            self.target_name = "ballast"
        t.diag(f"reference etcd {self.ref.endpoint}, target {self.target_name} "
               f"{self.target.endpoint}")
        if go:
            self._start_go()

    def reset(self, why=""):
        """Both servers replaced by new ones with empty stores (revision 1):
        a new etcd, and ballast on a new database of the same PostgreSQL."""
        self.close()
        self.ref.stop()
        self.ref = bltest.Etcd()
        self.ref.start()
        self.target.stop()
        if self.kind == "etcd":
            self.target = bltest.Etcd()
        else:
            self._dbs += 1
            self.dbname = f"bldiff{self._dbs}"
            self.pg.psql(f"CREATE DATABASE {self.dbname}")
            self.target = bltest.Ballast(dsn=self.pg.dsn(self.dbname), workers=self.workers)
        self.target.start()
        if why:
            self.t.diag(f"fresh servers: {why}")
        if self._go is not None:
            self._start_go()
        self._py = None

    def psql(self, sql):
        """SQL on ballast's database (ballast target only)."""
        return self.pg.psql(sql, dbname=self.dbname)

    # -- Go
    def _start_go(self):
        path, secs = go_binary()
        if self.go_build_seconds is None:
            self.go_build_seconds = secs
            self.t.diag(f"built the Go client in {secs:.1f} s: {path}" if secs
                        else f"Go client (cached): {path}")
        self._go = (GoClient(path, self.ref.endpoint), GoClient(path, self.target.endpoint))

    def go_pair(self, op):
        """Run op on both servers, no TAP line: (ref result, target result)."""
        if os.environ.get("BLDIFF_TRACE"):
            sys.stderr.write(f"# trace {time.monotonic():.3f} {show_op(op)[:300]}\n")
        e, o = self._go[0].run(op), self._go[1].run(op)
        if DOWN & {(e or {}).get("error_code"), (o or {}).get("error_code")}:
            self.check_alive(op)
        return e, o

    def check_alive(self, what=""):
        """Raise if a server has exited (e.g. etcd panicked on a request)."""
        for name, srv in (("etcd", self.ref), (self.target_name, self.target)):
            proc = getattr(srv, "_proc", None)
            if proc is not None and not proc.alive():
                log = getattr(srv, "log_path", None) or getattr(srv, "error_log_path", "")
                raise RuntimeError(f"{name} exited (status {proc.popen.returncode}) after "
                                   f"{bldiff_show(what)}\n--- {log}\n{bltest._tail(log, 40)}")

    def go(self, op, name):
        """One op through Go clientv3 on both; one TAP line; the target's result."""
        e, o = self.go_pair(op)
        self.same(name + " [go]", e, o, show_op(op))
        return o

    def go_seq(self, ops, name):
        """Several ops, compared one by one, reported as ONE TAP line
        (the first difference is shown); returns the target's results."""
        outs = []
        for i, op in enumerate(ops):
            e, o = self.go_pair(op)
            outs.append(o)
            if e != o:
                self.same(f"{name} [go] (op {i} of {len(ops)})", e, o, show_op(op))
                return outs
        self.t.ok(True, f"{name} [go] ({len(ops)} ops)")
        return outs

    # -- etcdctl
    def ctl(self, *args, name=None, input=None, write="json"):
        """One etcdctl command on both; one TAP line; the target's result."""
        e = ctl_run(self.ref.endpoint, args, input=input, write=write)
        o = ctl_run(self.target.endpoint, args, input=input, write=write)
        label = name or "etcdctl " + " ".join(args)
        self.same(label + " [etcdctl]", e, o,
                  "etcdctl " + " ".join(args) + (f" <<< {input!r}" if input else ""))
        return o

    def ctl_txn(self, compares=(), success=(), failure=(), name=None):
        text = ctl_txn_input(compares, success, failure)
        return self.ctl("txn", name=name or "etcdctl txn", input=text)

    # -- python etcd3
    def py_clients(self):
        if self._py is None:
            self._py = (bltest.etcd3_client(self.ref.endpoint),
                        bltest.etcd3_client(self.target.endpoint))
        return self._py

    def py(self, fn, name, what=None):
        """fn(client) on both python-etcd3 clients; one TAP line; the target's result."""
        pe, pt = self.py_clients()
        e = py_run(pe, fn)
        o = py_run(pt, fn)
        self.same(name + " [etcd3]", e, o, what or name)
        return o

    # -- comparison
    def same(self, name, e, o, what=""):
        good = self.t.ok(e == o, name)
        if os.environ.get("BLDIFF_VERBOSE"):
            self.t.diag(f"  {what}\n  => {dumps(o, 1500)}")
        if not good:
            self.failures += 1
            self.t.diag(f"  operation: {what}\n"
                        f"  etcd:      {dumps(e)}\n"
                        f"  {self.target_name + ':':10} {dumps(o)}")
        return good

    def close(self):
        for c in self._go or ():
            c.close()
        for c in self._py or ():
            try:
                c.close()
            except Exception:
                pass
        self._py = None


class Target:
    """The server under test alone (no reference etcd): ballast on a private
    PostgreSQL (fsync on unless fsync=False), or with BLDIFF_TARGET=etcd a
    real etcd.  Attributes: kind, server, endpoint, name, pg (or None)."""

    def __init__(self, t, fsync=True, workers=2):
        self.kind = target_kind()
        self.pg = None
        if self.kind == "etcd":
            self.server = bltest.Etcd()
            self.name = "etcd"
        else:
            self.pg = bltest.Postgres(fast=not fsync)
            self.pg.start()
            self.server = bltest.Ballast(dsn=self.pg.dsn(), workers=workers)
            self.name = "ballast"
        self.server.start()
        self.endpoint = self.server.endpoint
        t.diag(f"target {self.name} {self.endpoint}")

    def psql(self, sql):
        return self.pg.psql(sql)
