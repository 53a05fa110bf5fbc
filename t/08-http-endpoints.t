#!/usr/bin/python3
# The plain HTTP endpoints with a real ballast: on http_listen and on the
# gRPC client port (HTTP/1.x there, as etcd serves it).  Each endpoint
# and status (/health, /livez, /readyz and its checks, /version, /metrics,
# 405, 404, 400, 414, 431, 505); keep-alive and pipelining; /health and
# /readyz turn 503 while PostgreSQL is stopped and 200 when it is back;
# a slowloris client is closed after http_request_timeout while others
# are served; /metrics counts the RPCs the test made, summed over the
# workers, keeps its totals across a reload, and passes `promtool check
# metrics` (Debian's prometheus) and our own format check.
import http.client, json, os, re, shutil, socket, subprocess, sys, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import grpc

t = bltest.Tap()

pg = bltest.Postgres(fast=True)
pg.start()
hport = bltest.free_port()
b = bltest.Ballast(dsn=pg.dsn(), workers=2, extra=(
    "http_listen 127.0.0.1:%d;\n"
    "http_request_timeout 2s;\n"
    "http_keepalive_timeout 5s;\n" % hport))
b.start()
HTTP = ("127.0.0.1", hport)
GRPC = ("127.0.0.1", b.port)


def get(path, addr=HTTP, method="GET", body=None, headers=None):
    """(status, headers dict (lower-case names), body text) on a new connection."""
    c = http.client.HTTPConnection(*addr, timeout=10)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    out = (r.status, {k.lower(): v for k, v in r.getheaders()},
           r.read().decode(errors="replace"))
    c.close()
    return out


def raw(data, addr=HTTP, timeout=5):
    """Send data, return everything until the server closes (None: it did not)."""
    s = socket.create_connection(addr, timeout)
    s.sendall(data)
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        got = None
    except ConnectionResetError:
        pass
    s.close()
    return got


# --- each endpoint

# wait_ready() saw one worker serve; the other may still be connecting to
# PostgreSQL (and rightly answer 503) on a loaded machine
bltest.wait_until(lambda: all(get("/health")[0] == 200 for _ in range(6)), 20)
st, h, body = get("/health")
t.is_((st, body), (200, '{"health":"true","reason":""}'), "GET /health: 200, etcd's JSON")
st, h, body = get("/livez")
t.is_((st, body), (200, "ok\n"), "GET /livez: 200 ok")
t.is_(h.get("content-type"), "text/plain; charset=utf-8", "  text/plain")
st, h, body = get("/livez?verbose")
t.is_((st, body), (200, "[+]ping ok\nok\n"), "GET /livez?verbose lists its check")
st, h, body = get("/readyz")
t.is_((st, body), (200, "ok\n"), "GET /readyz: 200 ok")
st, h, body = get("/readyz?verbose")
t.is_((st, body), (200, "[+]data_corruption ok\n[+]serializable_read ok\n"
                        "[+]linearizable_read ok\n[+]non_learner ok\nok\n"),
      "GET /readyz?verbose: each check as etcd 3.5.11+ lists them")
st, h, body = get("/readyz?verbose&exclude=linearizable_read&exclude=non_learner")
t.is_((st, body), (200, "[+]data_corruption ok\n[+]serializable_read ok\nok\n"),
      "GET /readyz?exclude=... skips those checks")
st, h, body = get("/readyz/serializable_read?verbose")
t.is_((st, body), (200, "[+]serializable_read ok\nok\n"), "GET /readyz/serializable_read: that check")
st, h, body = get("/readyz/no_such_check")
t.is_(st, 404, "GET /readyz/no_such_check: 404")
st, h, body = get("/version")
t.is_((st, h.get("content-type")), (200, "application/json"), "GET /version: 200 JSON")
t.is_(json.loads(body), {"etcdserver": "3.5.17", "etcdcluster": "3.5.0"},
      "  {etcdserver: 3.5.17, etcdcluster: 3.5.0}")
st, h, body = get("/metrics")
t.is_((st, h.get("content-type")), (200, "text/plain; version=0.0.4; charset=utf-8"),
      "GET /metrics: 200, text format 0.0.4")
st, h, body = get("/health", method="POST", body="x" * 100)
t.is_((st, h.get("allow"), body), (405, "GET", "Method Not Allowed\n"),
      "POST /health: 405 with Allow: GET")
for path in ("/version", "/metrics", "/livez", "/readyz"):
    st, h, body = get(path, method="PUT")
    t.is_(st, 405, "PUT %s: 405" % path)
