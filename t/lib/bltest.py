"""bltest: the harness every ballast integration test (t/*.t) uses.

A test is a Python 3 script run by `prove -f t/*.t` from the repo root:

    #!/usr/bin/python3
    import os, sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
    import bltest

    t = bltest.Tap()
    pg = bltest.Postgres()
    pg.start()
    b = bltest.Ballast(dsn=pg.dsn())
    b.start()
    r = bltest.etcdctl(b.endpoint, "put", "k", "v")
    t.is_(r.rc, 0, "put works")
    t.done()

What the harness guarantees for everything it starts:
- servers listen on 127.0.0.1 (or on a unix socket only), on free ports picked
  by binding port 0;
- every process is tracked by pid and ended when the test ends, normally, by an
  uncaught exception, or by SIGINT/SIGTERM/SIGHUP: SIGTERM (or the server's own
  stop signal), then SIGKILL after a bounded wait, then SIGKILL for whatever is
  left of its process group and descendants.  Each server also gets a
  parent-death signal (SIGKILL), so even a SIGKILLed test leaves no server
  running (its temp dir stays, though);
- every wait is bounded in time;
- all files live under one base temp dir, removed at the end unless
  BALLAST_TEST_KEEP=1 is set (its path is then printed as a TAP diag line).

When the test runs as root, PostgreSQL (which refuses to run as root) runs as
`nobody`, and ballast is told `user nobody <its group>;`.

Only the standard library is used; `etcd3` is imported by etcd3_client() alone.
"""

import atexit
import collections
import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
PG_BINDIR = "/usr/lib/postgresql/15/bin"

_services = []           # Postgres/Etcd/Ballast objects, in creation order
_procs = []              # every _Proc started, in start order
_ports = set()           # ports already handed out by free_port()
_base = None             # base temp dir, created on first use
_tap = None              # the test's Tap (the latest one created)
_cleaning = False        # cleanup() in progress: signals are deferred
_pending_signal = None   # signal that arrived during cleanup()
_crashed = False         # an uncaught exception was reported


# ---------------------------------------------------------------- utilities

def repo_root():
    """The repository root: two levels above this file (t/lib/bltest.py)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    """A free TCP port on 127.0.0.1, found by binding port 0.

    Never returns the same port twice within one test, so callers may ask for
    several before starting anything.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports:
            _ports.add(port)
            return port
    raise RuntimeError("no free loopback port found")


