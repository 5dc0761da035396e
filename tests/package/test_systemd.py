# SPDX-License-Identifier: GPL-2.0-or-later
"""The schedule: /etc/cron.d/systraq and the systemd timers and services,
in a fresh chroot of the release under test with systemd and exim4 delivering to the
mailbox of an ordinary user.

The tests run in file order on one chroot.  First, not booted (so
without /run/systemd/system, as on a system without systemd), each cron
line is run as cron runs it.  Then the chroot is booted with
systemd-nspawn; the timers are found active, the services they start
are started, and their mail is read from the mailbox: the report goes
through exim's setuid sendmail from a hardened unit running as
debian-systraq, and a drop-in adding NoNewPrivileges=yes shows that the
hardening must leave that path open.  Every wait is bounded, and the
container is stopped whatever happens.
"""

import os
import re
import shlex
import signal
import subprocess
import time

import pytest

from tests.package.conftest import (after_dpkg, mailbox, set_option, wait_for_first_baseline,
                                    wait_for_mail)

USER = "debian-systraq"
ADMIN = "admin"
CRON = "/etc/cron.d/systraq"
UNIT_DIR = "/lib/systemd/system"
# Each timer and the service it starts; the daily checks have no timer,
# the report's service pulls them in.
TIMERS = {"systraq-contents.timer": "systraq-contents.service",
          "systraq-check.timer": "systraq-check.service",
          "systraq-report.timer": "systraq-report.service"}
DAILY = ("systraq-audit.service", "systraq-packages.service", "systraq-archive.service")
# The root half of the hourly check, pulled in by systraq-check.service.
CHECK_ROOT = "systraq-check-root.service"
# The first baseline, started by the postinst without waiting for it.
BASELINE = "systraq-baseline.service"
# The realtime watcher: a daemon, enabled, that its condition skips while
# [watch] enabled = no.
WATCH = "systraq-watch.service"
UNITS = sorted([*TIMERS, *TIMERS.values(), *DAILY, CHECK_ROOT, WATCH, BASELINE])
# What cron gives a job (Debian's cron: PATH, SHELL, HOME and LOGNAME).
CRON_PATH = "/usr/bin:/bin"
# What each cron line puts before systraq.
GENTLE = "nice -n 10 ionice -t -c 2 -n 7 "
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
BOOT_TIMEOUT = 120
COMMAND_TIMEOUT = 300


# --- mail -------------------------------------------------------------------------

def body(message):
    return message.get_content()


# --- the chroot, not booted -------------------------------------------------------

def cron_jobs(chroot):
    """(minute, hour, user, command) of each line of the cron file."""
    jobs = []
    for line in chroot.read(CRON).decode().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(None, 6)
        assert len(fields) == 7, f"not a cron.d job line: {line!r}"
        jobs.append((fields[0], fields[1], fields[5], fields[6]))
    return jobs


def job(chroot, word):
    """The cron line whose command runs ``systraq WORD``."""
    (found,) = [j for j in cron_jobs(chroot) if f"/usr/sbin/systraq {word}" in j[3]]
    return found


def run_as_cron(chroot, user, command):
    """``command`` as cron runs it: ``sh -c`` as ``user`` in its home, with
    cron's environment, no terminal, and a network namespace of its own
    (so the report sees only the sockets this test opens)."""
    home = chroot.run(f"getent passwd {user}").stdout.split(":")[5]
    wrapped = (f"cd {shlex.quote(home)} && exec env -i PATH={CRON_PATH} SHELL=/bin/sh "
               f"HOME={shlex.quote(home)} LOGNAME={user} /bin/sh -c {shlex.quote(command)}")
    return chroot.run(wrapped, user=None if user == "root" else user, check=False,
                      net=True)


def state_listing(chroot):
    """Every path below /var/lib/systraq with its modification time and
    owner: a job that ran has written or touched its state."""
    out = chroot.run("find /var/lib/systraq -printf '%p %T@ %u\\n'").stdout
    return set(out.splitlines())


