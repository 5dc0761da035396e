# SPDX-License-Identifier: GPL-2.0-or-later
"""Hostile file names and contents, from the file system to the admin's
terminal and mailbox.

Files named with newlines, tabs, backslashes, control characters, ESC
sequences (clear screen, set title, hide text), C1 controls and bytes
that are not UTF-8, and world-readable files whose content holds ESC
sequences, go through the snapshot (pub and root), the contents job,
the spool, the report text, the mail and ``--json``.  Checked:

- every name survives the round trip through the state files: a run
  after an unchanged one finds nothing, and the paths recorded unescape
  to the very bytes on disk;
- no report line, mail body, JSON string or printed line holds a raw
  control byte (``pathcodec.escape`` for names, ``contents.printable``
  for content: C0 but tab and newline, DEL, C1, U+2028/9 and bytes that
  are not UTF-8 are written as backslash escapes);
- a path of PATH_MAX (4,096 bytes, by deep nesting) is snapshotted, and
  one beyond it costs the run nothing but a count of unreadable paths.
"""

import email
import email.policy
import json
import os
import shutil
import tempfile
import time

import pytest

from systraq import audit, delivery, lists, report, snapshot
from systraq.cli import main
from systraq.config import load as load_config
from systraq.pathcodec import escape, unescape
from systraq.settings import Settings
from systraq.spool import Spool
from tests.hardening.hostile import NASTY_CONTENT, NASTY_NAMES, assert_clean
from tests.unit.conftest import PASSWD, FakeRoot
from tests.unit.test_report import Probe, sendmail

HOST = "host.example.org"