def wait_until(fn, timeout, interval=0.05):
    """Call fn() until it returns something true or `timeout` seconds pass.

    Returns that true value, or the last (false) value on timeout; exceptions
    from fn propagate.  Use it as `t.ok(wait_until(...), name)`.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def pid_alive(pid):
    """True if process `pid` exists and is not a zombie."""
    return pid in _live_stats()


def child_pids(pid):
    """Live (non-zombie) processes whose parent is `pid`, read from /proc/*/stat."""
    return [p for p, st in _live_stats().items() if st.ppid == pid]


_Stat = collections.namedtuple("_Stat", "ppid pgrp start")


def _live_stats():
    """{pid: _Stat(ppid, pgrp, start time)} of every live (non-zombie) process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                s = f.read()
        except OSError:
            continue   # exited meanwhile
        fields = s[s.rindex(")") + 2:].split()   # the command name may hold ')' or spaces
        if fields[0] not in ("Z", "X"):
            out[int(name)] = _Stat(int(fields[1]), int(fields[2]), int(fields[19]))
    return out


def _cmdline(pid):
    """The process's command line (as shown by ps: NULs turned into spaces), or ''."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _tail(path, n=30):
    """The last n lines of a text file, or a note that it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return f"({path}: {e.strerror})\n"


def _start_failure(name, status, log_path):
    """Error text for a server that exited early or was not ready within 30 s."""
    what = "not ready within 30 s" if status is None else f"exited with status {status}"
    return f"{name} {what}; {log_path} (last 30 lines):\n{_tail(log_path)}"


def _env_without(prefix):
    """A copy of os.environ without the variables whose names start with prefix."""
    return {k: v for k, v in os.environ.items() if not k.startswith(prefix)}


# ------------------------------------------------------- users and temp dirs

def _is_root():
    return os.geteuid() == 0


def _nobody():
    """(uid, gid, group name) of `nobody`, the user servers run as under root."""
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid, grp.getgrgid(pw.pw_gid).gr_name


def _give_to_nobody(path):
    """When running as root, make `path` owned by nobody so servers can write it."""
    if _is_root():
        uid, gid, _ = _nobody()
        os.chown(path, uid, gid)


def _tempdir(prefix):
    """A new directory under the base temp dir (which is created on first use).

    The base is mode 0755 so that `nobody` can reach the directories in it.
    """
    global _base
    if _base is None:
        _base = tempfile.mkdtemp(prefix="bltest-")
        os.chmod(_base, 0o755)
    return tempfile.mkdtemp(prefix=prefix, dir=_base)


# ---------------------------------------------------------------- processes

def _setpriv(argv, as_nobody):
    """argv run under `setpriv --pdeathsig KILL` (killed if the test dies),
    as nobody when as_nobody is set and we are root.  setpriv execs argv,
    so the pid stays the program's own."""
    wrap = ["setpriv", "--pdeathsig", "KILL"]
    if as_nobody and _is_root():
        uid, gid, _ = _nobody()
        wrap += [f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    return wrap + ["--"] + argv


class _Proc:
    """One started server: its Popen, and how to end it and all its processes.

    The program runs under _setpriv() in a new session, so a Ctrl-C of the
    test reaches the test only, which then stops it in order; self.pid is the
    server's own pid and its process group id.
    """

    def __init__(self, argv, log_path, cwd, as_nobody=False, env=None):
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(_setpriv(argv, as_nobody), stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                          env=env, start_new_session=True)
        self.pid = self.popen.pid
        _procs.append(self)

    def alive(self):
        """True until the process has exited (and been reaped)."""
        return self.popen.poll() is None

    def wait(self, timeout):
        """Wait up to timeout seconds for exit; returns the exit status or None."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def end(self, sig=signal.SIGTERM, timeout=10, grace=0):
        """Send sig, wait up to timeout s, then SIGKILL; then sweep(grace).

        Returns (exit status, escalated, left): the status as Popen.returncode
        gives it (negative: killed by that signal); escalated is True when
        SIGKILL was needed; left is what sweep() had to kill.
        """
        before = self.family()   # taken first: orphans lose their ppid link
        escalated = False
        if self.alive():
            self._send(sig)
            if self.wait(timeout) is None:
                escalated = True
                self._send(signal.SIGKILL)
                self.wait(10)
        return self.popen.returncode, escalated, self.sweep(grace, before)

    def family(self, known=None):
        """{pid: start time} of the live processes that belong to this server.

        That is the server, the members of its process group, their
        descendants (PostgreSQL backends call setsid(), so the group alone
        misses them), and those of `known` (an earlier family()) that are still
        the same processes (same start time), even if orphaned since.
        """
        stats = _live_stats()
        fam = {p for p, st in stats.items() if st.pgrp == self.pid and p != self.pid}
        if self.alive():   # once reaped, self.pid may be reused by a stranger
            fam.add(self.pid)
        fam |= {p for p, start in (known or {}).items() if p in stats and stats[p].start == start}
        grew = True
        while grew:
            more = {p for p, st in stats.items() if st.ppid in fam} - fam
            fam |= more
            grew = bool(more)
        return {p: stats[p].start for p in fam}

    def sweep(self, grace=0, known=None):
        """Wait up to grace s for family(known) to be gone, then SIGKILL the rest.

        Returns {pid: command line} of those still there after the grace period.
        """
        wait_until(lambda: not self.family(known), grace)
        left = {pid: _cmdline(pid) for pid in self.family(known)}
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: not self.family(known), 5)
        return left

    def _send(self, sig):
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------- TAP

def _emit(line, stream):
    """Write one TAP line; a closed pipe (prove gone) must not stop cleanup."""
    try:
        stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass


class Tap:
    """TAP producer for one test file: numbered ok/not ok lines and a plan.

    Diagnostics go to stderr as `# ` lines, like Test::More's diag, so prove
    shows them even without -v.  The harness's own checks (alerts in
    error.log, a master killed by a signal, ...) are reported through the
    latest Tap created.
    """

    def __init__(self):
        global _tap
        self.count = 0
        self.failed = 0
        self.planned = None
        self.finished = False
        _tap = self

    def plan(self, n):
        """Announce n tests up front (optional: done() prints the plan otherwise)."""
        self.planned = n
        _emit(f"1..{n}", sys.stdout)

    def ok(self, cond, name=""):
        """One test: passes if cond is true.  Returns bool(cond)."""
        self.count += 1
        name = name.replace("\n", " ").replace("#", "\\#")
        _emit(f"{'ok' if cond else 'not ok'} {self.count}" + (f" - {name}" if name else ""),
              sys.stdout)
        if not cond:
            self.failed += 1
            where = _caller()
            if where:
                self.diag(f"  Failed test '{name}'\n  at {where}.")
        return bool(cond)

    def is_(self, got, expected, name=""):
        """Passes if got == expected; on failure shows both (repr) as diag lines."""
        if self.ok(got == expected, name):
            return True
        self.diag(f"         got: {got!r}\n    expected: {expected!r}")
        return False

    def like(self, text, regex, name=""):
        """Passes if re.search(regex, text) finds a match."""
        if self.ok(text is not None and re.search(regex, text) is not None, name):
            return True
        self.diag(f"    {text!r}\n    doesn't match {regex!r}")
        return False

    def diag(self, msg):
        """Print msg as `# ` lines on stderr."""
        for line in str(msg).splitlines() or [""]:
            _emit(f"# {line}", sys.stderr)

    def skip(self, reason, count=1):
        """Record `count` tests as skipped (`ok N # skip reason`)."""
        for _ in range(count):
            self.count += 1
            _emit(f"ok {self.count} # skip {reason}", sys.stdout)

    def skip_all(self, reason):
        """Skip the whole file (only before any test ran): `1..0 # SKIP reason`, exit 0."""
        self.finished = True
        cleanup()
        _emit(f"1..0 # SKIP {reason}", sys.stdout)
        sys.exit(0)

    def done(self):
        """Clean up (the harness's checks report here), print the plan if none
        was given, and exit: 1 if any test failed, else 0."""
        cleanup()
        self._finish()
        sys.stdout.flush()
        sys.stderr.flush()
        # grpc's background threads (python etcd3 watches) can crash the
        # interpreter's own shutdown; everything is cleaned up already
        os._exit(1 if self.failed else 0)

    def _finish(self):
        if not self.finished:
            self.finished = True
            if self.planned is None:
                _emit(f"1..{self.count}", sys.stdout)


def _current_tap():
    """The test's Tap, made on demand if the test crashed before creating one."""
    return _tap if _tap is not None else Tap()


def _fail(name, details=""):
    """Report a harness-detected problem as a failed test."""
    tap = _current_tap()
    tap.ok(False, name)
    if details:
        tap.diag(details)


def _caller():
    """'FILE line N' of the innermost stack frame outside this module, or ''
    (when the excepthook reports: its traceback says where)."""
    for frame in reversed(traceback.extract_stack()):
        if frame.filename != __file__:
            return f"{frame.filename} line {frame.lineno}"
    return ""


# ------------------------------------------------- exit, exceptions, signals

class Interrupted(BaseException):
    """Raised in the test when it gets SIGINT, SIGTERM or SIGHUP."""

    def __init__(self, signum):
        super().__init__(f"signal {signal.Signals(signum).name}")
        self.signum = signum


def _on_signal(signum, frame):
    global _pending_signal
    if _cleaning:
        _pending_signal = signum
        return
    raise Interrupted(signum)


def _excepthook(etype, value, tb):
    """An uncaught exception: `not ok - exception: ...` plus the traceback as diag.

    Cleanup follows from the atexit handler, and Python exits with status 1.
    """
    global _crashed
    _crashed = True
    tap = _current_tap()
    tap.ok(False, f"exception: {etype.__name__}: {value}".splitlines()[0])
    tap.diag("".join(traceback.format_exception(etype, value, tb)).rstrip())


def _at_exit():
    """Clean up; if the test ended without done(), say so and print the plan."""
    cleanup(at_exit=True)
    if _tap is not None and not _tap.finished:
        if not _crashed:
            _fail("test reached done()")
        _tap._finish()


def cleanup(at_exit=False):
    """Stop everything the test started and remove the base temp dir.

    Services are stopped newest first (ballast before the PostgreSQL it uses);
    ballast's stop() reports alerts in its error.log and a master killed by a
    signal as failed tests.  Then any tracked process still alive is killed.
    Idempotent; runs by itself at exit, and a test may call it to check that
    nothing is left.  A signal arriving meanwhile is acted on afterwards.
    """
    global _cleaning, _base, _pending_signal
    _cleaning = True
    try:
        while _services:
            svc = _services.pop()
            try:
                svc._cleanup()
            except Exception as e:   # keep cleaning up; report the failure
                _fail(f"cleanup of {type(svc).__name__} in {svc.tmp}", f"{type(e).__name__}: {e}")
        for p in _procs:
            p.end(signal.SIGKILL, 5)
        _procs.clear()
        if _base is not None:
            if os.environ.get("BALLAST_TEST_KEEP") == "1":
                _current_tap().diag(f"kept temp dir: {_base}")
            else:
                shutil.rmtree(_base, ignore_errors=True)
            _base = None
    finally:
        _cleaning = at_exit   # at exit, ignore signals from here on
    if _pending_signal is not None and not at_exit:
        signum, _pending_signal = _pending_signal, None
        raise Interrupted(signum)


sys.excepthook = _excepthook
atexit.register(_at_exit)
for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


# --------------------------------------------------------------- PostgreSQL

def _pg_bindir():
    """PostgreSQL 15's bin dir, else whatever `pg_config --bindir` says."""
    if os.path.isdir(PG_BINDIR):
        return PG_BINDIR
    return subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                          check=True, timeout=10).stdout.strip()


class Postgres:
    """A private PostgreSQL server for one test, reachable by unix socket only.

    The constructor runs initdb (trust auth, superuser `postgres`, locale C,
    UTF8); start()/stop()/kill() may then be used any number of times on the
    same data.  fsync and synchronous_commit stay on unless fast=True.
    Attributes: tmp, datadir, sockdir, port (only names the socket file),
    log_path, pid (the postmaster's, or None when not running).
    """

    def __init__(self, fast=False):
        self.bindir = _pg_bindir()
        self.tmp = _tempdir("pg-")
        _give_to_nobody(self.tmp)
        self.datadir = os.path.join(self.tmp, "data")
        self.sockdir = os.path.join(self.tmp, "sock")
        os.mkdir(self.sockdir)
        _give_to_nobody(self.sockdir)
        self.port = free_port()
        self.log_path = os.path.join(self.tmp, "postgres.log")
        self._proc = None
        _services.append(self)
        self._initdb(fast)

    def _bin(self, name):
        return os.path.join(self.bindir, name)

    def _initdb(self, fast):
        log = os.path.join(self.tmp, "initdb.log")
        argv = _setpriv([self._bin("initdb"), "-D", self.datadir, "-A", "trust", "-U", "postgres",
                         "--no-sync", "--locale=C", "-E", "UTF8"], as_nobody=True)
        with open(log, "wb") as f:
            rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                cwd=self.tmp, timeout=120).returncode
        if rc != 0:
            raise RuntimeError(f"initdb failed with status {rc}:\n{_tail(log)}")
        onoff = "off" if fast else "on"
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n# added by bltest\n"
                    "listen_addresses = ''\n"
                    f"unix_socket_directories = '{self.sockdir}'\n"
                    f"port = {self.port}\n"
                    "max_connections = 100\n"
                    "shared_buffers = 32MB\n"
                    f"fsync = {onoff}\n"
                    f"synchronous_commit = {onoff}\n")

    @property
    def pid(self):
        return self._proc.pid if self._proc is not None and self._proc.alive() else None

    def configure(self, conf="", hba=None):
        """Append conf to postgresql.conf (later lines win: e.g.
        "listen_addresses = '127.0.0.1'" adds TCP on self.port, or ssl
        settings); replace pg_hba.conf with hba if given (keep a `local`
        line for postgres: psql() and the readiness check use the socket).
        Takes effect at the next start()."""
        if conf:
            with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
                f.write("\n# added by the test\n" + conf + "\n")
        if hba is not None:
            with open(os.path.join(self.datadir, "pg_hba.conf"), "w") as f:
                f.write(hba)

    def start(self):
        """Start the postmaster; wait (max 30 s) until pg_isready says it accepts connections."""
        if self.pid is not None:
            raise RuntimeError("postgres already running")
        self._proc = _Proc([self._bin("postgres"), "-D", self.datadir], self.log_path,
                           cwd=self.tmp, as_nobody=True)
        if not wait_until(lambda: not self._proc.alive() or self._ready(), 30) or not self._proc.alive():
            status = self._proc.popen.returncode
            self._proc.end(signal.SIGKILL)
            raise RuntimeError(_start_failure("postgres", status, self.log_path))

    def _ready(self):
        argv = [self._bin("pg_isready"), "-q", "-h", self.sockdir, "-p", str(self.port),
                "-U", "postgres", "-d", "postgres", "-t", "2"]
        return subprocess.run(argv, stdin=subprocess.DEVNULL, timeout=10).returncode == 0

    def stop(self, mode="fast"):
        """Shut down in pg_ctl's mode (smart, fast, immediate); SIGKILL after 30 s."""
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        if self._proc is not None:
            self._proc.end(sig, 30)

    def kill(self):
        """Crash it: SIGKILL the postmaster, then give its orphaned backends up
        to 10 s to notice and exit (else SIGKILL them), so start() can follow."""
        if self._proc is not None:
            self._proc.end(signal.SIGKILL, 10, grace=10)

    def dsn(self, dbname="postgres"):
        """libpq conninfo for the server: `host=SOCKDIR port=PORT dbname=DB user=postgres`."""
        return f"host={self.sockdir} port={self.port} dbname={dbname} user=postgres"

    def psql(self, sql, dbname="postgres", timeout=30):
        """Run sql with `psql -XAt -v ON_ERROR_STOP=1`; return its stdout, raise on error."""
        argv = [self._bin("psql"), "-XAt", "-v", "ON_ERROR_STOP=1", "-d", self.dsn(dbname), "-f", "-"]
        r = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"psql failed with status {r.returncode}: {r.stderr.strip()}")
        return r.stdout

    def _cleanup(self):
        self.stop("fast")


# --------------------------------------------------------------------- etcd

class Etcd:
    """A real single-node etcd 3.4, for differential tests.

    args: more command-line flags (e.g. a progress notify interval).
    Attributes: tmp, endpoint ("127.0.0.1:PORT"), log_path, pid.
    """

    def __init__(self, args=()):
        self.args = list(args)
        self.tmp = _tempdir("etcd-")
        self.client_port = free_port()
        self.peer_port = free_port()
        self.endpoint = f"127.0.0.1:{self.client_port}"
        self.log_path = os.path.join(self.tmp, "etcd.log")
        self._proc = None
        _services.append(self)

    @property
    def pid(self):
        return self._proc.pid if self._proc is not None and self._proc.alive() else None

    def start(self):
        """Start etcd; wait (max 30 s) until `etcdctl endpoint health` succeeds."""
        if self.pid is not None:
            raise RuntimeError("etcd already running")
        client = f"http://{self.endpoint}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        argv = [ETCD, "--name", "default", "--data-dir", os.path.join(self.tmp, "data"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"default={peer}", *self.args]
        self._proc = _Proc(argv, self.log_path, cwd=self.tmp, env=_env_without("ETCD"))
        healthy = lambda: etcdctl(self.endpoint, "endpoint", "health").rc == 0
        if not wait_until(lambda: not self._proc.alive() or healthy(), 30) or not self._proc.alive():
            status = self._proc.popen.returncode
            self._proc.end(signal.SIGKILL)
            raise RuntimeError(_start_failure("etcd", status, self.log_path))

    def stop(self):
        """SIGTERM, SIGKILL after 10 s."""
        if self._proc is not None:
            self._proc.end(signal.SIGTERM, 10)

    def _cleanup(self):
        self.stop()


class EtcdctlResult:
    """Outcome of one etcdctl run: rc, out, err; json() parses `-w json` output."""

    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return f"EtcdctlResult(rc={self.rc}, out={self.out!r}, err={self.err!r})"


def etcdctl(endpoint, *args, input=None, timeout=10):
    """Run etcdctl (API 3) against endpoint with short dial/command timeouts.

    input, if given, is fed on stdin; a run longer than timeout seconds raises
    subprocess.TimeoutExpired (after killing etcdctl).
    """
    argv = [ETCDCTL, f"--endpoints={endpoint}", "--dial-timeout=2s", "--command-timeout=5s", *args]
    env = _env_without("ETCDCTL_")
    env["ETCDCTL_API"] = "3"
    stdin = subprocess.DEVNULL if input is None else None
    r = subprocess.run(argv, input=input, stdin=stdin, capture_output=True, text=True,
                       timeout=timeout, env=env)
    return EtcdctlResult(r.returncode, r.stdout, r.stderr)


def parse_metrics(text):
    """Prometheus text format: ({(name, frozenset(labels)): value},
    {name: type}, [format errors]), checking the format as it goes."""
    import re
    out, types, errors = {}, {}, []
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            if name in types:
                errors.append("TYPE twice: " + name)
            types[name] = typ
            continue
        m = line_re.match(line)
        if not m:
            errors.append("bad line: " + line)
            continue
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        try:
            out[(m.group(1), labels)] = float(m.group(4))
        except ValueError:
            errors.append("bad value: " + line)
    return out, types, errors


def etcd3_client(endpoint):
    """A python-etcd3 client for "HOST:PORT" (5 s timeout)."""
    import etcd3
    host, port = endpoint.rsplit(":", 1)
    return etcd3.client(host=host, port=int(port), timeout=5)


# ------------------------------------------------------------------ ballast

class Ballast:
    """Our server, objs/ballast (or $BALLAST_BIN), run in the foreground.

    The config is generated (postgres storage with dsn=, or embedded=True),
    with `extra` appended at main level; or `conf` is the full text, in which
    {tmp}, {port} and {dsn} are filled in (other braces are left alone) and
    which must say `daemon off;` and should keep `error_log {tmp}/error.log`.
    Attributes: tmp, port, endpoint ("127.0.0.1:PORT"), conf_path, bin,
    exit_status (of the last stop(); negative: killed by that signal).
    """

    def __init__(self, dsn=None, embedded=False, workers=2, extra="", conf=None):
        if conf is None and dsn is None and not embedded:
            raise ValueError("Ballast needs dsn=, embedded=True or conf=")
        self.tmp = _tempdir("ballast-")
        _give_to_nobody(self.tmp)
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.conf_path = os.path.join(self.tmp, "ballast.conf")
        self.bin = os.environ.get("BALLAST_BIN") or os.path.join(repo_root(), "objs", "ballast")
        self.dsn = dsn
        self.exit_status = None
        self._proc = None
        self._sent = set()            # signals the test sent via signal()
        self._alerts_allowed = False
        self._log_checked = 0         # error.log offset already checked for alerts
        if conf is None:
            conf = self._default_conf(embedded, workers, extra)
            if embedded:
                data = os.path.join(self.tmp, "data")
                os.mkdir(data)
                _give_to_nobody(data)
        self.rewrite_conf(conf)
        _services.append(self)

    def _default_conf(self, embedded, workers, extra):
        lines = ["daemon off;",
                 f"worker_processes {workers};",
                 "error_log {tmp}/error.log info;",
                 "pid {tmp}/ballast.pid;"]
        if _is_root():
            lines.append(f"user nobody {_nobody()[2]};")
        lines += ["name node1;", "listen 127.0.0.1:{port};"]
        if embedded:
            lines += ["storage embedded {", "    data_dir {tmp}/data;", "}"]
        else:
            lines += ["storage postgres {", '    dsn "{dsn}";', "    connections 2;", "}"]
        if extra:
            lines.append(extra)
        return "\n".join(lines) + "\n"

    def rewrite_conf(self, text):
        """(Re)write the config file from text, filling {tmp}, {port}, {dsn}."""
        if not re.search(r"(^|[;\s])daemon\s+off\s*;", text):
            raise ValueError("ballast config must contain 'daemon off;'")
        text = text.replace("{tmp}", self.tmp).replace("{port}", str(self.port))
        text = text.replace("{dsn}", self.dsn or "")
        with open(self.conf_path, "w") as f:
            f.write(text)

    @property
    def master_pid(self):
        return self._proc.pid if self._proc is not None else None

    @property
    def error_log_path(self):
        return os.path.join(self.tmp, "error.log")

    def error_log(self):
        """The whole error.log as text ('' if it does not exist yet)."""
        try:
            with open(self.error_log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def start(self, wait=True, env=None):
        """Run `ballast -c CONF`; with wait, wait_ready().  env: variables
        to add to (value None: remove from) ballast's environment."""
        if self._proc is not None and self._proc.alive():
            raise RuntimeError("ballast already running")
        if not os.access(self.bin, os.X_OK):
            raise RuntimeError(f"{self.bin} is missing or not executable (not built?)")
        self._sent = set()
        self.exit_status = None
        penv = None
        if env:
            penv = dict(os.environ)
            for k, v in env.items():
                if v is None:
                    penv.pop(k, None)
                else:
                    penv[k] = v
        self._proc = _Proc([self.bin, "-c", self.conf_path],
                           os.path.join(self.tmp, "stderr.log"), cwd=self.tmp, env=penv)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=30):
        """Wait until the port accepts TCP and `etcdctl get` of a dummy key
        exits 0.  Raises with the last 30 lines of error.log (and the
        master's stderr) if that does not happen within timeout seconds or
        the master exits."""
        if not wait_until(lambda: not self._proc.alive() or self._ready(), timeout) \
                or not self._proc.alive():
            status = self._proc.popen.returncode
            what = (f"not ready within {timeout} s" if status is None
                    else f"master exited with status {status} before it was ready")
            raise RuntimeError(
                f"ballast {what}\n"
                f"--- {self.error_log_path} (last 30 lines)\n{_tail(self.error_log_path)}"
                f"--- stderr\n{_tail(os.path.join(self.tmp, 'stderr.log'))}")

    def _ready(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        try:
            return etcdctl(self.endpoint, "get", "bltest-ready-probe").rc == 0
        except subprocess.TimeoutExpired:
            return False

    def worker_pids(self):
        """Pids of the master's children titled 'ballast: worker process'."""
        if self.master_pid is None:
            return []
        return [p for p in child_pids(self.master_pid) if "worker process" in _cmdline(p)]

    def signal(self, sig):
        """Send sig to the master (remembered: a SIGKILL sent here is no failure)."""
        if self.master_pid is None:
            raise RuntimeError("ballast is not running")
        self._sent.add(sig)
        os.kill(self.master_pid, sig)

    def reload(self):
        """SIGHUP to the master: re-read the config."""
        self.signal(signal.SIGHUP)

    def allow_alerts(self):
        """Do not report [alert]/[emerg] lines in error.log as a failure."""
        self._alerts_allowed = True

    def stop(self):
        """SIGTERM the master, SIGKILL after 10 s; return its exit status.

        Reports failed tests when: SIGKILL was needed; the master died of a
        signal (other than a SIGKILL the test sent); any of its processes
        (workers, ...) was still there 5 s after it exited; error.log got
        [alert] or [emerg] lines since the last check.
        """
        if self._proc is None:
            return None
        proc, self._proc = self._proc, None
        killed_by_test = signal.SIGKILL in self._sent and proc.wait(5) == -signal.SIGKILL
        rc, escalated, left = proc.end(signal.SIGTERM, 10, grace=0 if killed_by_test else 5)
        if escalated:
            _fail("ballast master exits within 10 s of SIGTERM", f"tmp: {self.tmp}")
        elif rc is not None and rc < 0 and not killed_by_test:
            _fail("ballast master was not killed by a signal",
                  f"it died of {signal.Signals(-rc).name}; tmp: {self.tmp}\n"
                  f"--- error.log (last 30 lines)\n{_tail(self.error_log_path)}")
        if left and not killed_by_test:
            _fail("no ballast process left after the master exited",
                  "left: " + ", ".join(f"{pid} ({cmd})" for pid, cmd in left.items()))
        self._check_alerts()
        self.exit_status = rc
        return rc

    def _check_alerts(self):
        try:
            with open(self.error_log_path, "rb") as f:
                f.seek(self._log_checked)
                new = f.read()
        except FileNotFoundError:
            return
        self._log_checked += len(new)
        bad = [l for l in new.decode("utf-8", "replace").splitlines()
               if "[alert]" in l or "[emerg]" in l]
        if bad and not self._alerts_allowed:
            _fail("no alerts in error log", "\n".join([self.error_log_path] + bad[:20]))

    def _cleanup(self):
        self.stop()