def test_installed_with_systemd_and_exim4(chroot, deb):
    chroot.copy_in(deb, "/tmp/systraq.deb")
    chroot.apt_install("/tmp/systraq.deb", "systemd", "systemd-sysv", "exim4-daemon-light")
    wait_for_first_baseline(chroot)
    # dpkg.log has whole seconds: a change in the second of dpkg's last
    # line is taken for the run's (systraq(8), CAVEATS).  The admin's
    # account is added afterwards, as an admin would, and alerted.
    after_dpkg(chroot)
    chroot.run(f"useradd -m -s /bin/bash {ADMIN}")
    # Mail to an ordinary user (exim delivers nothing to root until an
    # alias says where root's mail goes); the fill level is the host's
    # disk, which a test must not depend on.
    conf = chroot.read("/etc/systraq/systraq.conf").decode()
    conf = set_option(conf, "report", "mailto", ADMIN)
    conf = set_option(conf, "report", "fill_warning", "100")
    chroot.write("/etc/systraq/systraq.conf", conf)

    assert chroot.run(f"stat -c '%U:%G %a' {CRON}").stdout.strip() == "root:root 644"
    assert CRON in chroot.run("dpkg-query --showformat='${Conffiles}' -W systraq").stdout
    for unit in UNITS:
        assert chroot.exists(f"{UNIT_DIR}/{unit}"), unit
    # The timers are enabled by the postinst; of the services only the
    # watcher is (its condition decides whether it runs).
    wants = sorted(os.listdir(chroot.host("/etc/systemd/system/timers.target.wants")))
    assert set(TIMERS) <= set(wants), wants
    enabled = chroot.run("find /etc/systemd/system -name 'systraq-*.service'").stdout
    assert enabled == f"/etc/systemd/system/multi-user.target.wants/{WATCH}\n"
    # The maintainer scripts start, restart or enable timers only: a
    # service is at most stopped (before an upgrade replaces its code);
    # the postinst starts the first baseline itself, without waiting.
    for script in ("preinst", "postinst", "prerm", "postrm"):
        path = f"/var/lib/dpkg/info/systraq.{script}"
        if not chroot.exists(path):
            continue
        for line in chroot.read(path).decode().splitlines():
            if "deb-systemd-invoke" in line or "deb-systemd-helper" in line:
                if ".service" in line and WATCH not in line:
                    assert "deb-systemd-invoke stop" in line, f"{script}: {line.strip()}"


def test_every_unit_passes_systemd_analyze_verify(chroot):
    paths = " ".join(f"{UNIT_DIR}/{unit}" for unit in UNITS)
    # A minbase system has no man(1) to look Documentation= up with: the
    # page it names is checked here instead.
    assert chroot.exists("/usr/share/man/man8/systraq.8.gz")
    result = chroot.run(f"systemd-analyze verify --man=no {paths}", check=False)
    assert result.returncode == 0 and result.stdout + result.stderr == "", \
        result.stdout + result.stderr


def test_cron_file_gives_each_job_its_user_and_its_own_minute(chroot):
    jobs = cron_jobs(chroot)
    assert len(jobs) == 3
    contents, check, daily = job(chroot, "contents"), job(chroot, "check"), job(chroot, "audit")
    assert contents[:3] == ("20,50", "*", USER)
    assert check[:3] == ("5", "*", "root")
    assert daily[2] == "root" and daily[1].isdigit()
    # No two jobs start at the same minute.
    minutes = [int(m) for j in jobs for m in j[0].split(",")]
    assert len(minutes) == len(set(minutes)), minutes
    # The daily report follows the audit, the packages check and the
    # local sums, each run whatever the one before it did.
    command = daily[3]
    assert (command.index("systraq audit;") < command.index("systraq packages;")
            < command.index("systraq localsums;") < command.index("systraq report"))
    # Every job as gently as its unit (Nice=10, best-effort I/O at 7).
    for _m, _h, _u, command in jobs:
        runs = len(re.findall(r"/usr/sbin/systraq [a-z]", command))
        gentle = len(re.findall(re.escape(GENTLE) + r"/usr/sbin/systraq [a-z]", command))
        assert runs and gentle == runs, command


@pytest.mark.parametrize("absent", ["systemd running", "systraq removed"])
def test_cron_lines_do_nothing_under_systemd_or_without_systraq(chroot, absent):
    if absent == "systemd running":
        chroot.run("mkdir -p /run/systemd/system")
        undo = "rmdir /run/systemd/system"
    else:
        chroot.run("mv /usr/sbin/systraq /usr/sbin/systraq.away")
        undo = "mv /usr/sbin/systraq.away /usr/sbin/systraq"
    try:
        before = state_listing(chroot)
        for _minute, _hour, user, command in cron_jobs(chroot):
            result = run_as_cron(chroot, user, command)
            assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), command
        assert state_listing(chroot) == before
        assert mailbox(chroot) == []
    finally:
        chroot.run(undo)


