#!/usr/bin/python3
# The gRPC transport alone (objs/t/grpc_test_server, no etcd, no database),
# with Debian's grpc client and a few raw HTTP/2 clients for what grpc
# will not do: unary, concurrency, many connections, unknown methods,
# the message size limit, deadlines, cancel, bidi order, flow control,
# HTTP errors, broken connections, graceful and fast shutdown; then the
# same transport over TLS (ALPN h2 only, what a plaintext or non-h2 client
# gets, large messages through TLS records).
import os, shutil, signal, socket, ssl, struct, subprocess, sys, tempfile
import threading, time
import grpc

BUILDDIR = os.environ.get("BALLAST_BUILDDIR", "objs")
SERVER = os.path.join(BUILDDIR, "t", "grpc_test_server")
MAX_RECV = 100000
MAX_STREAMS = 50

n_tests = 0
n_failed = 0


def ok(cond, name, diag=None):
    global n_tests, n_failed
    n_tests += 1
    print("%sok %d - %s" % ("" if cond else "not ", n_tests, name))
    if not cond:
        n_failed += 1
        if diag is not None:
            for line in str(diag).splitlines():
                print("#   " + line)
    sys.stdout.flush()
    return cond


def is_(got, want, name):
    return ok(got == want, name, "got:  %r\nwant: %r" % (got, want))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, *args, env=None):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="grpc-test-",
                                               suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [SERVER, str(self.port)] + [str(a) for a in args],
            stdout=subprocess.DEVNULL, stderr=self.log,
            env=dict(os.environ, **(env or {})))
        self.target = "127.0.0.1:%d" % self.port
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError("grpc_test_server did not start:\n" + self.errors())

    def errors(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.unlink(self.log.name)


# test.Echo, encoded by hand

def varint(n):
    out = b""
    while True:
        b, n = n & 0x7f, n >> 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def echo(data=b"", delay=0, size=0, status=0, message="", count=0):
    m = b""
    if data:
        m += b"\x0a" + varint(len(data)) + data
    if delay:
        m += b"\x10" + varint(delay)
    if size:
        m += b"\x18" + varint(size)
    if status:
        m += b"\x20" + varint(status)
    if message:
        mb = message.encode()
        m += b"\x2a" + varint(len(mb)) + mb
    if count:
        m += b"\x30" + varint(count)
    return m


def data_of(msg):
    """Field 1 of a test.Echo holding only it."""
    if msg == b"":
        return b""
    assert msg[0] == 0x0a, msg[:10]
    n, shift, i = 0, 0, 1
    while True:
        b = msg[i]
        n |= (b & 0x7f) << shift
        shift += 7
        i += 1
        if not b & 0x80:
            break
    return msg[i:i + n]


def channel(target, **kw):
    opts = [("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.enable_retries", 0)]
    if kw.get("own"):
        opts.append(("grpc.use_local_subchannel_pool", 1))
    if kw.get("ca"):
        with open(kw["ca"], "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        return grpc.secure_channel(target, creds, options=opts)
    return grpc.insecure_channel(target, options=opts)


def method(ch, name, kind="unary_unary"):
    return getattr(ch, kind)("/test.Echo/" + name, request_serializer=None,
                             response_deserializer=None)


def call(fn, req, timeout=10):
    try:
        return ("OK", fn(req, timeout=timeout))
    except grpc.RpcError as e:
        return (e.code().name, e.details())


def stats(ch):
    text = data_of(method(ch, "Stats")(b"", timeout=10)).decode()
    return dict(kv.split("=") for kv in text.split())


def wait_stats(ch, key, want, timeout=5):
    deadline = time.time() + timeout
    while True:
        s = stats(ch)
        if int(s[key]) == want or time.time() > deadline:
            return s
        time.sleep(0.02)


# raw HTTP/2

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = \
    0, 1, 3, 4, 6, 7, 8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def settings(**kv):
    ids = {"initial_window_size": 4, "max_frame_size": 5}
    return frame(SETTINGS, 0, 0, b"".join(
        struct.pack(">HI", ids[k], v) for k, v in kv.items()))


def hpack_literal(name, value):
    """Literal header field without indexing, new name, no Huffman."""
    def s(x):
        assert len(x) < 127
        return bytes([len(x)]) + x
    return b"\x00" + s(name.encode()) + s(value.encode())


def request_headers(path, content_type="application/grpc", extra=()):
    fields = [(":method", "POST"), (":scheme", "http"), (":path", path),
              (":authority", "localhost"), ("content-type", content_type),
              ("te", "trailers")] + list(extra)
    return b"".join(hpack_literal(n, v) for n, v in fields)


def grpc_frame(msg):
    return b"\x00" + struct.pack(">I", len(msg)) + msg


class Raw:
    def __init__(self, port, timeout=5):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def recv_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self):
        hd = self.recv_exact(9)
        length = struct.unpack(">I", b"\0" + hd[:3])[0]
        sid = struct.unpack(">I", hd[5:9])[0] & 0x7fffffff
        return hd[3], hd[4], sid, self.recv_exact(length)

    def until_eof(self, timeout=5):
        """Bytes until the server closes; None if it does not."""
        self.sock.settimeout(timeout)
        data = self.buf
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return data
                data += chunk
        except ConnectionResetError:
            return data
        except socket.timeout:
            return None

    def close(self):
        self.sock.close()


def goaway_of(raw):
    """(error code, last stream id) of the first GOAWAY, None if none."""
    try:
        while True:
            ftype, flags, sid, payload = raw.frame()
            if ftype == GOAWAY:
                last, code = struct.unpack(">II", payload[:8])
                return code, last & 0x7fffffff
    except (EOFError, socket.timeout, ConnectionResetError):
        return None


def run_tests(srv):
    ch = channel(srv.target)
    unary = method(ch, "Unary")
    delayed = method(ch, "Delayed")

    # unary

    is_(call(unary, echo(b"hello")), ("OK", echo(b"hello")), "unary echo")
    is_(call(unary, b""), ("OK", b""), "empty request and response")
    is_(call(unary, echo(status=5, message="no such key")),
        ("NOT_FOUND", "no such key"), "a status and its message")
    is_(call(unary, echo(status=9, message="é 100% \t\n\x01 ok~")),
        ("FAILED_PRECONDITION", "é 100% \t\n\x01 ok~"),
        "grpc-message percent-encoded: non-ASCII, %, control bytes")
    r = call(unary, b"\x0a\x40abc")
    is_(r, ("INTERNAL", "grpc: error unmarshalling request"),
        "the service's own error")

    # unknown methods: grpc-go's words

    is_(call(method(ch, "Nope"), b""),
        ("UNIMPLEMENTED", "unknown method Nope for service test.Echo"),
        "unknown method")
    is_(call(ch.unary_unary("/no.Such/Call"), b""),
        ("UNIMPLEMENTED", "unknown service no.Such"), "unknown service")
    is_(call(ch.unary_unary("/nosuch"), b""),
        ("UNIMPLEMENTED", 'malformed method name: "/nosuch"'),
        "malformed method name")

    # concurrency on one channel (more than MAX_STREAMS: clients queue)

    futs = [delayed.future(echo(b"call %d" % i, delay=30), timeout=30)
            for i in range(200)]
    good = 0
    for i, f in enumerate(futs):
        try:
            if f.result() == echo(b"call %d" % i):
                good += 1
        except grpc.RpcError as e:
            print("# call %d: %s %s" % (i, e.code(), e.details()))
    is_(good, 200, "200 concurrent calls on one channel, %d streams at most"
        % MAX_STREAMS)

    # many connections in parallel

    results = []
    chans = [channel(srv.target, own=True) for _ in range(20)]

    def worker(i, c):
        fn = method(c, "Delayed")
        n = 0
        for j in range(10):
            if call(fn, echo(b"%d/%d" % (i, j), delay=5)) == \
                    ("OK", echo(b"%d/%d" % (i, j))):
                n += 1
        results.append(n)

    threads = [threading.Thread(target=worker, args=(i, c))
               for i, c in enumerate(chans)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    is_(sum(results), 200, "20 channels in parallel, 10 calls each")
    conns = int(stats(ch)["connections"])
    ok(conns >= 21, "they are 21 connections (%d)" % conns)
    for c in chans:
        c.close()
    s = wait_stats(ch, "connections", 1)
    is_(s["connections"], "1", "closed channels close their connections")

    # the receive limit: exactly, and one byte more

    n = MAX_RECV - 1 - len(varint(MAX_RECV))
    req = echo(b"y" * n)
    is_(len(req), MAX_RECV, "a request of exactly the limit")
    r = call(unary, req)
    ok(r == ("OK", req), "exactly the limit: OK", r[:1])
    req = echo(b"y" * (n + 1))
    is_(call(unary, req), ("RESOURCE_EXHAUSTED",
        "grpc: received message larger than max (%d vs. %d)"
        % (MAX_RECV + 1, MAX_RECV)), "limit + 1: RESOURCE_EXHAUSTED")
    is_(call(unary, echo(b"after")), ("OK", echo(b"after")),
        "the connection serves on")

    # deadlines

    before = int(stats(ch)["cancelled"])
    t0 = time.time()
    r = call(delayed, echo(b"late", delay=3000), timeout=0.3)
    is_(r[0], "DEADLINE_EXCEEDED", "deadline exceeded")
    ok(time.time() - t0 < 2, "  in time")
    s = wait_stats(ch, "cancelled", before + 1)
    is_(int(s["cancelled"]), before + 1, "  the service saw one on_cancel")
    is_(call(delayed, echo(b"soon", delay=10), timeout=5),
        ("OK", echo(b"soon")), "a call within its deadline")

    # client cancel

    before = int(stats(ch)["cancelled"])
    f = delayed.future(echo(b"x", delay=5000), timeout=30)
    time.sleep(0.2)
    f.cancel()
    s = wait_stats(ch, "cancelled", before + 1)
    is_(int(s["cancelled"]), before + 1, "client cancel: one on_cancel")
    is_(call(unary, echo(b"more")), ("OK", echo(b"more")),
        "calls go on after a cancel")

    # bidi

    stream = method(ch, "Stream", "stream_stream")
    reqs = [echo(b"message %03d" % i) for i in range(100)]
    try:
        got = list(stream(iter(reqs), timeout=30))
    except grpc.RpcError as e:
        got = [e.code(), e.details()]
    ok(got == reqs, "bidi: 100 messages echoed in order", got[:3])

    # bidi, interleaved: each answer before the next request

    import queue
    q = queue.Queue()

    def gen():
        for i in range(20):
            yield echo(b"ping %d" % i)
            q.get(timeout=10)

    got = []
    for resp in stream(gen(), timeout=30):
        got.append(resp)
        q.put(1)
    ok(got == [echo(b"ping %d" % i) for i in range(20)],
       "bidi: request, answer, request, ...")

    r = call(lambda req, timeout: list(stream(iter(req), timeout=timeout)),
             [echo(b"a"), echo(status=10, message="stop")])
    is_(r, ("ABORTED", "stop"), "bidi: the service ends it with a status")

    # large responses and flow control

    r = call(unary, echo(size=1 << 20))
    ok(r[0] == "OK" and data_of(r[1]) == b"x" * (1 << 20),
       "a 1 MiB response")
    serve = method(ch, "Serve", "unary_stream")
    try:
        got = list(serve(echo(size=100000, count=50), timeout=30))
    except grpc.RpcError as e:
        got = [e.code()]
    ok(len(got) == 50 and all(data_of(m) == b"x" * 100000 for m in got),
       "server streaming: 50 messages of 100000 bytes queued at once")

    raw = Raw(srv.port)
    window = 16384
    raw.send(PREFACE + settings(initial_window_size=window))
    req = echo(size=1 << 20)
    raw.send(frame(HEADERS, END_HEADERS, 1, request_headers(
        "/test.Echo/Unary")) + frame(DATA, END_STREAM, 1, grpc_frame(req)))
    stream_credit, conn_credit = window, 65535
    body, trailers, overrun, big_frame = b"", False, False, False
    try:
        while not trailers:
            ftype, flags, sid, payload = raw.frame()
            if ftype == SETTINGS and not flags & ACK:
                raw.send(frame(SETTINGS, ACK, 0))
            elif ftype == DATA and sid == 1:
                n = len(payload)
                big_frame |= n > 16384
                stream_credit -= n
                conn_credit -= n
                overrun |= stream_credit < 0 or conn_credit < 0
                body += payload
                # grant more only when the window is used up
                upd = b""
                if conn_credit < 16384:
                    upd += frame(WINDOW_UPDATE, 0, 0,
                                 struct.pack(">I", 65535 - conn_credit))
                    conn_credit = 65535
                if stream_credit == 0:
                    upd += frame(WINDOW_UPDATE, 0, 1,
                                 struct.pack(">I", window))
                    stream_credit = window
                if upd:
                    raw.send(upd)
            elif ftype == HEADERS and sid == 1 and flags & END_STREAM:
                trailers = True
            elif ftype in (RST_STREAM, GOAWAY):
                break
    except (EOFError, socket.timeout) as e:
        print("# raw flow control: %r" % e)
    raw.close()
    ok(not overrun, "flow control: never more than the client's window")
    ok(not big_frame, "no DATA frame over the default max frame size")
    ok(trailers and body == grpc_frame(echo(b"x" * (1 << 20))),
       "1 MiB through a 16 KiB window, then trailers (%d bytes)" % len(body))

    # HTTP-level errors: grpc-go's early answers (need curl's HTTP/2)

    curl = shutil.which("curl")
    if curl is None:
        print("# skip: no curl")
    else:
        def curl_headers(*args):
            p = subprocess.run([curl, "-s", "--http2-prior-knowledge",
                                "-D", "-", "-o", "/dev/null"] + list(args) +
                               ["http://%s/test.Echo/Unary" % srv.target],
                               capture_output=True, timeout=10)
            return p.stdout.decode(errors="replace").replace("\r", "")

        with tempfile.NamedTemporaryFile() as body_file:
            body_file.write(grpc_frame(echo(b"hi")))
            body_file.flush()
            # no body: these are answered from the headers alone, and
            # curl 7.88 stops an upload on an early error response and
            # then takes the server's RST_STREAM(NO_ERROR) as a failure
            post = ["-X", "POST"]
            h = curl_headers("-H", "content-type: text/plain", *post)
            ok("HTTP/2 415" in h and "grpc-status: 3" in h and
               'grpc-message: invalid gRPC request content-type "text/plain"'
               in h, "content-type not gRPC: 415, INVALID_ARGUMENT", h)
            h = curl_headers("-H", "content-type: application/grpc")
            ok("HTTP/2 405" in h and "grpc-status: 13" in h and
               "which should be POST" in h, "GET: 405, INTERNAL", h)
            h = curl_headers("-H", "content-type: application/grpc",
                             "-H", "grpc-timeout: 1x", *post)
            ok("HTTP/2 400" in h and "grpc-status: 13" in h and
               'malformed grpc-timeout: transport: timeout unit is not '
               'recognized: "1x"' in h, "bad grpc-timeout: 400, INTERNAL", h)
            h = curl_headers("-H", "content-type: application/grpc+proto",
                             "-H", "te: trailers", "-X", "POST",
                             "--data-binary", "@" + body_file.name)
            ok("HTTP/2 200" in h and "grpc-status: 0" in h,
               "application/grpc+proto is gRPC", h)

        with tempfile.NamedTemporaryFile() as body_file:
            body_file.write(grpc_frame(echo(b"hi", delay=2000)))
            body_file.flush()
            t0 = time.time()
            h = curl_headers("-H", "content-type: application/grpc",
                             "-H", "grpc-timeout: 100m", "-X", "POST",
                             "--data-binary", "@" + body_file.name)
            ok("grpc-status: 4" in h and
               "grpc-message: context deadline exceeded" in h and
               time.time() - t0 < 1.5,
               "the server's own deadline: DEADLINE_EXCEEDED", h)

    # broken connections

    raw = Raw(srv.port)
    raw.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    ok(raw.until_eof() is not None, "no preface: the server closes")
    raw.close()

    raw = Raw(srv.port)
    raw.send(PREFACE + settings() + frame(SETTINGS, 0, 0, b"abc"))
    g = goaway_of(raw)
    is_(g and g[0], 6, "a malformed frame: GOAWAY FRAME_SIZE_ERROR")
    ok(raw.until_eof() is not None, "  and the connection is closed")
    raw.close()

    raw = Raw(srv.port)
    raw.send(PREFACE + settings() + frame(HEADERS, END_HEADERS | END_STREAM,
             2, request_headers("/test.Echo/Unary")))
    g = goaway_of(raw)
    is_(g and g[0], 1, "a stream id the client may not use: GOAWAY "
        "PROTOCOL_ERROR")
    raw.close()

    raw = Raw(srv.port)
    raw.send(PREFACE + settings() + frame(HEADERS, END_HEADERS, 1,
             request_headers("/test.Echo/Delayed")) +
             frame(DATA, 0, 1, grpc_frame(echo(b"z", delay=5000))[:3]))
    time.sleep(0.1)
    raw.close()
    is_(call(unary, echo(b"still")), ("OK", echo(b"still")),
        "the server serves on after all that")

    raw = Raw(srv.port)
    raw.send(PREFACE + settings() + frame(HEADERS, END_HEADERS | END_STREAM,
             1, request_headers("/test.Echo/Unary")))
    status = None
    try:
        while status is None:
            ftype, flags, sid, payload = raw.frame()
            if sid == 1 and ftype == HEADERS:
                status = flags & END_STREAM
    except (EOFError, socket.timeout):
        pass
    ok(status, "a unary call without a message gets a status")
    raw.close()

    # request headers: what nghttp2's HTTP checks did, ours now do, except
    # that :authority may be a URL (etcdctl 3.4 sends "http://host:port")

    def outcome(fields):
        raw = Raw(srv.port)
        block = b"".join(hpack_literal(n, v) for n, v in fields)
        raw.send(PREFACE + settings() + frame(HEADERS, END_HEADERS, 1, block)
                 + frame(DATA, END_STREAM, 1, grpc_frame(echo(b"hi"))))
        got = None
        try:
            while got is None:
                ftype, flags, sid, payload = raw.frame()
                if sid == 1 and ftype == RST_STREAM:
                    got = "reset"
                elif sid == 1 and ftype == HEADERS and flags & END_STREAM:
                    got = "grpc-status 0" if b"grpc-status" in payload \
                        and payload.find(b"\x0bgrpc-status\x010") >= 0 \
                        else "answered"
                elif ftype == GOAWAY:
                    got = "goaway"
        except (EOFError, socket.timeout):
            got = "closed"
        raw.close()
        return got

    base = [(":method", "POST"), (":scheme", "http"),
            (":path", "/test.Echo/Unary"), (":authority", "localhost"),
            ("content-type", "application/grpc"), ("te", "trailers")]
    url = [(n, "http://127.0.0.1:2379" if n == ":authority" else v)
           for n, v in base]
    got = outcome(url)
    ok(got not in ("reset", "goaway", "closed"),
       ":authority as a URL (etcdctl 3.4's endpoint status) is served (%s)"
       % got)
    for name, fields in [
            ("an upper-case header name", base + [("X-Up", "1")]),
            ("a pseudo-header after a regular one",
             base[:4] + base[5:] + [(":authority", "x")][:0]
             + [("content-type", "application/grpc"), (":scheme", "http")]),
            ("a repeated :path", base[:3] + [(":path", "/x")] + base[3:]),
            ("an unknown pseudo-header", [(":status", "200")] + base),
            ("no :path", [f for f in base if f[0] != ":path"]),
            ("a connection header", base + [("connection", "close")]),
            ("TE other than trailers", base[:5] + [("te", "gzip")]),
            ("a NUL in a value", base + [("x-bad", "a\x00b")])]:
        is_(outcome(fields), "reset", "request with %s: RST_STREAM" % name)
    is_(call(unary, echo(b"after")), ("OK", echo(b"after")),
        "  and the connection-level service goes on")

    s = wait_stats(ch, "connections", 1)
    is_(s["connections"], "1", "every broken connection was closed")
    is_((s["active"], s["bad"]), ("0", "0"),
        "no call is left, none was cancelled twice")

    # graceful shutdown: in-flight calls finish, then the server exits

    f = delayed.future(echo(b"last", delay=500), timeout=30)
    time.sleep(0.1)
    srv.proc.send_signal(signal.SIGTERM)
    try:
        r = ("OK", f.result())
    except grpc.RpcError as e:
        r = (e.code().name, e.details())
    is_(r, ("OK", echo(b"last")), "graceful shutdown: the call in flight "
        "finishes")
    ch.close()
    try:
        rc = srv.proc.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    is_(rc, 0, "  and the server exits, every call accounted for")


def run_fast(srv):
    ch = channel(srv.target)
    delayed = method(ch, "Delayed")
    f = delayed.future(echo(b"never", delay=10000), timeout=30)
    g = method(ch, "Stream", "stream_stream")(iter([echo(b"x")] * 1),
                                              timeout=30)
    time.sleep(0.3)
    srv.proc.send_signal(signal.SIGINT)
    try:
        r = ("OK", f.result())
    except grpc.RpcError as e:
        r = (e.code().name, e.details())
    is_(r[0], "UNAVAILABLE", "fast shutdown: calls end UNAVAILABLE")
    try:
        rc = srv.proc.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    is_(rc, 0, "  and the server exits, every call cancelled once")
    del g
    ch.close()


# TLS: a CA and a server certificate for 127.0.0.1, made with openssl

def make_certs(d):
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True,
                       capture_output=True, cwd=d, timeout=60)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
        "-out", "ca.crt", "-days", "2", "-subj", "/CN=t05 CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=localhost")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey",
        "ca.key", "-set_serial", "5", "-out", "server.crt", "-days", "2",
        "-extfile", "server.ext")
    return {k: os.path.join(d, k + ".crt") if k != "key"
            else os.path.join(d, "server.key") for k in ("ca", "server", "key")}


