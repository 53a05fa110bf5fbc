#!/usr/bin/python3
# TLS on the client port (`listen ... ssl`), with etcdctl and openssl as
# the clients: https with --cacert; mTLS (ssl_client_certificate +
# ssl_verify_client on|optional) refusing clients without a certificate
# or with one from another CA; a plaintext client on the TLS port; the
# protocol versions and TLS 1.2 ciphers; certificates re-read on HUP (new
# connections see the new one, a client of the old one goes on, a broken
# key file keeps the old configuration); `ballast -t` naming file:line
# for bad TLS settings, and never logging a key.
import os, re, shutil, socket, subprocess, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import grpc

t = bltest.Tap()

if shutil.which("openssl") is None:
    t.skip_all("no openssl command")

certs = bltest._tempdir("certs-")


def openssl(*args, input=None):
    return subprocess.run(["openssl"] + list(args), input=input, cwd=certs,
                          capture_output=True, text=True, timeout=60)


def must(*args):
    r = openssl(*args)
    if r.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), r.stderr))


def path(name):
    return os.path.join(certs, name)


def make_ca(name):
    must("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
         name + ".key", "-out", name + ".crt", "-days", "2",
         "-subj", "/CN=ballast test " + name)


def make_cert(name, ca, serial, server):
    must("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key",
         "-out", name + ".csr", "-subj", "/CN=" + name)
    with open(path(name + ".ext"), "w") as f:
        if server:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                    "extendedKeyUsage=serverAuth\n")
        else:
            f.write("extendedKeyUsage=clientAuth\n")
    must("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey",
         ca + ".key", "-set_serial", str(serial), "-out", name + ".crt",
         "-days", "2", "-extfile", name + ".ext")


make_ca("ca")
make_ca("otherca")
make_cert("server1", "ca", 0x1001, True)
make_cert("server2", "ca", 0x1002, True)
make_cert("client", "ca", 0x2001, False)
make_cert("stranger", "otherca", 0x3001, False)

# what ballast reads; replaced for the reload test
shutil.copy(path("server1.crt"), path("server.crt"))
shutil.copy(path("server1.key"), path("server.key"))
if bltest._is_root():
    for f in os.listdir(certs):
        os.chmod(path(f), 0o600)    # only the master (root) reads them

pg = bltest.Postgres(fast=True)
pg.start()

CONF = """daemon off;
worker_processes 2;
error_log {tmp}/error.log info;
pid {tmp}/ballast.pid;
%(user)s
listen 127.0.0.1:{port} ssl;
ssl_certificate %(crt)s;
ssl_certificate_key %(key)s;
%(extra)s
storage postgres {
    dsn "{dsn}";
    connections 2;
}
"""


def conf(extra="", crt=None, key=None):
    user = ""
    if bltest._is_root():
        user = "user nobody %s;" % bltest._nobody()[2]
    return CONF % {"user": user, "crt": crt or path("server.crt"),
                   "key": key or path("server.key"), "extra": extra}


def ctl(b, *args, cacert=True, cert=None, scheme="https"):
    opts = []
    if cacert:
        opts.append("--cacert=" + path("ca.crt"))
    if cert:
        opts += ["--cert=" + path(cert + ".crt"), "--key=" + path(cert + ".key")]
    return bltest.etcdctl("%s://%s" % (scheme, b.endpoint), *opts, *args)


def start(b, **kw):
    b.start(wait=False)
    if not bltest.wait_until(lambda: ctl(b, "get", "ready-probe", **kw).rc == 0, 30):
        raise RuntimeError("ballast over TLS not ready:\n" + bltest._tail(b.error_log_path))


def serial(b, *extra):
    """The serial of the certificate a new connection gets, or None."""
    r = subprocess.run("openssl s_client -connect %s -servername localhost %s "
                       "</dev/null 2>/dev/null | openssl x509 -noout -serial"
                       % (b.endpoint, " ".join(extra)), shell=True,
                       capture_output=True, text=True, errors="replace",
                       timeout=20)
    m = re.search(r"serial=(\w+)", r.stdout)
    return m.group(1) if m else None


