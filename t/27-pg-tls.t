#!/usr/bin/python3
# TLS from ballast to PostgreSQL, all in libpq's own dsn keywords: a
# private PostgreSQL with ssl = on and a certificate from a test CA (SAN
# 127.0.0.1 and localhost, as verify-full needs), pg_hba allowing only
# hostssl.  ballast serves over sslmode=verify-full with scram-sha-256 and
# the password from password_file alone (it is in no log, no config, no
# process's command line or environment, and without password_file the
# login fails); with `cert` client authentication (the key owned by the
# workers' user, 0600); it refuses, saying why in its log, a server whose
# certificate is from another CA, a client key readable by others, one the
# workers cannot read (at start: a configuration error), and a server
# without TLS when sslmode=require.
import os, re, secrets, shutil, signal, subprocess, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest
import grpc

t = bltest.Tap()

if shutil.which("openssl") is None:
    t.skip_all("no openssl command")

certs = bltest._tempdir("certs-")
os.chmod(certs, 0o755)            # the workers (nobody) read the CA from here


def must(*args):
    r = subprocess.run(["openssl"] + list(args), cwd=certs, capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), r.stderr))


def path(name):
    return os.path.join(certs, name)


def make_ca(name):
    must("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key",
         "-out", name + ".crt", "-days", "2", "-subj", "/CN=ballast test " + name,
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def make_cert(name, cn, ca, serial, server):
    must("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key",
         "-out", name + ".csr", "-subj", "/CN=" + cn)
    with open(path(name + ".ext"), "w") as f:
        if server:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                    "extendedKeyUsage=serverAuth\n")
        else:
            f.write("extendedKeyUsage=clientAuth\n")
    must("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
         "-set_serial", str(serial), "-out", name + ".crt", "-days", "2",
         "-extfile", name + ".ext")
    os.chmod(path(name + ".crt"), 0o644)


def give(name, mode=0o600, to_nobody=True):
    """A key file as an operator would leave it: owned by whoever reads it."""
    os.chmod(path(name), mode)
    if to_nobody:
        bltest._give_to_nobody(path(name))


make_ca("ca")
make_ca("otherca")
for f in ("ca.crt", "otherca.crt"):
    os.chmod(path(f), 0o644)
make_cert("server", "localhost", "ca", 0x1001, True)
make_cert("client", "certuser", "ca", 0x2001, False)

# ------------------------------------------------------ the TLS server
pg = bltest.Postgres(fast=True)
for f in ("server.crt", "server.key", "ca.crt"):
    shutil.copy(path(f), os.path.join(pg.datadir, f))
    os.chmod(os.path.join(pg.datadir, f), 0o600)
    bltest._give_to_nobody(os.path.join(pg.datadir, f))
pg.configure(conf="listen_addresses = '127.0.0.1'\n"
                  "ssl = on\n"
                  "ssl_cert_file = 'server.crt'\n"
                  "ssl_key_file = 'server.key'\n"
                  "ssl_ca_file = 'ca.crt'\n"
                  "password_encryption = 'scram-sha-256'\n",
             hba="local all postgres trust\n"
                 "hostssl all ballast 127.0.0.1/32 scram-sha-256\n"
                 "hostssl all certuser 127.0.0.1/32 cert\n")
pg.start()
password = "pw-" + secrets.token_hex(12)
pg.psql("CREATE ROLE ballast LOGIN PASSWORD '%s';\n"
        "CREATE ROLE certuser LOGIN;\n" % password)
pg.psql("CREATE DATABASE ballast OWNER ballast;")
pg.psql("CREATE DATABASE certdb OWNER certuser;")

pwfile = os.path.join(bltest._tempdir("secret-"), "db.password")
with open(pwfile, "w") as f:
    f.write(password + "\n")
os.chmod(pwfile, 0o600)           # read by the master only (root, or us)

CONF = """daemon off;
worker_processes 2;
error_log {tmp}/error.log info;
pid {tmp}/ballast.pid;
%(user)s
listen 127.0.0.1:{port};
storage postgres {
    dsn "%(dsn)s";
    %(pw)s
    connections 2;
}
"""


def conf(dsn, pw=True):
    user = ""
    if bltest._is_root():
        user = "user nobody %s;" % bltest._nobody()[2]
    return CONF % {"user": user, "dsn": dsn,
                   "pw": ("password_file %s;" % pwfile) if pw else ""}


def tls_dsn(dbname, user, root="ca.crt", mode="verify-full", port=None, more=""):
    return ("host=127.0.0.1 port=%d dbname=%s user=%s sslmode=%s sslrootcert=%s%s"
            % (port or pg.port, dbname, user, mode, path(root), more))


def ballast(dsn, pw=True):
    return bltest.Ballast(conf=conf(dsn, pw))


def refused(b, pattern, what):
    """b does not serve and says why in its log within 20 s."""
    b.start(wait=False, env={"PGPASSWORD": None, "PGSSLMODE": None})
    said = bltest.wait_until(lambda: re.search(pattern, b.error_log()), 20)
    t.ok(said, "%s: the log says so" % what)
    if said:
        t.diag("  " + said.group(0))
    else:
        t.diag(bltest._tail(b.error_log_path, 10))
    r = bltest.etcdctl(b.endpoint, "put", "k", "v")
    t.ok(r.rc != 0, "%s: a put fails" % what)
    t.ok(bltest.pid_alive(b.master_pid), "%s: ballast keeps running (and retrying)" % what)
    b.stop()


