# SPDX-License-Identifier: GPL-2.0-or-later
import json
import os
import subprocess
import sys

import pytest

from systraq import __version__
from systraq.cli import main
from systraq.spool import Spool

TOP = os.path.join(os.path.dirname(__file__), "..", "..")


def shipped_lists(root):
    """Install the shipped configuration below the fake root, as postinst does."""
    etc = os.path.join(TOP, "etc")
    for name in os.listdir(etc):
        with open(os.path.join(etc, name), "rb") as handle:
            root.write(f"/etc/systraq/{name}", handle.read())


def run(root, *argv, capsys):
    status = main(["--root", os.fsdecode(root.path), *argv])
    out, err = capsys.readouterr()
    return status, out, err


def systraq(*argv):
    """Run the real entry point in a new interpreter: what an admin gets."""
    return subprocess.run([sys.executable, "-m", "systraq", *argv], cwd=TOP,
                          capture_output=True, text=True, errors="backslashreplace")


def test_status_of_a_fresh_system(root, capsys):
    shipped_lists(root)
    root.write("/etc/profile", "# profile\n")
    root.write("/etc/cron.d/job", "* * * * * root true\n")
    root.write("/home/alice/.bashrc")
    status, out, err = run(root, "status", capsys=capsys)
    assert status == 0, err
    assert err == ""
    assert "[snapshot] exclude = (none)    (default)" in out
    assert "[snapshot] digest = sha256    (default)" in out
    assert "/etc/systraq/snapshot_pub.list" in out
    assert "/etc/systraq/filetraq.conf" in out and "missing" in out
    assert "Queued, not yet delivered: nothing" in out
    assert "State directory" in out


def test_status_json_has_stable_keys_and_counts(root, capsys):
    shipped_lists(root)
    root.write("/etc/cron.d/job")
    root.write("/home/alice/.bashrc")
    root.write("/home/bob/.profile")
    Spool(root.settings()).add("snapshot", [{"x": 1}, {"x": 2}])
    status, out, _err = run(root, "status", "--json", capsys=capsys)
    assert status == 0
    data = json.loads(out)
    assert set(data) == {"version", "root", "user", "config", "lists", "state",
                         "queue", "report", "problems"}
    assert data["report"] == {"state": "ok", "last_delivered": None, "undelivered": []}
    assert data["version"] == __version__
    lists = {row["name"]: row for row in data["lists"]}
    assert lists["snapshot_pub.homelist"]["paths"] == 2
    assert lists["snapshot_pub.homelist"]["homes"] == 5
    assert lists["filetraq.conf"]["state"] == "missing"
    pub = lists["snapshot_pub.list"]
    # /etc/passwd, /etc/cron.d and its job, /etc/systraq and its six files.
    assert pub["paths"] == 10
    shipped = open(os.path.join(TOP, "etc", "snapshot_pub.list")).read().splitlines()
    assert {"entry": "/etc/exports", "line": shipped.index("/etc/exports") + 1} in pub["unmatched"]
    assert {"entry": "/etc/passwd", "line": shipped.index("/etc/passwd") + 1} not in pub["unmatched"]
    assert data["queue"]["records"] == 2 and data["queue"]["batches"] == 1
    assert [item["name"] for item in data["state"]["contents"]] == ["spool"]


def test_status_escapes_odd_names(root, capsys):
    root.write("/etc/systraq/snapshot_pub.list", b"/etc/odd\n")
    root.write(b"/etc/odd/\x1b[2Jclear\nline\xff")
    root.write(b"/etc/systraq/snapshot_root.list", b"/etc/nothing-\x1b[31m\n")
    status, out, _err = run(root, "status", capsys=capsys)
    assert status == 0
    assert "\x1b" not in out
    assert "/etc/nothing-\\x1b[31m matches nothing" in out


def test_broken_list_exits_2_with_file_and_line(root, capsys):
    shipped_lists(root)
    path = root.write("/etc/systraq/snapshot_root.list", "/etc/shadow\n\netc/gshadow\n")
    status, out, err = run(root, "status", capsys=capsys)
    assert status == 2
    assert err == f"{os.fsdecode(path)}:3: not an absolute path: 'etc/gshadow'\n"
    assert "error" in out     # the rest of the status is still shown


def test_broken_config_exits_2_with_file_and_line(root, capsys):
    path = root.write("/etc/systraq/systraq.conf", "[snapshot]\nexclude = nope\n")
    status, out, err = run(root, "status", capsys=capsys)
    assert (status, out) == (2, "")
    assert err == f"{os.fsdecode(path)}:2: [snapshot] exclude: not an absolute path: 'nope'\n"


def test_config_warnings_go_to_stderr(root, capsys):
    path = root.write("/etc/systraq/systraq.conf", "[snapshot]\nrecipient = x\n")
    status, _out, err = run(root, "status", capsys=capsys)
    assert status == 0
    assert err == f"warning: {os.fsdecode(path)}:2: unknown key 'recipient' in [snapshot], ignored\n"


