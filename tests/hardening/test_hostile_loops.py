# SPDX-License-Identifier: GPL-2.0-or-later
"""Symlink loops in listed directories: ``a -> b`` and ``b -> a``,
``self -> .``, a link to a parent, a link to the root, and a chain of
links to itself.  Every job that walks or reads (snapshot pub and root,
contents, audit, list generation, status) must finish in bounded time,
record the links as links, and print no traceback.

Each job runs in a child process with a time limit, so a hang fails
the test instead of stalling the suite.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from systraq import snapshot
from systraq.pathcodec import escape
from tests.hardening.conftest import ROOT
from tests.hardening.hostile import assert_clean
from tests.unit.conftest import PASSWD, FakeRoot

LOOPS = {
    b"a": b"b", b"b": b"a",          # a two-link loop
    b"self": b".",                   # the directory itself
    b"up": b"..",                    # its parent, which holds it again
    b"top": b"/",                    # the (fake) root, above everything
    b"me": b"me",                    # a link to itself
    b"deep/again": b"../../loops",   # a loop two levels down
}

JOBS = [("snapshot", "--mode", "pub"), ("snapshot", "--mode", "root"),
        ("contents", "--mode", "pub"), ("contents", "--mode", "root"),
        ("audit",), ("lists",), ("status",)]
LIMIT = 60


def build(fake, places):
    for place in places:
        for name, target in LOOPS.items():
            fake.symlink(target, place + b"/loops/" + name)
        fake.write(place + b"/loops/file", b"data\n")


def run(fake, *argv):
    done = subprocess.run([sys.executable, "-m", "systraq", "--root", os.fsdecode(fake.path),
                           *argv, "--json" if argv[0] in ("snapshot", "contents", "audit",
                                                          "status") else "--verbose"],
                          cwd=ROOT, capture_output=True, timeout=LIMIT)
    err = done.stderr.decode("utf-8", "surrogateescape")
    assert "Traceback" not in err, (argv, err)
    assert done.returncode in (0, 1), (argv, done.returncode, err)
    assert_clean(done.stdout, f"stdout of {argv}")
    assert_clean(err, f"stderr of {argv}")
    return done.stdout


def test_symlink_loops_finish_and_are_recorded_as_links(scale, record):
    top = tempfile.mkdtemp(prefix="sq-loops-", dir="/tmp")
    fake = FakeRoot(os.path.join(top, "r"))
    try:
        fake.write("/etc/passwd", PASSWD)
        for home in ("/root", "/home/alice", "/home/bob", "/var/lib/systraq"):
            fake.mkdir(home)
        fake.mkdir("/etc/systraq")
        places = [b"/etc", b"/srv", b"/home/alice", b"/home/alice/.ssh", b"/usr/local"]
        build(fake, places)
        # authorized_keys itself a loop, in an open and a closed home.
        fake.symlink("authorized_keys", "/home/alice/.ssh/authorized_keys")
        fake.mkdir("/home/bob", 0o700)
        fake.symlink(".ssh", "/home/bob/.ssh")
        fake.write("/etc/systraq/snapshot_pub.list", "/etc\n/srv\n/srv/loops/self/self\n")
        fake.write("/etc/systraq/snapshot_root.list", "/srv\n/usr/local\n")
        fake.write("/etc/systraq/snapshot_pub.homelist", "loops\n.ssh\n")
        fake.write("/etc/systraq/snapshot_root.homelist", "loops\n")
        fake.write("/etc/systraq/filetraq.tail.conf", "/srv/loops/a\n/srv/loops/*\n")
        runs = 0
        for _ in range(scale(1, 3)):
            for argv in JOBS:
                run(fake, *argv)
                runs += 1
        # A change behind a loop is seen, and the links are links.
        os.unlink(fake.host(b"/srv/loops/a"))
        os.symlink(b"me", fake.host(b"/srv/loops/a"))
        changes = json.loads(run(fake, "snapshot", "--mode", "pub"))
        assert [(c["path"], c["change"]) for c in changes] == [(escape(b"/srv/loops/a"),
                                                                "target")], changes
        settings = fake.settings()
        _, state = snapshot.load_state(snapshot.state_path(settings, "pub"))
        for place in (b"/etc", b"/srv"):
            for name, target in LOOPS.items():
                path = place + b"/loops/" + name
                if path == b"/srv/loops/a":
                    target = b"me"
                assert state[path].kind == "l" and state[path].target == target, path
        # Nothing was walked through a link: no path goes on below one.
        assert not [p for p in state if b"/loops/self/" in p and p != b"/srv/loops/self/self"]
        assert not [p for p in state if b"/loops/up/" in p or b"/loops/top/" in p]
        record(runs=runs, files=len(state))
    finally:
        shutil.rmtree(top)