def ssl_backends(user):
    """(ssl, client_dn) of the server backends of user (ballast's pool)."""
    out = pg.psql("SELECT s.ssl, coalesce(s.client_dn, '') FROM pg_stat_ssl s "
                  "JOIN pg_stat_activity a USING (pid) WHERE a.usename = '%s' "
                  "AND a.application_name LIKE 'ballast%%'" % user)
    return [tuple(l.split("|")) for l in out.splitlines() if l]


def family(b):
    """pids of the master and every descendant."""
    pids, grew = {b.master_pid}, True
    while grew:
        more = {p for q in pids for p in bltest.child_pids(q)} - pids
        pids |= more
        grew = bool(more)
    return pids


# ---------------------------------------- verify-full + scram-sha-256
b = ballast(tls_dsn("ballast", "ballast"))
b.start(env={"PGPASSWORD": None, "PGSSLMODE": None})
t.is_(bltest.etcdctl(b.endpoint, "put", "tls", "yes").rc, 0,
      "verify-full + scram-sha-256: put")
r = bltest.etcdctl(b.endpoint, "get", "tls", "--print-value-only")
t.is_(r.out.strip(), "yes", "and get")
backs = ssl_backends("ballast")
t.ok(len(backs) >= 2 and all(s == "t" for s, _ in backs),
     "every connection of ballast's pools is TLS (%d: %s)" % (len(backs), backs[:3]))

secret = password.encode()
logs = [os.path.join(b.tmp, f) for f in os.listdir(b.tmp) if f.endswith(".log")]
leaks = [f for f in logs if secret in open(f, "rb").read()]
t.is_(leaks, [], "the password is in no log file (%s)" % ", ".join(map(os.path.basename, logs)))
t.ok(secret not in open(b.conf_path, "rb").read(), "nor in the configuration")
procs = family(b)
shown = subprocess.run(["ps", "-ww", "-o", "args=", "-p", ",".join(map(str, procs))],
                       capture_output=True, timeout=10).stdout
t.ok(len(procs) >= 4 and secret not in shown,
     "nor in what ps shows of any of its %d processes" % len(procs))
env_leak = []
for p in procs:
    try:
        if secret in open("/proc/%d/environ" % p, "rb").read():
            env_leak.append(p)
    except OSError:
        pass
t.is_(env_leak, [], "nor in their environment")
b.stop()

b = ballast(tls_dsn("ballast", "ballast"), pw=False)
refused(b, r"postgres: could not connect.*(password|authentication)",
        "the same without password_file")

# --------------------------------------------- cert client authentication
give("client.key")               # the workers' user owns it, 0600
cert_dsn = tls_dsn("certdb", "certuser",
                   more=" sslcert=%s sslkey=%s" % (path("client.crt"), path("client.key")))
b = ballast(cert_dsn, pw=False)
b.start(env={"PGPASSWORD": None, "PGSSLMODE": None})
t.is_(bltest.etcdctl(b.endpoint, "put", "cert", "yes").rc, 0,
      "cert authentication (no password at all): put")
backs = ssl_backends("certuser")
t.ok(backs and all(s == "t" and "CN=certuser" in dn for s, dn in backs),
     "its connections are TLS with the client certificate (%s)" % backs[:1])
b.stop()

give("client.key", mode=0o644)           # a key copied carelessly
b = ballast(cert_dsn, pw=False)
refused(b, r"postgres: could not connect.*private key file \"[^\"]*client\.key\" has "
        r"group or world access", "a client key readable by others")
give("client.key")

if bltest._is_root():
    give("client.key", to_nobody=False)      # root's 0600 key: workers cannot
    os.chown(path("client.key"), 0, 0)
    b = ballast(cert_dsn, pw=False)
    b.allow_alerts()                         # "could not start, not respawning"
    b.start(wait=False, env={"PGPASSWORD": None, "PGSSLMODE": None})
    said = bltest.wait_until(lambda: re.search(
        r'\[emerg\].*the "sslkey" file "[^"]*client\.key" of "dsn" in \S+ cannot be '
        r'read by user "nobody".*Permission denied', b.error_log()), 20)
    t.ok(said, "a client key the workers' user cannot read: said once, clearly, at start")
    t.ok(bltest.wait_until(lambda: re.search(r"could not start, not respawning",
                                             b.error_log()), 10),
         "  and the workers do not start (a configuration error, not an outage)")
    t.ok(not re.search(r"could not load private key", b.error_log()),
         "  libpq never tried (its message for this case is garbled)")
    b.stop()
    give("client.key")
else:
    t.skip("not root: the workers run as ourselves", 3)

# ----------------------------------------------------------- a wrong CA
b = ballast(tls_dsn("ballast", "ballast", root="otherca.crt"))
refused(b, r"postgres: could not connect.*certificate verify failed",
        "sslrootcert of another CA")

# ---------------------------------------------------- a server without TLS
plain = bltest.Postgres(fast=True)
plain.configure(conf="listen_addresses = '127.0.0.1'\nssl = off\n",
                hba="local all postgres trust\nhost all all 127.0.0.1/32 trust\n")
plain.start()
b = ballast("host=127.0.0.1 port=%d dbname=postgres user=postgres sslmode=require"
            % plain.port, pw=False)
refused(b, r"postgres: could not connect.*server does not support SSL.*",
        "sslmode=require against a server without TLS")
b = ballast("host=127.0.0.1 port=%d dbname=postgres user=postgres sslmode=disable"
            % plain.port, pw=False)
b.start()
t.is_(bltest.etcdctl(b.endpoint, "put", "plain", "1").rc, 0,
      "(the same server serves ballast with sslmode=disable: the refusal was TLS's)")
b.stop()
t.done()