st, h, body = get("/health", method="HEAD")
t.is_(st, 405, "HEAD /health: 405 (etcd answers GET only)")
c = http.client.HTTPConnection(*HTTP, timeout=10)
c.request("HEAD", "/version")
r1 = c.getresponse()
r1.read()
c.request("GET", "/version")
r2 = c.getresponse()
t.is_((r1.status, r2.status, json.loads(r2.read())["etcdcluster"]), (405, 200, "3.5.0"),
      "  with no body after it: the next request on the connection is fine")
c.close()
data = raw(b"POST /health HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n"
           b"Expect: 100-continue\r\n\r\n")
t.ok(data is not None and data.startswith(b"HTTP/1.1 405") and b"Connection: close" in data,
     "Expect: 100-continue: the final answer at once, then close")
st, h, body = get("/v2/keys")
t.is_((st, body), (404, "404 page not found\n"), "an unknown path: 404")
st, h, body = get("/healthz")
t.is_(st, 404, "/healthz: 404")

# --- HTTP/1.x protocol

c = http.client.HTTPConnection(*HTTP, timeout=10)
answers = []
for path in ("/health", "/version", "/livez", "/readyz"):
    c.request("GET", path)
    r = c.getresponse()
    answers.append(r.status)
    r.read()
c.close()
t.is_(answers, [200, 200, 200, 200], "keep-alive: four requests on one connection")

c = http.client.HTTPConnection(*HTTP, timeout=10)
c.request("POST", "/health", body="y" * 5000)
r1 = c.getresponse()
r1.read()
c.request("GET", "/health")
r2 = c.getresponse()
t.is_((r1.status, r2.status, r2.read()), (405, 200, b'{"health":"true","reason":""}'),
      "a request body is skipped and the connection serves on")
c.close()