def test_cron_lines_run_their_jobs_silently(chroot):
    before = state_listing(chroot)
    # The installation made the baselines; the runs since find the
    # test's own edit of systraq.conf (exit status 1), silently.
    _m, _h, user, command = job(chroot, "contents")
    result = run_as_cron(chroot, user, command)
    assert result.returncode in (0, 1) and (result.stdout, result.stderr) == ("", "")
    added = state_listing(chroot) - before
    assert any("/var/lib/systraq/filetraq/etc/" in line for line in added), added
    assert all(line.endswith(f" {USER}") for line in added), added

    before = state_listing(chroot)
    _m, _h, user, command = job(chroot, "check")
    result = run_as_cron(chroot, user, command)
    assert result.returncode in (0, 1) and (result.stdout, result.stderr) == ("", "")
    added = state_listing(chroot) - before
    assert any(line.startswith("/var/lib/systraq/root/") and line.endswith(" root")
               for line in added), added

    before = state_listing(chroot)
    # A local part of the report says at which priorities it runs.
    chroot.write("/etc/systraq/systraq.d/ZZ-priority",
                 "#!/bin/sh\n{ nice; ionice -p $$; } > /tmp/priority\n", mode=0o755)
    _m, _h, user, command = job(chroot, "audit")
    result = run_as_cron(chroot, user, command)
    chroot.run("rm /etc/systraq/systraq.d/ZZ-priority")
    assert chroot.read("/tmp/priority").decode() == "10\nbest-effort: prio 7\n"
    # The first report goes out whatever it says.
    assert result.returncode in (0, 1) and (result.stdout, result.stderr) == ("", "")
    added = state_listing(chroot) - before
    assert added, "audit and packages keep state"
    # The hourly line before alerted what the test changed since the
    # installation's baseline (the admin account, systraq.conf); the
    # daily line mails the first report.
    alert, report = wait_for_mail(chroot, 2)
    assert "alert:" in alert["Subject"] and "/etc/passwd" in body(alert)
    assert report["From"].addresses[0].username == USER
    assert "1. Warnings\n" in body(report)

    # A new account: the hourly line mails an alert at once.
    chroot.run("useradd -s /bin/sh mallory")
    _m, _h, user, command = job(chroot, "check")
    result = run_as_cron(chroot, user, command)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "")
    alert = wait_for_mail(chroot, 3)[-1]
    assert "alert:" in alert["Subject"] and "/etc/passwd" in body(alert)


# --- the chroot, booted -----------------------------------------------------------