def tls_connect(port, alpn):
    """A TLS connection (no verification) offering alpn (None: no ALPN)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    sock = socket.create_connection(("127.0.0.1", port), 5)
    return ctx.wrap_socket(sock)


def run_tls_tests(srv, certs):
    ch = channel(srv.target, ca=certs["ca"])
    unary = method(ch, "Unary")
    delayed = method(ch, "Delayed")

    is_(call(unary, echo(b"over TLS")), ("OK", echo(b"over TLS")),
        "TLS: unary echo")

    futs = [delayed.future(echo(b"call %d" % i, delay=20), timeout=30)
            for i in range(100)]
    good = sum(1 for i, f in enumerate(futs)
               if call(lambda r, timeout: f.result(), None)[1]
               == echo(b"call %d" % i))
    is_(good, 100, "TLS: 100 concurrent calls on one connection")

    stream = method(ch, "Stream", "stream_stream")
    reqs = [echo(b"message %03d" % i) for i in range(100)]
    try:
        got = list(stream(iter(reqs), timeout=30))
    except grpc.RpcError as e:
        got = [e.code(), e.details()]
    ok(got == reqs, "TLS: bidi, 100 messages echoed in order", got[:3])

    r = call(unary, echo(size=4 << 20))
    ok(r[0] == "OK" and data_of(r[1]) == b"x" * (4 << 20),
       "TLS: a 4 MiB response, many records")
    serve = method(ch, "Serve", "unary_stream")
    try:
        got = list(serve(echo(size=100000, count=50), timeout=30))
    except grpc.RpcError as e:
        got = [e.code()]
    ok(len(got) == 50 and all(data_of(m) == b"x" * 100000 for m in got),
       "TLS: server streaming, 50 messages of 100000 bytes")
    n = MAX_RECV - 1 - len(varint(MAX_RECV))
    is_(call(unary, echo(b"y" * n)), ("OK", echo(b"y" * n)),
        "TLS: a request of the receive limit")

    chans = [channel(srv.target, own=True, ca=certs["ca"]) for _ in range(10)]
    res = []
    threads = [threading.Thread(target=lambda c=c, i=i: res.append(
        call(method(c, "Unary"), echo(b"%d" % i)) == ("OK", echo(b"%d" % i))))
        for i, c in enumerate(chans)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    is_(sum(res), 10, "TLS: 10 connections in parallel")
    for c in chans:
        c.close()

    # what is refused, and the server serves on

    raw = Raw(srv.port)
    raw.send(PREFACE + settings())
    ok(raw.until_eof() is not None, "TLS port: a plaintext HTTP/2 client is "
       "closed")
    raw.close()

    raw = Raw(srv.port)
    raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    data = raw.until_eof()
    ok(data is not None and b"HTTP/1.1 200" not in data,
       "TLS port: a plaintext HTTP/1.1 request is closed unanswered")
    raw.close()

    try:
        s = tls_connect(srv.port, ["http/1.1"])
        s.close()
        r = "handshake succeeded"
    except (ssl.SSLError, OSError) as e:
        r = str(e)
    ok("no application protocol" in r.lower() or "alert" in r.lower(),
       "TLS: ALPN without h2 fails the handshake", r)

    try:
        s = tls_connect(srv.port, None)
        s.settimeout(5)
        data = s.recv(100)
        r = "closed" if data == b"" else repr(data)
        s.close()
    except (ssl.SSLError, OSError) as e:
        r = "closed: " + str(e)
    ok(r.startswith("closed"), "TLS: no ALPN at all: closed after the "
       "handshake", r)

    s = tls_connect(srv.port, ["h2"])
    is_(s.selected_alpn_protocol(), "h2", "TLS: ALPN h2 is selected")
    ok(s.version() in ("TLSv1.2", "TLSv1.3"), "  with " + str(s.version()))
    s.close()

    is_(call(unary, echo(b"still")), ("OK", echo(b"still")),
        "TLS: the server serves on after all that")
    s = wait_stats(ch, "connections", 1)
    is_(s["connections"], "1", "TLS: every refused connection was closed")

    f = delayed.future(echo(b"last", delay=500), timeout=30)
    time.sleep(0.1)
    srv.proc.send_signal(signal.SIGTERM)
    try:
        r = ("OK", f.result())
    except grpc.RpcError as e:
        r = (e.code().name, e.details())
    is_(r, ("OK", echo(b"last")), "TLS: graceful shutdown, the call in "
        "flight finishes")
    ch.close()
    try:
        rc = srv.proc.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    is_(rc, 0, "  and the server exits, every call accounted for")


def check_log(srv, name):
    log = srv.errors()
    bad = [l for l in log.splitlines()
           if "[alert]" in l or "[crit]" in l or "[emerg]" in l]
    ok(not bad, "%s: no alert, crit or emerg in the log" % name,
       "\n".join(bad))


if not os.access(SERVER, os.X_OK):
    print("1..0 # skip %s not built" % SERVER)
    sys.exit(0)

srv = Server(MAX_RECV, MAX_STREAMS)
try:
    run_tests(srv)
    check_log(srv, "test server")
finally:
    if os.environ.get("BL_TEST_VERBOSE"):
        print("# " + srv.errors().replace("\n", "\n# "))
    srv.stop(signal.SIGKILL)
    srv.cleanup()

srv = Server()
try:
    run_fast(srv)
    check_log(srv, "fast shutdown")
finally:
    srv.stop(signal.SIGKILL)
    srv.cleanup()

certdir = tempfile.mkdtemp(prefix="grpc-test-tls-")
try:
    certs = make_certs(certdir)
    srv = Server(MAX_RECV, MAX_STREAMS, env={
        "BL_TEST_TLS_CERT": certs["server"], "BL_TEST_TLS_KEY": certs["key"]})
    try:
        run_tls_tests(srv, certs)
        check_log(srv, "TLS server")
    finally:
        if os.environ.get("BL_TEST_VERBOSE"):
            print("# " + srv.errors().replace("\n", "\n# "))
        srv.stop(signal.SIGKILL)
        srv.cleanup()
finally:
    shutil.rmtree(certdir, ignore_errors=True)

print("1..%d" % n_tests)
sys.exit(1 if n_failed else 0)