def s_client_ok(b, *extra):
    """Did openssl s_client complete a handshake with these options?"""
    r = subprocess.run(["openssl", "s_client", "-connect", b.endpoint,
                        "-servername", "localhost", "-alpn", "h2"] + list(extra),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    out = r.stdout.decode(errors="replace")
    return r.returncode == 0 and "Cipher is (NONE)" not in out


def grpc_range(ch):
    fn = ch.unary_unary("/etcdserverpb.KV/Range", request_serializer=None,
                        response_deserializer=None)
    try:
        fn(b"\x0a\x01k", timeout=5)
        return "OK"
    except grpc.RpcError as e:
        return e.code().name


# --- https, server certificate only

b = bltest.Ballast(dsn=pg.dsn(), conf=conf())
start(b)
r = ctl(b, "put", "k", "over tls")
t.is_(r.rc, 0, "etcdctl --cacert https:// put")
r = ctl(b, "get", "k", "--print-value-only")
t.is_(r.out.strip(), "over tls", "  and get")
r = ctl(b, "get", "k", cacert=False)
t.ok(r.rc != 0, "without --cacert the server is not trusted")
r = ctl(b, "get", "k", scheme="http")
t.ok(r.rc != 0, "a plaintext (h2c) etcdctl on the TLS port is refused")
s = socket.create_connection(("127.0.0.1", b.port), 5)
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
s.settimeout(5)
try:
    closed = s.recv(100) is not None
except OSError:
    closed = True
s.close()
t.ok(closed, "a raw HTTP/2 preface gets the connection closed")
t.like(b.error_log(), r"\[info\] .*TLS handshake failed \(SSL: .*\), client: 127\.0\.0\.1:\d+",
       "the handshake failure is logged at info with the client and OpenSSL's reason")
t.is_(ctl(b, "get", "k", "--print-value-only").out.strip(), "over tls",
      "the server serves on")

t.is_(serial(b), "1001", "openssl s_client sees the certificate (serial 1001)")
t.ok(s_client_ok(b, "-tls1_2"), "TLSv1.2 is accepted")
t.ok(s_client_ok(b, "-tls1_3"), "TLSv1.3 is accepted")
t.ok(not s_client_ok(b, "-tls1_1"), "TLSv1.1 is refused")
t.ok(not s_client_ok(b, "-tls1_2", "-cipher", "AES128-GCM-SHA256"),
     "TLS 1.2 without ECDHE (AES128-GCM-SHA256) is refused")
t.ok(not s_client_ok(b, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA"),
     "TLS 1.2 without AEAD (ECDHE-RSA-AES128-SHA) is refused")
r = subprocess.run(["openssl", "s_client", "-connect", b.endpoint, "-alpn", "http/1.1"],
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
t.ok(r.returncode != 0 or b"no application protocol" in r.stdout + r.stderr,
     "ALPN without h2 is refused")

# a client of the old certificate, across a reload that changes it
with open(path("ca.crt"), "rb") as f:
    creds = grpc.ssl_channel_credentials(root_certificates=f.read())
old = grpc.secure_channel(b.endpoint, creds)
t.is_(grpc_range(old), "OK", "a gRPC client before the reload")

shutil.copy(path("server2.crt"), path("server.crt"))
shutil.copy(path("server2.key"), path("server.key"))
b.reload()
t.ok(bltest.wait_until(lambda: serial(b) == "1002", 20),
     "after HUP with a new certificate, new connections see it (serial 1002)")
t.is_(grpc_range(old), "OK", "the client from before the reload goes on")
t.is_(ctl(b, "get", "k", "--print-value-only").out.strip(), "over tls",
      "etcdctl works with the new certificate")

# a broken key on reload: the old configuration (and certificate) stays
with open(path("server.key"), "w") as f:
    f.write("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
b.allow_alerts()
b.reload()
t.ok(bltest.wait_until(lambda: "reconfiguration failed" in b.error_log(), 10),
     "HUP with a broken key: the reload fails")
t.like(b.error_log(), r"\[emerg\] .*cannot load certificate key \"%s\" .* in %s:\d+"
       % (re.escape(path("server.key")), re.escape(b.conf_path)),
       "  the error names the key file and conf file:line")
t.is_(serial(b), "1002", "  and the previous certificate keeps serving")
t.is_(grpc_range(old), "OK", "  as does the old client")
old.close()
shutil.copy(path("server2.key"), path("server.key"))
b.stop()

# --- mTLS: ssl_client_certificate, ssl_verify_client on

b = bltest.Ballast(dsn=pg.dsn(), conf=conf(
    "ssl_client_certificate %s;\nssl_verify_client on;" % path("ca.crt")))
start(b, cert="client")
t.is_(ctl(b, "put", "m", "mtls", cert="client").rc, 0,
      "mTLS: the client certificate of the CA is accepted")
r = ctl(b, "get", "m")
t.ok(r.rc != 0, "mTLS: a client without a certificate is refused")
r = ctl(b, "get", "m", cert="stranger")
t.ok(r.rc != 0, "mTLS: a certificate from another CA is refused")
log = b.error_log()
t.like(log, r"\[info\] .*TLS handshake failed \(SSL: .*peer did not return a certificate.*\), client: 127\.0\.0\.1",
       "  logged: no certificate")
t.like(log, r"\[info\] .*TLS handshake failed \(SSL: .*certificate verify failed.*\), client: 127\.0\.0\.1",
       "  logged: certificate verify failed")
t.is_(ctl(b, "get", "m", "--print-value-only", cert="client").out.strip(), "mtls",
      "mTLS: the server serves on")

# the default of ssl_verify_client with a client CA is on
b.rewrite_conf(conf("ssl_client_certificate %s;" % path("ca.crt")))
b.reload()
time.sleep(1)
t.ok(bltest.wait_until(lambda: ctl(b, "get", "m").rc != 0, 10),
     "a client CA without ssl_verify_client: verification is on")

b.rewrite_conf(conf("ssl_client_certificate %s;\nssl_verify_client optional;"
                    % path("ca.crt")))
b.reload()
t.ok(bltest.wait_until(lambda: ctl(b, "get", "m").rc == 0, 10),
     "ssl_verify_client optional: no certificate is accepted")
t.is_(ctl(b, "get", "m", "--print-value-only", cert="client").out.strip(), "mtls",
      "  the right certificate too")
t.ok(ctl(b, "get", "m", cert="stranger").rc != 0,
     "  a certificate from another CA is not")
b.stop()

# --- ballast -t on bad TLS settings: file:line, and no key material logged

bt = bltest.Ballast(dsn=pg.dsn(), conf=conf())


def test_conf(text):
    bt.rewrite_conf(text)
    r = subprocess.run([bt.bin, "-t", "-c", bt.conf_path], capture_output=True,
                       text=True, timeout=30)
    return r.returncode, r.stderr


def ok_d(cond, name, diag):
    if not t.ok(cond, name):
        t.diag(diag)


def line_of(text, needle):
    text = text.replace("{tmp}", bt.tmp)
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    return None


rc, err = test_conf(conf())
t.is_(rc, 0, "-t: the TLS configuration is ok")

text = conf(key=path("missing.key"))
rc, err = test_conf(text)
t.is_(rc, 1, "-t: a missing key file fails")
t.like(err, r"cannot load certificate key \"%s\".* in %s:%d"
       % (re.escape(path("missing.key")), re.escape(bt.conf_path),
          line_of(text, "ssl_certificate_key")),
       "  naming the key and the ssl_certificate_key line")

text = conf(key=path("server1.key"))
rc, err = test_conf(text)
t.is_(rc, 1, "-t: a key that does not match the certificate fails")
t.like(err, r"(key values mismatch|does not match certificate).* in %s:%d"
       % (re.escape(bt.conf_path), line_of(text, "ssl_certificate_key")),
       "  with file:line")

with open(path("server1.key")) as f:
    key_lines = [l for l in f.read().splitlines() if "-----" not in l]
text = conf(crt=path("server1.key"))
rc, err = test_conf(text)
t.is_(rc, 1, "-t: a key given as the certificate fails")
t.like(err, r"cannot load certificate \".*server1\.key\".* in %s:%d"
       % (re.escape(bt.conf_path), line_of(text, "ssl_certificate ")), "  with file:line")
t.ok(not any(l in err for l in key_lines), "  and not a line of the key is printed")

text = conf("ssl_client_certificate %s;" % path("nothere.crt"))
rc, err = test_conf(text)
t.is_(rc, 1, "-t: a missing client CA file fails")
t.like(err, r"nothere\.crt.* in %s:%d" % (re.escape(bt.conf_path),
       line_of(text, "ssl_client_certificate")), "  with file:line")

text = conf("ssl_verify_client on;")
rc, err = test_conf(text)
ok_d(rc == 1 and "no \"ssl_client_certificate\"" in err and
     "%s:%d" % (bt.conf_path, line_of(text, "ssl_verify_client")) in err,
     "-t: ssl_verify_client without a client CA fails with file:line", err)

text = conf("ssl_protocols TLSv1.1 TLSv1.2;")
rc, err = test_conf(text)
ok_d(rc == 1 and "unsupported protocol \"TLSv1.1\"" in err,
     "-t: ssl_protocols refuses TLSv1.1", err)

text = conf("ssl_ciphers NOSUCHCIPHER;")
rc, err = test_conf(text)
ok_d(rc == 1 and "invalid \"ssl_ciphers\"" in err and
     "%s:%d" % (bt.conf_path, line_of(text, "ssl_ciphers")) in err,
     "-t: an unknown cipher list fails with file:line", err)

text = conf().replace("ssl_certificate " + path("server.crt") + ";\n", "") \
             .replace("ssl_certificate_key " + path("server.key") + ";\n", "")
rc, err = test_conf(text)
ok_d(rc == 1 and "no \"ssl_certificate\"" in err and
     "%s:%d" % (bt.conf_path, line_of(text, "listen 127.0.0.1")) in err,
     "-t: listen ... ssl without a certificate fails with the listen's file:line", err)

t.done()
