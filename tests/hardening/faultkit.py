# SPDX-License-Identifier: GPL-2.0-or-later
"""A fake Debian system for the fault tests, and the jobs run on it.

``System`` builds a tree that ``systraq --root`` works on: accounts, the
shipped configuration and lists, files under /etc for the snapshot and
the contents job, a small dpkg database for the package check, homes and
a setuid file for the audit.  Every job runs as its own process, the way
cron or systemd starts it, so that a test can kill it, run two at once
or fill its disk.

Mail goes to a stand-in: the jobs run through RUNNER, which hands
mail.send the fake sendmail's path (systraq's own path,
/usr/sbin/sendmail, is the host's MTA, which a test must never feed).
Everything else is the code as installed: mail.send's checks, time
limit and exit status handling, the report's delivery and journal.  The
fake sendmail does what the file ``sendmail.mode`` says: ``ok`` (keep
the message, one file per message, written atomically), ``75`` or ``1``
(fail with that status), ``hang`` (sleep, for the time limit to end).
"""

import email
import email.policy
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PYTHON = "/usr/bin/python3"
ENV_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

# The jobs of the issue, as cron and systemd run them (watch --once is
# the watcher's start-up comparison and alert).
JOBS = {
    "snapshot-pub": ("snapshot", "--mode", "pub"),
    "snapshot-root": ("snapshot", "--mode", "root"),
    "contents": ("contents",),
    "packages": ("packages",),
    "audit": ("audit",),
    "report": ("report", "--full"),
    "check": ("check",),
    "watch": ("watch", "--once", "--force"),
}
# The jobs that mail.
MAILING = ("report", "check", "watch")

RUNNER = r"""
import os, sys
from systraq import delivery, mail, report
_send = mail.send
def send(message, sendmail=None, timeout=None):
    return _send(message, sendmail=os.environ["SYSTRAQ_TEST_SENDMAIL"],
                 timeout=float(os.environ.get("SYSTRAQ_TEST_MAIL_TIMEOUT", mail.TIMEOUT)))
mail.send = send
delivery._syslog = lambda priority, line: None
from systraq.cli import main
ready = os.environ.pop("SYSTRAQ_TEST_READY_FD", None)
if ready:
    os.write(int(ready), b".")
    os.close(int(ready))
# The job's progress, in audit events (sys.addaudithook: every open,
# rename, unlink, fork, subprocess, import...) of this process: counted
# into a file at the end, or SIGKILL to the whole job at the given one.
count_to = os.environ.pop("SYSTRAQ_TEST_COUNT_EVENTS", None)
kill_at = int(os.environ.pop("SYSTRAQ_TEST_KILL_AT_EVENT", "0"))
if count_to or kill_at:
    import signal
    me = os.getpid()
    seen = [0]
    def progress(event, args):
        if os.getpid() != me:
            return
        seen[0] += 1
        if seen[0] == kill_at:
            os.killpg(0, signal.SIGKILL)
    sys.addaudithook(progress)
    if count_to:
        import atexit
        atexit.register(lambda: open(count_to, "w").write(str(seen[0])))
sys.exit(main())
"""

SENDMAIL = r"""#!/bin/sh
# A sendmail stand-in for the hardening tests (see faultkit.py).
here=$(dirname "$0")
mode=$(cat "$here/sendmail.mode" 2>/dev/null || echo ok)
case "$mode" in
  ok)
    tmp="$here/mails/.tmp.$$"
    cat > "$tmp" || exit 74
    mv "$tmp" "$here/mails/$(date +%s%N).$$.eml"
    exit 0 ;;
  hang)
    # As a stuck MTA: the shell waits for a child that never ends.
    sleep 3600 &
    echo "$$ $!" >> "$here/sendmail.hung"
    wait
    exit 0 ;;
  *)
    cat > /dev/null
    echo "fake sendmail: failing with $mode" >&2
    exit "$mode" ;;
esac
"""

CONF = """\
[report]
mailto = root
mail_when = always
[watch]
enabled = yes
"""

SHADOW = """\
root:*:19000:0:99999:7:::
daemon:*:19000:0:99999:7:::
alice:$6$salt$hash:19000:0:99999:7:::
debian-systraq:!:19000:0:99999:7:::
"""
PASSWD = """\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/bash
debian-systraq:x:999:999::/var/lib/systraq:/usr/sbin/nologin
"""
GROUP = """\
root:x:0:
daemon:x:1:
alice:x:1000:
debian-systraq:x:999:
"""