data = raw(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n"
           b"GET /version HTTP/1.1\r\nHost: a\r\n\r\n"
           b"GET /livez HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
statuses = re.findall(rb"HTTP/1\.1 (\d+)", data or b"")
t.is_(statuses, [b"200", b"200", b"200"], "pipelining: three answers in order, then close")
t.ok(data is not None and data.index(b"health") < data.index(b"etcdserver") < data.rindex(b"ok\n"),
     "  bodies in request order")

data = raw(b"GET /health HTTP/1.0\r\n\r\n")
t.ok(data is not None and data.startswith(b"HTTP/1.1 200") and b"Connection: close" in data,
     "HTTP/1.0 without keep-alive: answered and closed")

data = raw(b"GET /health HTTP/1.1\r\nHost: a\r\nX-Big: " + b"z" * 10000 + b"\r\n\r\n")
t.ok(data is not None and data.startswith(b"HTTP/1.1 431"), "a 10 kB header: 431 and closed")
data = raw(b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
t.ok(data is not None and data.startswith(b"HTTP/1.1 414"), "a 10 kB URI: 414 and closed")
data = raw(b"GET /health\r\n\r\n")
t.ok(data is not None and data.startswith(b"HTTP/1.1 400"), "a request line without version: 400")
data = raw(b"GET /health HTTP/1.1\r\n\r\n")
t.ok(data is not None and data.startswith(b"HTTP/1.1 400"), "HTTP/1.1 without Host: 400")
data = raw(b"GET /health HTTP/3.0\r\nHost: a\r\n\r\n")
t.ok(data is not None and data.startswith(b"HTTP/1.1 505"), "HTTP/3.0: 505")
data = raw(b"\x16\x03\x01\x00\x05hello\r\n\r\n")
t.ok(data is not None and not data.startswith(b"HTTP/1.1 200"), "TLS bytes on the HTTP port: refused")

# --- slowloris: a request that never ends is closed; others are served

slow = socket.create_connection(HTTP, 10)
slow.sendall(b"GET /health HTTP/1.1\r\nHo")
t0 = time.monotonic()
served, closed_at = [], [None]


def dribble():
    try:
        while time.monotonic() - t0 < 8:
            slow.sendall(b"s")
            time.sleep(0.3)
    except OSError:
        pass


def watch_close():
    slow.settimeout(10)
    try:
        while slow.recv(100):
            pass
    except OSError:
        pass
    closed_at[0] = time.monotonic() - t0


threading.Thread(target=dribble, daemon=True).start()
watcher = threading.Thread(target=watch_close)
watcher.start()
for i in range(10):
    st, h, body = get("/health")
    served.append(st)
    time.sleep(0.1)
watcher.join(12)
slow.close()
t.is_(served, [200] * 10, "while a slowloris client dribbles, others are served")
t.ok(closed_at[0] is not None and 1.5 <= closed_at[0] < 5,
     "  it is closed after http_request_timeout 2s (%s s)" % closed_at[0])
t.like(b.error_log(), r"\[info\] .*client timed out sending a request .*client: 127\.0\.0\.1:\d+",
       "  and logged at info with the client")

# --- the same endpoints on the gRPC client port

st, h, body = get("/health", addr=GRPC)
t.is_((st, body), (200, '{"health":"true","reason":""}'), "the gRPC port answers GET /health (HTTP/1.1)")
st, h, body = get("/version", addr=GRPC)
t.is_(json.loads(body)["etcdserver"], "3.5.17", "  and /version")
c = http.client.HTTPConnection(*GRPC, timeout=10)
answers = []
for path in ("/livez", "/readyz", "/metrics"):
    c.request("GET", path)
    r = c.getresponse()
    answers.append(r.status)
    r.read()
c.close()
t.is_(answers, [200, 200, 200], "  keep-alive there too")
r = bltest.etcdctl(b.endpoint, "put", "after-http", "1")
t.is_(r.rc, 0, "gRPC on that port goes on")

# --- metrics count the RPCs, over all workers


def scrape(addr=HTTP):
    st, h, body = get("/metrics", addr=addr)
    return bltest.parse_metrics(body)[0]


def value(m, name, **labels):
    want = frozenset(labels.items())
    return sum(v for (n, l), v in m.items() if n == name and want <= l)


KV = {"grpc_service": "etcdserverpb.KV", "grpc_type": "unary"}
before = scrape()
for i in range(5):
    t.is_(bltest.etcdctl(b.endpoint, "put", "m%d" % i, "v").rc, 0, "put %d" % i)
r = bltest.etcdctl(b.endpoint, "get", "m", "--prefix")
ch = grpc.insecure_channel(b.endpoint)
put = ch.unary_unary("/etcdserverpb.KV/Put", request_serializer=None, response_deserializer=None)
try:
    put(b"", timeout=5)      # no key: InvalidArgument
    code = "OK"
except grpc.RpcError as e:
    code = e.code().name
ch.close()
t.is_(code, "INVALID_ARGUMENT", "a Put without a key fails")
after = scrape()


def delta(name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


t.is_(delta("grpc_server_started_total", grpc_method="Put", **KV), 6,
      "grpc_server_started_total counts the 6 Puts")
t.is_(delta("grpc_server_handled_total", grpc_method="Put", grpc_code="OK", **KV), 5,
      "grpc_server_handled_total: 5 OK")
t.is_(delta("grpc_server_handled_total", grpc_method="Put", grpc_code="InvalidArgument", **KV), 1,
      "  and 1 InvalidArgument")
t.ok(delta("grpc_server_handled_total", grpc_method="Range", grpc_code="OK", **KV) >= 1,
     "  Range counted too")
t.is_(delta("grpc_server_handling_seconds_count", grpc_method="Put", **KV), 6,
      "grpc_server_handling_seconds_count: 6 Puts")
t.is_(value(after, "grpc_server_handling_seconds_bucket", grpc_method="Put", le="+Inf", **KV),
      value(after, "grpc_server_handling_seconds_count", grpc_method="Put", **KV),
      "  the +Inf bucket equals the count")
buckets = sorted((float(dict(l)["le"]), v) for (n, l), v in after.items()
                 if n == "grpc_server_handling_seconds_bucket"
                 and ("grpc_method", "Put") in l)
t.is_([le for le, v in buckets], [.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, float("inf")],
      "  grpc-go's buckets")
t.ok(all(buckets[i][1] <= buckets[i + 1][1] for i in range(len(buckets) - 1)),
     "  cumulative")
t.ok(value(after, "grpc_server_handling_seconds_sum", grpc_method="Put", **KV) > 0,
     "  and a sum of seconds")
t.is_(delta("grpc_server_msg_received_total", grpc_method="Put", **KV), 6,
      "grpc_server_msg_received_total: 6")
t.is_(delta("grpc_server_msg_sent_total", grpc_method="Put", **KV), 5,
      "grpc_server_msg_sent_total: 5 answers")
t.is_(delta("ballast_storage_writes_total"), 5, "ballast_storage_writes_total: 5 writes")
t.ok(delta("ballast_storage_round_trips_total") >= 6, "ballast_storage_round_trips_total grew")
t.ok(delta("ballast_storage_statements_total") >= 6, "ballast_storage_statements_total grew")
t.ok(delta("ballast_storage_write_batches_total") >= 1, "ballast_storage_write_batches_total grew")
t.is_(value(after, "ballast_workers"), 2, "ballast_workers: both workers are summed")

# every scrape, whichever worker answers it, says the same
seen = set()
for i in range(12):
    m = scrape(HTTP if i % 2 else GRPC)
    seen.add(value(m, "grpc_server_started_total", grpc_method="Put", **KV))
t.is_(seen, {value(after, "grpc_server_started_total", grpc_method="Put", **KV)},
      "12 scrapes on new connections (either worker, either port) agree")

s = socket.create_connection(GRPC, 5)
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
time.sleep(0.3)
m = scrape()
t.ok(value(m, "ballast_grpc_connections") >= 1, "ballast_grpc_connections sees an open connection")
t.ok(value(m, "ballast_http_connections") >= 1, "ballast_http_connections sees the scrape's")
s.close()

st, h, text = get("/metrics")
m, types, errors = bltest.parse_metrics(text)
t.is_(errors, [], "the exposition parses line by line")
t.is_(types.get("grpc_server_handling_seconds"), "histogram", "  with TYPE lines")
promtool = shutil.which("promtool")
if promtool is None:
    t.skip("promtool not installed (Debian package prometheus)")
else:
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    t.ok(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
         "promtool check metrics: no error, no lint")
    if r.returncode != 0 or r.stdout.strip() or r.stderr.strip():
        t.diag(r.stdout + r.stderr)

# totals survive a reload: the new workers add to the old slots
put_total = value(after, "grpc_server_started_total", grpc_method="Put", **KV)
old = set(b.worker_pids())
b.reload()
t.ok(bltest.wait_until(lambda: old.isdisjoint(b.worker_pids()) and len(b.worker_pids()) == 2, 20),
     "HUP: a new generation of workers")
t.is_(bltest.etcdctl(b.endpoint, "put", "after-reload", "1").rc, 0, "put after the reload")
m = scrape()
t.is_(value(m, "grpc_server_started_total", grpc_method="Put", **KV), put_total + 1,
      "grpc_server_started_total kept its total across the reload (+1)")
t.ok(value(m, "ballast_storage_writes_total") >= value(after, "ballast_storage_writes_total") + 1,
     "ballast_storage_writes_total too")
t.is_(value(m, "ballast_workers"), 2, "ballast_workers: the new two")

# --- the database goes away and comes back

pg.stop("fast")


def all_health(status, n=8):
    return all(get("/health")[0] == status for _ in range(n))


t.ok(bltest.wait_until(lambda: all_health(503), 20), "PostgreSQL stopped: /health is 503 on every worker")
st, h, body = get("/health")
t.is_((st, body), (503, '{"health":"false","reason":"storage unavailable"}\n'),
      "  with reason \"storage unavailable\"")
st, h, body = get("/readyz")
t.is_((st, body), (503, "[+]data_corruption ok\n"
                        "[-]serializable_read failed: etcdserver: storage unavailable\n"
                        "[-]linearizable_read failed: etcdserver: storage unavailable\n"
                        "[+]non_learner ok\n\n"),
      "  /readyz is 503 with [-] lines")
st, h, body = get("/readyz?exclude=serializable_read&exclude=linearizable_read")
t.is_(st, 200, "  /readyz excluding the reads is 200")
st, h, body = get("/livez")
t.is_((st, body), (200, "ok\n"), "  /livez stays 200: the process lives")
st, h, body = get("/health", addr=GRPC)
t.is_(st, 503, "  the gRPC port's /health says so too")
pg.start()
t.ok(bltest.wait_until(lambda: all_health(200), 30), "PostgreSQL back: /health is 200 again")
t.is_(get("/readyz")[0], 200, "  and /readyz")

b.stop()

# --- configuration errors

bt = bltest.Ballast(dsn=pg.dsn(), extra="http_listen 127.0.0.1:99999;")
r = subprocess.run([bt.bin, "-t", "-c", bt.conf_path], capture_output=True, text=True, timeout=30)
t.ok(r.returncode == 1 and re.search(r'invalid address "127\.0\.0\.1:99999" in "http_listen" in %s:\d+'
                                     % re.escape(bt.conf_path), r.stderr),
     "-t: a bad http_listen address fails with file:line")
bt.rewrite_conf(open(bt.conf_path).read().replace("http_listen 127.0.0.1:99999;",
                                                  "http_listen 127.0.0.1:{port};"))
r = subprocess.run([bt.bin, "-t", "-c", bt.conf_path], capture_output=True, text=True, timeout=30)
t.ok(r.returncode == 1 and "duplicate listen" in r.stderr, "-t: http_listen on the gRPC port fails")

t.done()
