#!/usr/bin/python3
# Every shipped configuration parses: `ballast -t` accepts conf/ballast.conf
# and each conf/examples/*.conf (globbed: a new example is checked without
# touching this file), with a prefix that holds the files they name
# (tls/server.crt, tls/server.key, tls/ca.crt, db.password, logs/, data/).
# systemd.conf also passes with the exact arguments of the unit's
# ExecStartPre, and would not if it set `daemon` itself.
import glob, os, re, shlex, subprocess, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest

t = bltest.Tap()
root = bltest.repo_root()
bin_ = os.environ.get("BALLAST_BIN") or os.path.join(root, "objs", "ballast")

prefix = bltest._tempdir("prefix-") + "/"
for d in ("logs", "data", "tls"):
    os.mkdir(os.path.join(prefix, d))
r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", "tls/server.key", "-out", "tls/server.crt", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   cwd=prefix, capture_output=True, text=True, timeout=60)
if r.returncode != 0:
    raise RuntimeError("openssl: " + r.stderr)
os.link(os.path.join(prefix, "tls/server.crt"), os.path.join(prefix, "tls/ca.crt"))
with open(os.path.join(prefix, "db.password"), "w") as f:
    f.write("not-a-real-password\n")
os.chmod(os.path.join(prefix, "db.password"), 0o600)


def test(path, *extra):
    return subprocess.run([bin_, "-t", "-p", prefix, "-c", path, *extra],
                          capture_output=True, text=True, timeout=60)


files = sorted(glob.glob(os.path.join(root, "conf", "examples", "*.conf")))
t.ok(len(files) >= 2, "conf/examples/ has examples (%d)" % len(files))
for path in [os.path.join(root, "conf", "ballast.conf")] + files:
    name = os.path.relpath(path, root)
    r = test(path)
    if not t.is_(r.returncode, 0, "ballast -t -c %s" % name):
        t.diag(r.stderr)
    t.like(r.stderr, r"test is successful", "  says the test is successful")

# the unit's ExecStartPre, with the paths of this test
unit = open(os.path.join(root, "conf", "ballast.service")).read()
pre = shlex.split(re.search(r"^ExecStartPre=(.*)$", unit, re.M).group(1))[1:]
example = os.path.join(root, "conf", "examples", "systemd.conf")
r = test(example, *pre)
if not t.is_(r.returncode, 0, "systemd.conf with the unit's ExecStartPre arguments (%s)"
             % " ".join(pre)):
    t.diag(r.stderr)
daemon = os.path.join(prefix, "daemon.conf")
with open(daemon, "w") as f:
    f.write(open(example).read() + "daemon on;\n")
r = test(daemon, *pre)
t.is_(r.returncode, 1, "the same with `daemon on;` in the file fails")
t.like(r.stderr, r'"daemon" directive is duplicate', "  \"daemon\" directive is duplicate")
t.done()