def md5(data):
    return hashlib.md5(data).hexdigest()


class System:
    """A fake system below ``top``/root, with ``files`` files under
    /etc/bulk (snapshot, contents) and /usr/share/bulk (packages)."""

    def __init__(self, top, files=200):
        self.top = os.fspath(top)
        self.root = os.path.join(self.top, "root")
        self.mail_dir = os.path.join(self.top, "mail")
        self.sendmail = os.path.join(self.mail_dir, "sendmail")
        self.state = self.host("/var/lib/systraq")
        self.serial = 0
        os.makedirs(os.path.join(self.mail_dir, "mails"))
        with open(self.sendmail, "w") as handle:
            handle.write(SENDMAIL)
        os.chmod(self.sendmail, 0o755)
        self.mail_mode("ok")
        self.build(files)

    # --- the tree -------------------------------------------------------

    def host(self, logical):
        return self.root + logical

    def write(self, logical, data, mode=0o644):
        path = self.host(logical)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        os.chmod(path, mode)
        return path

    def build(self, files):
        etc = os.path.join(TOP, "etc")
        for name in os.listdir(etc):
            with open(os.path.join(etc, name), "rb") as handle:
                data = handle.read()
            if name == "snapshot_pub.list":
                data += b"/etc/bulk\n"
            self.write(f"/etc/systraq/{name}", data)
        self.write("/etc/systraq/systraq.conf", CONF)
        self.write("/etc/passwd", PASSWD)
        self.write("/etc/group", GROUP)
        self.write("/etc/shadow", SHADOW, 0o640)
        self.write("/etc/ssh/sshd_config", "PermitRootLogin no\n")
        self.write("/etc/ssh/ssh_host_ed25519_key", "secret\n", 0o600)
        self.write("/etc/cron.d/job", "* * * * * root true\n")
        self.write("/etc/profile", "umask 022\n")
        self.write("/home/alice/.profile", "umask 022\n")
        os.makedirs(self.host("/root"), mode=0o700, exist_ok=True)
        os.makedirs(self.state, mode=0o750, exist_ok=True)
        for n in range(files):
            self.write(f"/etc/bulk/{n // 100:03d}/file-{n:06d}.conf",
                       f"setting{n} = {'x' * (n % 300)}\n")
        self.write("/usr/bin/helper", "#!/bin/sh\n", 0o4755)
        # A dpkg database: one package owning the bulk files under /usr.
        self.write("/var/lib/dpkg/info/format", "1\n")
        self.write("/var/lib/dpkg/diversions", "")
        os.makedirs(self.host("/etc/dpkg/dpkg.cfg.d"), exist_ok=True)
        owned = {}
        for n in range(files):
            owned[f"/usr/share/bulk/{n // 100:03d}/data-{n:06d}"] = f"data {n}\n" * (1 + n % 50)
        owned["/usr/bin/helper"] = "#!/bin/sh\n"
        for path, data in owned.items():
            if path != "/usr/bin/helper":
                self.write(path, data)
        listed = set()
        for path in owned:
            parts = path.split("/")
            listed.update("/".join(parts[:n]) for n in range(2, len(parts) + 1))
        self.write("/var/lib/dpkg/info/bulk.list",
                   "".join(p + "\n" for p in ["/."] + sorted(listed)))
        self.write("/var/lib/dpkg/info/bulk.md5sums",
                   "".join(f"{md5(d.encode())}  {p[1:]}\n" for p, d in sorted(owned.items())))
        self.write("/var/lib/dpkg/status",
                   "Package: bulk\nStatus: install ok installed\nArchitecture: all\n"
                   "Version: 1.0\n")

    # --- running jobs ---------------------------------------------------

    def argv(self, job):
        return [PYTHON, "-c", RUNNER, "--root", self.root, *JOBS.get(job, (job,))]

    def env(self, mail_timeout=None):
        env = {"PATH": ENV_PATH, "LC_ALL": "C.UTF-8", "PYTHONPATH": TOP,
               "PYTHONDONTWRITEBYTECODE": "1", "SYSTRAQ_TEST_SENDMAIL": self.sendmail}
        if mail_timeout is not None:
            env["SYSTRAQ_TEST_MAIL_TIMEOUT"] = str(mail_timeout)
        return env

    def start(self, job, mail_timeout=None, ready=False, count_events=None, kill_at_event=None):
        """The job as a process; a new session, so that a kill reaches it
        and what it started (its workers, sendmail).  With ``ready``, this
        returns once the interpreter started and systraq is imported, when
        the job itself begins: a kill from then on lands inside it.
        ``count_events``: a file where the job writes, at its end, how
        many audit events it raised since then (its progress);
        ``kill_at_event``: the job kills itself and what it started with
        SIGKILL at that event, wherever the machine's speed put it."""
        env = self.env(mail_timeout)
        if count_events:
            env["SYSTRAQ_TEST_COUNT_EVENTS"] = count_events
        if kill_at_event:
            env["SYSTRAQ_TEST_KILL_AT_EVENT"] = str(kill_at_event)
        fds = ()
        if ready:
            read, write = os.pipe()
            env["SYSTRAQ_TEST_READY_FD"] = str(write)
            fds = (write,)
        proc = subprocess.Popen(self.argv(job), cwd=TOP, env=env, pass_fds=fds,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        if ready:
            os.close(write)
            os.read(read, 1)
            os.close(read)
        return proc

    def run(self, job, mail_timeout=None, timeout=600):
        """``(status, stdout, stderr)`` of one run of ``job``."""
        proc = self.start(job, mail_timeout)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise AssertionError(f"{job} did not finish within {timeout} s")
        return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def run_ok(self, job, allowed=(0, 1)):
        status, out, err = self.run(job)
        assert status in allowed, f"{job} exited {status}: {err}"
        assert_clean(err, job)
        return status, out, err

    def baseline(self):
        """A first run of every job, and a delivered report: what follows
        are changes."""
        for job in ("snapshot-root", "snapshot-pub", "contents", "packages", "audit"):
            self.run_ok(job)
        self.run_ok("report")

    # --- changes --------------------------------------------------------

    def change(self, job=None):
        """Make a change each job should report (or only ``job``'s), with
        a name nothing else has: returns the tags to look for in mail."""
        self.serial += 1
        tag = f"fault{self.serial:05d}"
        tags = []
        if job in (None, "snapshot-pub", "contents", "check", "watch", "report"):
            # Under /etc/bulk: the pub snapshot and the contents job.
            self.write(f"/etc/bulk/{tag}.conf", f"{tag} = on\n")
            tags.append(f"/etc/bulk/{tag}.conf")
            # A critical path, for the alerts.
            self.write(f"/etc/cron.d/{tag}", f"* * * * * root /bin/{tag}\n")
            tags.append(f"/etc/cron.d/{tag}")
        if job in (None, "snapshot-root", "check"):
            self.write(f"/etc/ssh/{tag}.key", "secret\n", 0o600)
            tags.append(f"/etc/ssh/{tag}.key")
        if job in (None, "audit"):
            self.write(f"/usr/local/bin/{tag}", "#!/bin/sh\n", 0o4755)
            tags.append(f"/usr/local/bin/{tag}")
        if job in (None, "packages"):
            path = f"/usr/share/bulk/000/data-{self.serial % 100:06d}"
            with open(self.host(path), "a") as handle:
                handle.write(f"{tag}\n")
        return tags

    # --- mail -----------------------------------------------------------

    def mail_mode(self, mode):
        """ok, 75, 1, hang, or absent (no sendmail at all)."""
        if mode == "absent":
            if os.path.exists(self.sendmail):
                os.rename(self.sendmail, self.sendmail + ".away")
            return
        if os.path.exists(self.sendmail + ".away"):
            os.rename(self.sendmail + ".away", self.sendmail)
        with open(os.path.join(self.mail_dir, "sendmail.mode"), "w") as handle:
            handle.write(mode + "\n")

    def mail_files(self):
        return sorted(glob.glob(os.path.join(self.mail_dir, "mails", "*.eml")))

    def mails(self, kind=None, exclude=()):
        """The subject and body of each mail delivered so far, oldest
        first, as one text; ``kind``: "alert" or "report" only;
        ``exclude``: files (of mail_files) to leave out."""
        out = []
        for path in self.mail_files():
            if path in exclude:
                continue
            with open(path, "rb") as handle:
                message = email.message_from_binary_file(handle, policy=email.policy.default)
            subject = str(message["Subject"])
            if kind is not None and (": alert:" in subject) != (kind == "alert"):
                continue
            out.append(subject + "\n\n" + message.get_content())
        return out

    def wait_for_strays(self, timeout=300):
        """Return once no process this system's jobs started is left:
        sendmail runs in a session of its own and outlives a job killed
        while handing it a message.  Such processes carry the job's
        environment (``SYSTRAQ_TEST_SENDMAIL`` names this system's
        stand-in), from the fork on, before sendmail is even executed:
        a state to wait for, not a delay."""
        marker = f"\0SYSTRAQ_TEST_SENDMAIL={self.sendmail}\0".encode()
        deadline = time.monotonic() + timeout
        while True:
            left = []
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or int(pid) == os.getpid():
                    continue
                try:
                    with open(f"/proc/{pid}/environ", "rb") as handle:
                        environ = b"\0" + handle.read()
                except OSError:
                    continue   # gone, or a zombie (whose environ reads empty)
                if marker in environ:
                    left.append(int(pid))
            if not left:
                return
            assert time.monotonic() < deadline, f"processes left behind: {left}"
            time.sleep(0.05)

    def hung(self):
        """Pids of fake sendmails that hung, still alive."""
        path = os.path.join(self.mail_dir, "sendmail.hung")
        try:
            pids = [int(p) for p in open(path).read().split()]
        except FileNotFoundError:
            return []
        return [p for p in pids if os.path.exists(f"/proc/{p}")]

    # --- state ----------------------------------------------------------

    def state_files(self):
        """{relative path: bytes} of every file in the state directory but
        the backups' copies and the locks."""
        out = {}
        for directory, dirs, names in os.walk(self.state):
            for name in names:
                path = os.path.join(directory, name)
                rel = os.path.relpath(path, self.state)
                if rel.startswith("filetraq/") or name.endswith(".lock"):
                    continue
                with open(path, "rb") as handle:
                    out[rel] = handle.read()
        return out

    def spool_records(self):
        """[(batch name, record)] of every batch, pending and delivered."""
        out = []
        for directory in ("spool", "spool/delivered"):
            for path in sorted(glob.glob(os.path.join(self.state, directory, "*.jsonl"))):
                with open(path, "rb") as handle:
                    for line in handle:
                        out.append((os.path.basename(path), json.loads(line)))
        return out

    def check_loads(self):
        """Every state file and spool batch loads: the states with the
        modules' own readers, each batch line as JSON."""
        from systraq import audit, contents, delivery, packages, report, snapshot, statefile
        from systraq.settings import Settings
        settings = Settings(root=self.root)
        for mode in ("pub", "root"):
            statefile.load(snapshot.state_path(settings, mode), snapshot.STATE_FORMAT)
            statefile.load(os.path.join(settings.mode_dir(mode), f"contents_{mode}.state".encode()),
                           contents.STATE_FORMAT)
        statefile.load(packages.state_path(settings), packages.STATE_FORMAT)
        statefile.load(audit.state_path(settings), audit.STATE_FORMAT)
        audit.current(settings)
        for path in (report.state_path(settings), report.alerts_path(settings),
                     delivery.journal_path(settings),
                     os.path.join(settings.state_dir, b"watch.state")):
            if os.path.exists(path):
                with open(path, "rb") as handle:
                    json.loads(handle.read().decode("utf-8"))
        self.spool_records()


def copy_of(template, top):
    """A copy of the System ``template`` in ``top`` (made), mails left
    behind: one baseline serves many tests."""
    os.makedirs(top, exist_ok=True)
    top = os.path.join(top, "copy")
    subprocess.run(["cp", "-a", template.top, top], check=True)
    system = System.__new__(System)
    system.__dict__.update(template.__dict__)
    system.top = top
    system.root = os.path.join(top, "root")
    system.mail_dir = os.path.join(top, "mail")
    system.sendmail = os.path.join(system.mail_dir, "sendmail")
    system.state = system.host("/var/lib/systraq")
    shutil.rmtree(os.path.join(system.mail_dir, "mails"))
    os.mkdir(os.path.join(system.mail_dir, "mails"))
    return system


def assert_clean(err, what=""):
    """No traceback, at most one line from systraq itself."""
    assert "Traceback" not in err, f"{what}: {err}"


def one_line(err, what=""):
    """The job's own stderr says what went wrong in one line."""
    assert_clean(err, what)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"{what}: not one line: {err!r}"
    return lines[0]


def count_in(mails, tag):
    """How many mails name ``tag`` (a change's path) among their changes."""
    pattern = re.compile(re.escape(tag) + r"(?![\w.-])")
    return sum(1 for body in mails if pattern.search(body))


def remove(top):
    shutil.rmtree(top, ignore_errors=True)


def wait_gone(pids, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in pids):
        time.sleep(0.05)
    return [p for p in pids if os.path.exists(f"/proc/{p}")]


__all__ = ["System", "JOBS", "MAILING", "assert_clean", "copy_of", "one_line", "count_in", "remove",
           "wait_gone"]