class Container:
    """The chroot booted with systemd-nspawn; commands run in it through
    nsenter into the namespaces of its init."""

    def __init__(self, chroot, log):
        self.chroot = chroot
        self.log = open(log, "wb")
        # A network of its own (loopback only): exim's daemon in there
        # must not meet the host's port 25.
        self.nspawn = subprocess.Popen(
            ["systemd-nspawn", "-q", "--register=no", "--keep-unit", "--private-network",
             "--console=passive", "-D", chroot.path, "-b"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.leader = None

    def start(self):
        deadline = time.monotonic() + BOOT_TIMEOUT
        while self.leader is None:
            assert self.nspawn.poll() is None, f"systemd-nspawn exited: {self.boot_log()}"
            assert time.monotonic() < deadline, "no init in the container"
            self.leader = self._init_pid()
            time.sleep(0.2)
        state = self.run("systemctl is-system-running --wait", check=False,
                         timeout=BOOT_TIMEOUT).stdout.strip()
        assert state in ("running", "degraded"), (state, self.boot_log())

    def _init_pid(self):
        """The container's init: the child of systemd-nspawn running systemd."""
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    stat = handle.read()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            if ppid == self.nspawn.pid and comm == "systemd":
                return int(entry)
        return None

    def boot_log(self):
        self.log.flush()
        with open(self.log.name, "rb") as handle:
            return handle.read()[-3000:].decode("utf-8", "replace")

    def run(self, command, check=True, timeout=COMMAND_TIMEOUT):
        result = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", "env", "-i", f"PATH={PATH}",
             "LC_ALL=C.UTF-8", "/bin/sh", "-c", command],
            capture_output=True, text=True, errors="backslashreplace", timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"in container: {command!r} exited {result.returncode}\n"
                                 f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def mail_log(self):
        """What the MTA and the systraq units said, for a failure message."""
        return self.run("exim4 -bp; tail -n 20 /var/log/exim4/mainlog; "
                        "journalctl -o cat --no-pager -u 'systraq-*' | tail -n 40",
                        check=False).stdout

    def show(self, unit, *properties):
        out = self.run(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines())

    def stop(self):
        """Power the container off (SIGTERM asks systemd-nspawn to), or
        kill its init, which ends every process in its namespace."""
        if self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)
            try:
                self.nspawn.wait(60)
            except subprocess.TimeoutExpired:
                if self.leader:
                    try:
                        os.kill(self.leader, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.nspawn.kill()
                self.nspawn.wait(30)
        self.log.close()


@pytest.fixture(scope="module")
def booted(chroot):
    container = Container(chroot, os.path.join(os.path.dirname(chroot.path), "boot.log"))
    try:
        container.start()
        yield container
    finally:
        container.stop()
        # systemd-nspawn mounts in a namespace of its own: nothing of the
        # container may stay mounted on the host.
        with open("/proc/self/mountinfo") as handle:
            left = [line for line in handle if chroot.path in line]
        assert left == [], left


def test_timers_are_active_once_booted(booted):
    listed = booted.run("systemctl list-timers --all --no-pager").stdout
    for timer, service in TIMERS.items():
        assert booted.run(f"systemctl is-active {timer}").stdout.strip() == "active"
        assert re.search(rf"{re.escape(timer)}\s+{re.escape(service)}", listed), listed
    # From here on the services are started by the test, not by the clock.
    booted.run("systemctl stop " + " ".join(TIMERS))


def test_contents_service_runs_as_the_systraq_user(booted):
    booted.run("systemctl start systraq-contents.service")
    shown = booted.show("systraq-contents.service", "Result", "ExecMainStatus", "User")
    # 1 if booting changed a file under /etc.
    assert shown["Result"] == "success" and shown["ExecMainStatus"] in ("0", "1"), shown
    assert shown["User"] == USER


def test_report_service_mails_after_the_audit_and_packages_checks(booted, chroot):
    with open(chroot.host("/etc/motd"), "a") as motd:
        motd.write("Maintenance on Saturday.\n")
    # What only the confined daily checks find: a PATH with "." in a
    # closed home (the audit reads it as root, with CAP_DAC_READ_SEARCH),
    # a setuid file in the container's real /tmp (no PrivateTmp for the
    # audit), and a package file changed by hand (the packages check, in
    # its sandbox).
    booted.run(f"chmod 0700 /home/{ADMIN} && echo 'PATH=\".:$PATH\"' >> /home/{ADMIN}/.bashrc")
    booted.run("cp /bin/dash /tmp/.hidden && chmod 4755 /tmp/.hidden")
    booted.run("echo tampered >> /usr/share/common-licenses/GPL-2")
    # What only the check against the archive finds (as root, with the
    # network, in its sandbox): a package file given to another owner.
    # The booted container has no name service: the manifests are built
    # first from outside it, with the host's network, as the first daily
    # run would; the unit then checks with them.
    built = chroot.run("systraq packages --from-archive", check=False)
    # 1: it finds GPL-2, tampered above.
    assert built.returncode in (0, 1), built.stdout + built.stderr
    conf = chroot.read("/etc/systraq/systraq.conf").decode()
    chroot.write("/etc/systraq/systraq.conf", set_option(conf, "packages", "from_archive", "yes"))
    booted.run("chown nobody /usr/bin/tac")
    booted.run("systemctl start systraq-check.service")
    booted.run("systemctl start systraq-report.service")
    times = {}
    for unit in (*DAILY, "systraq-report.service"):
        shown = booted.show(unit, "Result", "ExecMainStatus", "ExecMainStartTimestampMonotonic",
                            "ExecMainExitTimestampMonotonic")
        assert shown["Result"] == "success", (unit, shown)
        times[unit] = (int(shown["ExecMainStartTimestampMonotonic"]),
                       int(shown["ExecMainExitTimestampMonotonic"]))
    audit, packages, archive, report = (times[u] for u in (*DAILY, "systraq-report.service"))
    assert audit[1] <= packages[0] and packages[1] <= archive[0] and archive[1] <= report[0], times
    # The admin's edit of systraq.conf is a critical change: the check
    # alerted it before the report went out.
    *_, alert, daily = wait_for_mail(chroot, 5, flush=False, diagnose=booted.mail_log)
    assert "alert:" in alert["Subject"] and "+from_archive = yes" in body(alert)
    # Mailed by debian-systraq through exim's setuid sendmail, from the
    # hardened unit.
    assert daily["From"].addresses[0].username == USER
    text = body(daily)
    warnings = text[text.index("1. Warnings\n"):text.index("2. Changes made by package operations\n")]
    assert "* /etc/motd: content changed" in warnings
    assert f"/home/{ADMIN}/.bashrc" in warnings and "PATH" in warnings
    assert "/tmp/.hidden" in warnings and "setuid" in warnings
    assert "/usr/share/common-licenses/GPL-2" in warnings
    assert "/usr/bin/tac" in warnings and "owner nobody" in warnings, warnings


# A proxy for apt inside the container (its network is loopback only):
# it answers each GET with the file of that name from a directory, and
# logs the request.
PROXY = """\
import http.server, os, sys, urllib.parse
debs, log = sys.argv[1], sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(log, "a") as out:
            out.write(self.path + "\\n")
        name = urllib.parse.unquote(os.path.basename(urllib.parse.urlsplit(self.path).path))
        try:
            with open(os.path.join(debs, name), "rb") as handle:
                data = handle.read()
        except OSError:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
http.server.HTTPServer(("127.0.0.1", 3142), Handler).serve_forever()
"""
# The smallest installed architecture-independent package that apt can
# download over http: "NAME VERSION".
SMALLEST = """\
import apt
found = [(p.installed.size, p.name, p.installed.version) for p in apt.Cache()
         if p.installed and p.installed.architecture == "all" and p.installed.downloadable
         and (p.installed.uri or "").startswith("http://")]
print(*min(found)[1:])
"""


def test_archive_service_downloads_in_its_sandbox(booted, chroot):
    # A package whose manifest is missing: the unit downloads its .deb
    # through apt's http method, as _apt, with the unit's capabilities,
    # address families and system-call filter.
    name, version = chroot.run(f"python3 -c {shlex.quote(SMALLEST)}").stdout.split()
    manifests = chroot.host("/var/lib/systraq/root/manifests")
    for entry in os.listdir(manifests):
        if entry.startswith(name + "_"):
            os.unlink(os.path.join(manifests, entry))
    booted.run(f"rm -f /var/cache/apt/archives/{name}_*.deb")
    # The .deb, fetched from outside with the host's network.
    chroot.run(f"mkdir -p /srv/debs && cd /srv/debs && "
               f"apt-get download -q {name}={shlex.quote(version)}")
    chroot.write("/srv/proxy.py", PROXY)
    chroot.write("/etc/apt/apt.conf.d/99systraq-test-proxy",
                 'Acquire::http::Proxy "http://127.0.0.1:3142/";\n')
    try:
        booted.run("systemd-run -q --unit=systraq-test-proxy /usr/bin/python3 /srv/proxy.py "
                   "/srv/debs /srv/proxy.log")
        deadline = time.monotonic() + BOOT_TIMEOUT
        listening = "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 3142))'"
        while booted.run(listening, check=False).returncode != 0:
            assert time.monotonic() < deadline, "the test proxy does not listen"
            time.sleep(0.2)
        booted.run("systemctl start systraq-archive.service")
        shown = booted.show("systraq-archive.service", "Result", "ExecMainStatus")
        assert shown["Result"] == "success", shown
        journal = booted.run("journalctl -o cat --no-pager -u systraq-archive.service").stdout
        asked = chroot.read("/srv/proxy.log").decode()
        assert f"/{name}_" in asked, (asked, journal)
        made = [e for e in os.listdir(manifests) if e.startswith(name + "_")]
        # Made from the downloaded .deb, not from dpkg's md5sums.
        assert len(made) == 1 and not made[0].endswith("_dpkg.manifest"), (made, journal)
        assert "unsandboxed" not in journal and "Traceback" not in journal, journal
    finally:
        booted.run("systemctl stop systraq-test-proxy", check=False)
        os.unlink(chroot.host("/etc/apt/apt.conf.d/99systraq-test-proxy"))


def test_check_service_mails_an_alert_for_a_new_account(booted, chroot):
    # The daily report before delivered the alerted change of /etc/passwd:
    # a new change to it is alerted again.
    booted.run("useradd -s /bin/sh trudy")
    booted.run("systemctl start systraq-check.service")
    properties = ("Result", "ExecMainStatus", "User", "ExecMainStartTimestampMonotonic",
                  "ExecMainExitTimestampMonotonic")
    pub, root = (booted.show(unit, *properties) for unit in ("systraq-check.service", CHECK_ROOT))
    assert (pub["Result"], pub["ExecMainStatus"], pub["User"]) == ("success", "1", USER), pub
    # The root half ran first, as root in its confined unit, and found
    # the change of /etc/shadow, which only root may read.
    assert (root["Result"], root["ExecMainStatus"], root["User"]) == ("success", "1", ""), root
    assert int(root["ExecMainExitTimestampMonotonic"]) <= int(pub["ExecMainStartTimestampMonotonic"])
    # No queue run here: the unit lets exim's delivery finish by itself.
    alert = wait_for_mail(chroot, 6, flush=False, diagnose=booted.mail_log)[-1]
    assert "alert:" in alert["Subject"]
    assert "/etc/passwd" in body(alert)
    # Queued by the root unit, mailed by the unprivileged one, without
    # content.
    assert "/etc/shadow: content changed" in body(alert)
    assert "trudy" not in body(alert).split("/etc/shadow", 1)[1].split("\n", 1)[0]


def _settled(booted, chroot):
    """How many messages the mailbox holds once exim holds none."""
    deadline = time.monotonic() + 60
    while booted.run("exim4 -bpc").stdout.strip() != "0":
        assert time.monotonic() < deadline, booted.mail_log()
        time.sleep(0.2)
    return len(mailbox(chroot))


def test_the_confined_root_unit_sees_a_module_dropped_in_usr_lib_modules(booted, chroot):
    # The hourly walk of [check] trees runs in systraq-check-root.service,
    # which must not hide /usr/lib/modules (ProtectKernelModules= would).
    booted.run("systemctl start systraq-check.service")
    before = _settled(booted, chroot)
    module = "/usr/lib/modules/6.12.0-99-amd64/extra/hid-x.ko"
    booted.run(f"mkdir -p {os.path.dirname(module)} && printf '\\177ELF' > {module}"
               " && cp /bin/true /usr/lib/libsystem-update.so.1")
    booted.run("systemctl start systraq-check.service")
    root = booted.show(CHECK_ROOT, "Result", "ExecMainStatus")
    assert root == {"Result": "success", "ExecMainStatus": "1"}, root
    alert = wait_for_mail(chroot, before + 1, flush=False, diagnose=booted.mail_log)[-1]
    # The module is critical: alerted within the hour; the library waits
    # for the report.
    assert "alert:" in alert["Subject"] and f"* {module}: new file" in body(alert), body(alert)
    assert "libsystem-update" not in body(alert)
    pending = booted.run("systraq report --stdout", check=False).stdout
    assert "/usr/lib/libsystem-update.so.1: new file, mode 0755, root:root" in pending, pending


# Root units whose exposure "systemd-analyze security" may score above
# 3.0, with the reason next to each: none.
EXPOSED_ROOT_UNITS = {}


def test_every_root_unit_is_confined(booted):
    scores = {}
    for unit in UNITS:
        if not unit.endswith(".service") or booted.show(unit, "User")["User"]:
            continue
        out = booted.run(f"systemd-analyze security --no-pager {unit}").stdout
        found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out)
        assert found, out
        scores[unit] = float(found.group(1))
    assert {CHECK_ROOT, BASELINE, "systraq-audit.service"} <= set(scores), scores
    for unit, score in scores.items():
        assert score <= EXPOSED_ROOT_UNITS.get(unit, 3.0), (unit, score)