def cli(root, capsys, *argv):
    status = main(["--root", os.fsdecode(root.path), *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    assert_clean(out, f"stdout of {argv}")
    assert_clean(err, f"stderr of {argv}")
    return status, out, err


def json_strings(value):
    """Every string inside a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_strings(item)


def assert_json_clean(text, what):
    data = json.loads(text)
    for string in json_strings(data):
        assert_clean(string, what)
    return data


def make_root():
    top = tempfile.mkdtemp(prefix="sq-", dir="/tmp")
    fake = FakeRoot(os.path.join(top, "r"))
    fake.write("/etc/passwd", PASSWD)
    for home in ("/root", "/home/alice", "/home/bob", "/var/lib/systraq"):
        fake.mkdir(home)
    fake.mkdir("/home/bob", 0o700)       # closed: only the root jobs look in
    fake.mkdir("/etc/systraq")
    fake.write("/etc/systraq/snapshot_pub.list", "/etc/hostile\n/srv\n")
    fake.write("/etc/systraq/snapshot_root.list", "/etc/hostile\n")
    fake.write("/etc/systraq/snapshot_pub.homelist", ".hostile\n")
    fake.write("/etc/systraq/snapshot_root.homelist", ".hostile\n")
    fake.write("/etc/systraq/filetraq.tail.conf", "")
    fake.write("/etc/systraq/systraq.conf", "[report]\nmailto = root\n")
    return top, fake


@pytest.fixture
def hostile_root():
    top, fake = make_root()
    yield fake
    shutil.rmtree(top)


def populate(fake, names, generation):
    """Nasty names under /etc/hostile (world-readable, so their content
    is diffed), in an open home and a closed one."""
    for name in names:
        fake.write(b"/etc/hostile/" + name, NASTY_CONTENT * generation)
        fake.write(b"/home/alice/.hostile/" + name, b"x" * generation)
        fake.write(b"/home/bob/.hostile/" + name, b"y" * generation, mode=0o600)
        link = fake.host(b"/etc/hostile/link-" + name)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(b"../target-" + name + b"-%d" % generation, link)
    fake.mkdir(b"/etc/hostile/dir\x1b[2J\n")


RUNS = [("snapshot", "--mode", "pub"), ("snapshot", "--mode", "root"),
        ("contents", "--mode", "pub"), ("contents", "--mode", "root")]


def run_all(fake, capsys):
    records = []
    for argv in RUNS:
        status, out, _ = cli(fake, capsys, *argv, "--json")
        assert status in (0, 1), argv
        records += assert_json_clean(out, f"--json of {argv}")
        # The same run's text, as an admin at a terminal sees it.
    return records


def test_hostile_names_from_disk_to_mail(hostile_root, capsys, tmp_path, record):
    fake = hostile_root
    names = NASTY_NAMES
    populate(fake, names, 1)
    baseline = run_all(fake, capsys)
    assert all(r["change"] in ("baseline",) for r in baseline), baseline
    assert run_all(fake, capsys) == [], "an unchanged tree gave records"
    cli(fake, capsys, "audit")

    populate(fake, names, 2)
    for name in names[:4]:
        os.chmod(fake.host(b"/etc/hostile/" + name), 0o666)
    for name in names:
        fake.write(b"/usr/local/bin/" + name, b"#!/bin/sh\n", mode=0o4755)
        fake.write(b"/usr/share/ww/" + name, b"", mode=0o666)
    changed = run_all(fake, capsys)
    # The audit's setuid and world-writable inventories, as data and as
    # the lines the admin reads.
    status, out, _ = cli(fake, capsys, "audit", "--json")
    assert status == 1
    audited = assert_json_clean(out, "audit --json")
    found = {(r["path"], r["change"]) for r in audited["records"]}
    for name in names:
        assert (escape(b"/usr/local/bin/" + name), "setuid added") in found
        assert (escape(b"/usr/share/ww/" + name), "world-writable added") in found
    for item in audited["records"]:
        assert_clean(audit.describe(item), "audit line")
    # The generated watch list names each file exactly, whatever its name.
    cli(fake, capsys, "lists")
    settings = fake.settings()
    entries = lists.parse(settings.filetraq_conf, "system")
    listed = set(lists.expand(settings, entries, "system").paths)
    for name in names:
        assert b"/etc/hostile/" + name in listed, name
    paths = {r["path"] for r in changed}
    for name in names:
        for where in (b"/etc/hostile/", b"/home/alice/.hostile/", b"/home/bob/.hostile/",
                      b"/etc/hostile/link-"):
            logical = where + name
            assert escape(logical) in paths, f"{logical!r} not reported"
    for path in paths:
        # What is shown turns back into the bytes on disk.
        assert os.path.lexists(fake.host(unescape(path))), path
    diffs = [r for r in changed if "diff" in r]
    assert diffs, "no diff of the world-readable files"
    assert any("+\\x1b[2J\\x1b[Hscreen cleared" in r["diff"] for r in diffs)
    # The state files took every name back as it was: nothing new.
    assert run_all(fake, capsys) == [], "names did not survive the state files"

    # The spool as it lies on disk.
    settings = fake.settings()
    spool = Spool(settings)
    for batch in spool.pending():
        for item in spool.records(batch):
            for string in json_strings(item):
                assert_clean(string, f"spool batch {batch.name!r}")

    # The report: text, JSON, the printed one, and the mail.
    conf = load_config(settings.config_file)
    built = report.gather(settings, conf, now=time.time(), host=HOST, probe=Probe())
    text = report.render_text(built)
    assert_clean(text, "report text")
    assert escape(b"/etc/hostile/" + names[5]) in text
    assert_json_clean(report.render_json(built), "report JSON")
    status, out, _ = cli(fake, capsys, "report", "--stdout")
    assert status == 1 and "1. Warnings" in out
    status, out, _ = cli(fake, capsys, "report", "--stdout", "--format", "json")
    assert_json_clean(out, "report --format json")
    program, mails = sendmail(fake, tmp_path)
    delivery.deliver(settings, conf, built, sendmail=program, log=lambda *a: None)
    [raw] = [open(os.path.join(mails, n), "rb").read() for n in os.listdir(mails)]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert_clean(str(message["Subject"]), "mail subject")
    body = message.get_content()
    assert_clean(body, "mail body")
    assert body == text
    # Raw ESC must not ride in the transfer encoding either.
    assert b"\x1b" not in raw
    record(files=len(names) * 4, records=len(changed))


def test_a_4096_byte_path_by_deep_nesting(capsys, record):
    """Directories nested until the logical path is 4,096 bytes long (the
    host path, below the fake root, is longer still)."""
    top, fake = make_root()
    try:
        fake.write("/etc/systraq/snapshot_pub.list", "/srv\n")
        fake.write("/etc/systraq/snapshot_root.list", "/srv\n")
        component = b"d" * 200 + b"\x1b[2J"
        logical = b"/srv"
        fd = os.open(fake.mkdir("/srv"), os.O_RDONLY | os.O_DIRECTORY)
        # Built with *at() calls: the host path is past PATH_MAX.
        while len(logical) + 1 + len(component) <= 4096 - 8:
            os.mkdir(component, 0o755, dir_fd=fd)
            new = os.open(component, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = new
            logical += b"/" + component
        name = b"f" * (4095 - len(logical) - 2) + b"\n"
        with open(os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as out:
            out.write(b"deep\n")
        os.close(fd)
        logical += b"/" + name
        assert len(logical) == 4095 and len(fake.host(logical)) > 4096

        for argv in RUNS[:2]:
            status, out, _ = cli(fake, capsys, *argv, "--json")
            assert status in (0, 1)
        state = _snapshot_paths(fake.settings())
        assert logical in state, "the 4,095-byte path was not recorded"
        # Changed, it is reported by its full, escaped name.
        with open(_deep_open(fake, logical), "wb") as out:
            out.write(b"deeper\n")
        status, out, _ = cli(fake, capsys, "snapshot", "--mode", "pub", "--json")
        records = assert_json_clean(out, "deep snapshot")
        assert {r["path"] for r in records} == {escape(logical)}
        status, out, _ = cli(fake, capsys, "contents", "--mode", "pub", "--json")
        assert status in (0, 1)
        cli(fake, capsys, "report", "--stdout")
        record(files=1, path_bytes=len(logical))
    finally:
        shutil.rmtree(top)


def _deep_open(fake, logical):
    fd = os.open(fake.path, os.O_RDONLY | os.O_DIRECTORY)
    parts = logical.strip(b"/").split(b"/")
    for part in parts[:-1]:
        new = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = new
    out = os.open(parts[-1], os.O_WRONLY | os.O_TRUNC, dir_fd=fd)
    os.close(fd)
    return out


def _snapshot_paths(settings):
    header, records = snapshot.load_state(snapshot.state_path(settings, "pub"))
    return set(records)


def test_settings_path_round_trip_of_every_byte():
    """Every byte but NUL and '/' in a name, mapped to the host and back."""
    settings = Settings(root="/tmp/x")
    name = bytes(b for b in range(1, 256) if b != 0x2F)
    logical = b"/etc/" + name
    assert settings.logical(settings.host(logical)) == logical
    assert unescape(escape(logical)) == logical
