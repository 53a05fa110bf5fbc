#!/usr/bin/python3
# conf/ballast.service: `make install` puts it (with the configured paths)
# in the systemd unit directory; systemd's own analyzer accepts it (and
# refuses Type=notify-reload on a systemd older than 253, which is why the
# unit says Type=notify); its sandbox scores well; and ballast runs, serves,
# reloads, passes -t and stops gracefully with nothing but the capabilities
# the unit's CapabilityBoundingSet= grants, under no_new_privs, with either
# storage.  (No systemd runs here to start the unit itself.)
import os, re, shutil, signal, subprocess, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import bltest

t = bltest.Tap()
root = bltest.repo_root()
builddir = os.environ.get("BALLAST_BUILDDIR") or os.path.join(root, "objs")
template = os.path.join(root, "conf", "ballast.service")
DEFAULT_SBIN = "/usr/local/ballast/sbin/ballast"


def unit_values(text):
    """{key: [values]} of the unit's assignments."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


text = open(template).read()
u = unit_values(text)
t.is_(u.get("Type"), ["notify"], "Type=notify")
t.ok(all(v.endswith('-g "daemon off;"') for v in u["ExecStart"] + u["ExecStartPre"]),
     "ExecStart and ExecStartPre say daemon off on the command line")
t.ok(" -t " in u["ExecStartPre"][0], "ExecStartPre tests the configuration")
t.is_(u.get("ExecReload", [""])[-1], "/bin/kill -HUP $MAINPID", "ExecReload sends HUP")
t.is_((u.get("KillSignal"), u.get("KillMode")), (["SIGQUIT"], ["mixed"]),
      "stop: QUIT to the master alone (graceful)")

# ------------------------------------------------------------ make install
dest = bltest._tempdir("destdir-")
r = subprocess.run(["make", "-s", "-C", root, "-f", os.path.join(builddir, "Makefile"),
                    "install", f"DESTDIR={dest}"], capture_output=True, text=True, timeout=600)
t.is_(r.returncode, 0, "make install DESTDIR=...")
if r.returncode != 0:
    t.diag(r.stdout[-2000:] + r.stderr[-2000:])
installed = [os.path.join(d, f) for d, _, fs in os.walk(dest) for f in fs
             if f == "ballast.service"]
generated = os.path.join(builddir, "ballast.service")
if os.path.exists(generated):
    t.is_(len(installed), 1, "installs ballast.service")
    if installed:
        t.like(os.path.dirname(installed[0])[len(dest):], r"/systemd/system$",
               "in a systemd unit directory (%s)" % os.path.dirname(installed[0])[len(dest):])
        inst = open(installed[0]).read()
        t.is_(inst, open(generated).read(), "the unit configure wrote")
        sbin = unit_values(inst)["ExecStart"][0].split()[0]
        t.ok(os.access(dest + sbin, os.X_OK), "its ExecStart is the installed binary (%s)" % sbin)
else:
    t.is_(installed, [], "configured --without-systemd-unit: no unit installed")

# ------------------------------------------------------ systemd-analyze
analyze = shutil.which("systemd-analyze")
if analyze is None:
    t.skip("systemd-analyze is not installed (Debian package systemd)", 4)
else:
    tmp = bltest._tempdir("unit-")
    bin_ = os.environ.get("BALLAST_BIN") or os.path.join(builddir, "ballast")

    def verify(body):
        path = os.path.join(tmp, "ballast.service")
        with open(path, "w") as f:
            f.write(body.replace(DEFAULT_SBIN, bin_))
        r = subprocess.run([analyze, "verify", "--man=no", path], capture_output=True,
                           text=True, timeout=60)
        return r.returncode, (r.stdout + r.stderr).strip()

    rc, out = verify(text)
    t.is_((rc, out), (0, ""), "systemd-analyze verify: no complaint")
    version = int(re.search(r"systemd (\d+)", subprocess.run(
        [analyze, "--version"], capture_output=True, text=True).stdout).group(1))
    if version < 253:
        rc, out = verify(text.replace("Type=notify\n", "Type=notify-reload\n"))
        t.like(out, r"(?i)failed to parse service type",
               "systemd %d rejects Type=notify-reload (hence Type=notify)" % version)
    else:
        t.skip("systemd %d has Type=notify-reload" % version)
    r = subprocess.run([analyze, "security", "--offline=true", "--no-pager",
                        os.path.join(tmp, "ballast.service")],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout + r.stderr)
    t.ok(m is not None, "systemd-analyze security --offline rates it")
    if m:
        t.ok(float(m.group(1)) <= 3.5, "exposure %s (<= 3.5: 'OK' or better)" % m.group(1))
    else:
        t.diag(r.stdout[-1500:] + r.stderr[-1500:])

# ----------------------- only the unit's capabilities, under no_new_privs
caps = u["CapabilityBoundingSet"][0].split()
bounding = "-all," + ",".join("+" + c[len("CAP_"):].lower() for c in caps)


def confined(b):
    """Run b's ballast through setpriv as the unit would confine it."""
    wrap = os.path.join(b.tmp, "confined.sh")
    with open(wrap, "w") as f:
        f.write("#!/bin/sh\nexec setpriv --bounding-set=%s --inh-caps=-all "
                "--no-new-privs -- %s \"$@\"\n" % (bounding, b.bin))
    os.chmod(wrap, 0o755)
    b.bin = wrap


if os.geteuid() != 0:
    t.skip("not root: the capability set only matters to a root master", 9)
else:
    pg = bltest.Postgres(fast=True)
    pg.start()
    b = bltest.Ballast(dsn=pg.dsn(), workers=2)
    confined(b)
    b.start()
    t.ok(True, "postgres storage, capabilities %s: starts and serves" % " ".join(caps))
    t.is_(bltest.etcdctl(b.endpoint, "put", "k", "v").rc, 0, "a put")
    old = set(b.worker_pids())
    b.reload()
    t.ok(bltest.wait_until(lambda: b.worker_pids() and not set(b.worker_pids()) & old, 30),
         "HUP: a new generation (the log file reopened, workers signalled)")
    r = subprocess.run([b.bin, "-t", "-c", b.conf_path], capture_output=True, text=True,
                       timeout=60)
    t.is_(r.returncode, 0, "-t with the log file owned by the workers' user")
    b.signal(signal.SIGQUIT)
    t.ok(bltest.wait_until(lambda: not bltest.pid_alive(b.master_pid), 40),
         "QUIT: a graceful stop")
    b.stop()
    t.is_(b.exit_status, 0, "exit status 0")

    e = bltest.Ballast(embedded=True, workers=1)
    confined(e)
    e.start(wait=False)
    e.wait_ready(timeout=90)
    t.is_(bltest.etcdctl(e.endpoint, "put", "k", "v").rc, 0,
          "embedded storage: initdb, start, serve")
    e.signal(signal.SIGQUIT)
    t.ok(bltest.wait_until(lambda: not bltest.pid_alive(e.master_pid), 60),
         "QUIT stops it and its PostgreSQL")
    e.stop()
    t.is_(e.exit_status, 0, "exit status 0")
t.done()