def test_no_new_privileges_would_stop_the_mail(booted, chroot):
    dropin = "/etc/systemd/system/systraq-report.service.d/test-nnp.conf"
    failing_audit = "/etc/systemd/system/systraq-audit.service.d/test-fail.conf"
    booted.run(f"mkdir -p {os.path.dirname(dropin)} && "
               f"printf '[Service]\\nNoNewPrivileges=yes\\n' > {dropin} && "
               "systemctl daemon-reload")
    before = _settled(booted, chroot)
    try:
        with open(chroot.host("/etc/issue.net"), "a") as issue:
            issue.write("Authorised use only.\n")
        booted.run("systemctl start systraq-check.service")
        result = booted.run("systemctl start systraq-report.service", check=False)
        assert result.returncode != 0
        shown = booted.show("systraq-report.service", "Result", "ExecMainStatus")
        assert shown == {"Result": "exit-code", "ExecMainStatus": "3"}
        journal = booted.run("journalctl -u systraq-report.service -o cat --no-pager").stdout
        assert "sendmail exited with status" in journal, journal
        # The drop-in is a new file among the systemd units: the check
        # alerted it.  The report never reached exim's queue.
        booted.run("exim4 -qff", check=False)
        found = wait_for_mail(chroot, before + 1, flush=False, diagnose=booted.mail_log)
        assert "test-nnp.conf" in body(found[-1])
        assert "Authorised use only." not in body(found[-1])
    finally:
        booted.run(f"rm -r {os.path.dirname(dropin)} && systemctl daemon-reload")
    # Without the drop-in the kept report goes out; a failing audit does
    # not keep it back.
    booted.run(f"mkdir -p {os.path.dirname(failing_audit)} && "
               f"printf '[Service]\\nExecStart=\\nExecStart=/bin/sh -c \"exit 3\"\\n' "
               f"> {failing_audit} && systemctl daemon-reload")
    try:
        booted.run("systemctl start systraq-report.service")
        assert booted.show("systraq-audit.service", "Result")["Result"] == "exit-code"
        assert booted.show("systraq-report.service", "Result")["Result"] == "success"
    finally:
        booted.run(f"rm -r {os.path.dirname(failing_audit)} && systemctl daemon-reload")
    found = wait_for_mail(chroot, before + 2, flush=False, diagnose=booted.mail_log)
    assert sum("Authorised use only." in body(m) for m in found) == 1