def test_missing_config_named_on_the_command_line(root, capsys):
    status = main(["--root", os.fsdecode(root.path), "--config", "/nonexistent/systraq.conf", "status"])
    assert status == 2
    assert capsys.readouterr().err == "/nonexistent/systraq.conf: no such file\n"


def test_no_command_prints_the_report_as_the_old_systraq_did(root, capsys, monkeypatch):
    monkeypatch.setattr("systraq.mail.host_name", lambda: "host.example.org")
    assert main(["--root", os.fsdecode(root.path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("systraq report for host.example.org\n")
    assert "1. Warnings\n-----------\nNo warnings.\n" in out
    # Printing is not delivering: nothing is kept as sent.
    assert not os.path.exists(root.host("/var/lib/systraq/report.state"))


def test_root_must_be_a_directory(tmp_path, capsys):
    assert main(["--root", str(tmp_path / "nope"), "status"]) == 2
    assert capsys.readouterr().err == f"systraq: --root {tmp_path / 'nope'}: not a directory\n"


def test_unreadable_state_is_an_incomplete_run_not_a_traceback(root, capsys, monkeypatch):
    def broken(*_args, **_kwargs):
        raise OSError(5, "Input/output error", "/var/lib/systraq/spool")
    monkeypatch.setattr("systraq.status.Spool.pending", broken)
    status, _out, err = run(root, "status", capsys=capsys)
    assert status == 3
    assert err == "systraq: Input/output error: /var/lib/systraq/spool\n"


def test_version_and_help_from_the_real_entry_point():
    result = systraq("--version")
    assert (result.returncode, result.stdout) == (0, f"systraq {__version__}\n")
    result = systraq("status", "--help")
    assert result.returncode == 0 and "--json" in result.stdout


@pytest.mark.parametrize("argv", [
    ["--bogus"], ["status", "--bogus"], ["nosuchcommand"],
    ["--config", "/nonexistent", "status"], ["--root", "/nonexistent", "status"],
])
def test_usage_errors_exit_2_without_traceback(argv):
    result = systraq(*argv)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2


def test_status_piped_into_a_closed_reader_is_quiet(root):
    shipped_lists(root)
    proc = subprocess.Popen(
        f"{sys.executable} -m systraq --root {os.fsdecode(root.path)!r} status --json | head -c 1",
        shell=True, cwd=TOP, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _out, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err


HEAVY = ("apt", "apt_pkg", "debian", "systraq.dpkgdb", "systraq.packages", "systraq.fromarchive",
         "systraq.manifest")


@pytest.mark.parametrize("setting", ["", "[packages]\nfrom_archive = no\n"])
def test_the_apt_hook_returns_at_once_while_from_archive_is_off(root, tmp_path, setting):
    """apt runs it before every dpkg run: off, it reads what apt sends and
    exits 0, loading neither dpkg's database nor python-apt."""
    root.write("/etc/systraq/systraq.conf", setting)
    code = ("import sys; from systraq.cli import main; "
            f"status = main(['--root', {os.fsdecode(root.path)!r}, 'packages', "
            "'--pre-install-hook']); "
            f"print(status, [m for m in {HEAVY!r} if m in sys.modules])")
    sent = b"VERSION 3\n" + b"Dir=/\n" * 20000 + b"\n"     # more than a pipe holds
    done = subprocess.run([sys.executable, "-c", code], input=sent, capture_output=True,
                          cwd=tmp_path, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert (done.stdout, done.stderr) == (b"0 []\n", b"")
    assert not os.path.exists(root.host("/var/lib/systraq/spool"))


class _Result:
    baseline = False
    records = ()


@pytest.mark.parametrize("argv, jobs, alerts", [
    ((), ["snapshot root", "contents root", "contents pub", "snapshot pub"], 1),
    (("--mode", "root"), ["snapshot root", "contents root"], 0),
    (("--mode", "pub"), ["contents pub", "snapshot pub"], 1),
    (("--no-alert",), ["snapshot root", "contents root", "contents pub", "snapshot pub"], 0),
    (("--mode", "pub", "--no-alert"), ["contents pub", "snapshot pub"], 0),
])
def test_check_runs_the_jobs_of_its_mode_and_alerts_only_from_pub(root, capsys, monkeypatch,
                                                                 argv, jobs, alerts):
    # The root unit runs "check --mode root", which mails nothing; the
    # unprivileged unit after it the pub modes and the alert.
    from systraq.commands import check
    ran, alerted = [], []

    def job(name):
        def run(settings, conf, mode, **_options):
            ran.append(f"{name} {mode}")
            return _Result()
        return run

    monkeypatch.setattr(check.snapshot, "run", job("snapshot"))
    monkeypatch.setattr(check.contents, "run", job("contents"))
    monkeypatch.setattr(check.delivery, "alert", lambda settings, conf: alerted.append(1) or [])
    shipped_lists(root)
    status, _out, err = run(root, "check", *argv, capsys=capsys)
    assert (status, err) == (0, "")
    assert ran == jobs
    assert len(alerted) == alerts