def test_the_watcher_is_skipped_until_enabled_then_alerts_within_10_seconds(booted, chroot):
    # Booted with [watch] enabled = no (the debconf default): skipped by
    # its condition, not failed.
    shown = booted.show(WATCH, "ActiveState", "UnitFileState", "MainPID")
    assert shown == {"ActiveState": "inactive", "UnitFileState": "enabled", "MainPID": "0"}, shown
    assert booted.run(f"systemctl is-failed {WATCH}", check=False).stdout.strip() != "failed"
    conf = chroot.read("/etc/systraq/systraq.conf").decode()
    chroot.write("/etc/systraq/systraq.conf", set_option(conf, "watch", "enabled", "yes"))
    booted.run(f"systemctl restart {WATCH}")
    deadline = time.monotonic() + 60
    while "watching" not in booted.run(f"journalctl -u {WATCH} -o cat --no-pager").stdout:
        assert time.monotonic() < deadline, booted.mail_log()
        time.sleep(0.2)
    assert booted.show(WATCH, "ActiveState", "User") == {"ActiveState": "active", "User": USER}
    # "watching" comes once any start-up alert was handed to sendmail;
    # exim may still be delivering it: wait until its queue is empty.
    while booted.run("exim4 -bpc").stdout.strip() != "0":
        assert time.monotonic() < deadline, booted.mail_log()
        time.sleep(0.2)
    before = len(mailbox(chroot))
    changed = time.monotonic()
    booted.run("useradd -s /bin/sh oscar")

    def alerted():
        return [m for m in mailbox(chroot)[before:]
                if "alert:" in m["Subject"] and "oscar" in body(m)]
    # No queue run: the alert goes through exim's setuid sendmail from the
    # unit and exim delivers it by itself.
    while not alerted():
        assert time.monotonic() - changed < 10, booted.mail_log()
        time.sleep(0.2)
    assert "/etc/passwd" in body(alerted()[0])
    booted.run(f"systemctl stop {WATCH}")
    assert booted.show(WATCH, "Result")["Result"] == "success"


def test_the_postinst_starts_the_first_baseline_as_a_unit_without_waiting(booted, chroot):
    # A first baseline that did not finish (its marker left): the next
    # configure starts it again, under systemd as its unit.
    booted.run("touch /var/lib/systraq/first-baseline")
    result = booted.run("dpkg-reconfigure -fnoninteractive systraq")
    assert "recording the first baseline in the background" in result.stdout + result.stderr
    wait_for_first_baseline(chroot)
    shown = booted.show(BASELINE, "Result", "ExecMainStatus", "ActiveState")
    assert shown == {"Result": "success", "ExecMainStatus": "0", "ActiveState": "inactive"}, \
        (shown, booted.mail_log())
