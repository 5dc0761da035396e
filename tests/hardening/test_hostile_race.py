# SPDX-License-Identifier: GPL-2.0-or-later
"""The swap race: a user swaps files in their home for symlinks to a
root-only file while the root jobs read that home.

A child process, as uid 4242 (an unused uid; its home is chown'ed to it
first), swaps each watched name in its home (.bashrc, .profile,
.ssh/authorized_keys, a name of the home lists, and .ssh itself)
between a regular file and a symlink to the fake root's /etc/shadow
(mode 0600, root, known content) in a tight loop, with rename(2) so
that every name is always one or the other.  Meanwhile the root jobs
run many times: ``audit``, ``snapshot --mode root``, ``contents --mode
root`` and ``check``, then a report.  The shadow's content is shaped to
be worth quoting (a umask and PATH an audit would flag, a valid ssh key
a contents run would list), and carries a random token.

Afterwards the whole temporary tree is walked: every file the user or
the systraq user could read (not closed by mode and owner: root-owned
and mode 0600 itself or under a root-owned directory that others and
the group cannot enter) must hold neither the token nor any digest of
the shadow (md5, sha1, sha256, sha512, blake2b; hex and base64), and
neither may the jobs' stdout and stderr.  The group counts as able to
read: on a real system the root job gives its spool to the systraq
group.
"""

import base64
import hashlib
import mmap
import os
import pwd
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile

import pytest

from systraq.spool import Spool
from tests.hardening.conftest import ROOT
from tests.hardening.test_hostile_parsers import ED25519
from tests.unit.conftest import PASSWD, FakeRoot

UID = 4242
HOME = b"/home/mallory"
SWAPPED = [b".bashrc", b".profile", b".race", b".ssh/authorized_keys"]
JOBS = [("audit",), ("snapshot", "--mode", "root"), ("contents", "--mode", "root"),
        ("check",)]
JOB_LIMIT = 120


def needles(content, token):
    """Everything that would betray ``content``."""
    out = {token}
    for name in ("md5", "sha1", "sha256", "sha512", "blake2b"):
        raw = hashlib.new(name, content).digest()
        out.add(raw)
        out.add(raw.hex().encode())
        out.add(raw.hex().upper().encode())
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(raw)
            out.add(text)
            out.add(text.rstrip(b"="))
    return out


def protected(path, top):
    """True when neither another user nor the group may read ``path``."""
    info = os.lstat(path)
    if info.st_uid == 0 and not stat.S_IMODE(info.st_mode) & 0o077:
        return True
    directory = os.path.dirname(path)
    while len(directory) >= len(top):
        info = os.lstat(directory)
        if info.st_uid == 0 and not stat.S_IMODE(info.st_mode) & 0o011:
            return True
        directory = os.path.dirname(directory)
    return False


def exposed_files(top, shadow):
    for directory, _, names in os.walk(top):
        for name in names:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if path == shadow or not stat.S_ISREG(info.st_mode):
                continue
            if not protected(path, top):
                yield path


def swapper(home, shadow, counter):
    """The user's side: never returns."""
    os.setgroups([])
    os.setresgid(UID, UID, UID)
    os.setresuid(UID, UID, UID)
    spare = os.path.join(home, b".spare")
    n = 0
    while True:
        for name in SWAPPED:
            path = os.path.join(home, name)
            try:
                with open(spare, "wb") as out:
                    out.write(b"umask 022\n")
                os.rename(spare, path)
                os.symlink(shadow, spare)
                os.rename(spare, path)
            except OSError:
                pass   # .ssh is a symlink just now
        ssh = os.path.join(home, b".ssh")
        try:
            if n % 7 == 0:   # .ssh itself, now and then, a link to /etc
                os.rename(ssh, ssh + b".d")
                os.symlink(os.path.dirname(shadow), ssh)
                os.unlink(ssh)
                os.rename(ssh + b".d", ssh)
        except OSError:
            pass
        n += 1
        counter[:8] = struct.pack("<Q", n)


def job(fake, *argv):
    """Run one root job on ``fake``; its stdout and stderr."""
    done = subprocess.run([sys.executable, "-m", "systraq", "--root", os.fsdecode(fake.path),
                           *argv, "--verbose"], cwd=ROOT, capture_output=True,
                          timeout=JOB_LIMIT)
    err = done.stderr.decode("utf-8", "surrogateescape")
    assert "Traceback" not in err, (argv, err)
    assert done.returncode in (0, 1), (argv, done.returncode, err)
    return done.stdout + done.stderr


def test_swapping_a_file_for_a_link_to_shadow_leaks_nothing(scale, record):
    if os.geteuid() != 0:
        pytest.skip("the swap race needs root: the jobs run as root, the user as uid 4242")
    try:
        pwd.getpwuid(UID)
        pytest.skip(f"uid {UID} exists on this machine")
    except KeyError:
        pass
    top = tempfile.mkdtemp(prefix="sq-race-", dir="/tmp")
    os.chmod(top, 0o755)
    fake = FakeRoot(os.path.join(top, "r"))
    token = os.urandom(12).hex().encode()
    content = (b"root:$6$" + token + b"$Zx9:19000:0:99999:7:::\n"
               b"umask 000\nPATH=.:/tmp/" + token + b"\n"
               b"ssh-ed25519 " + ED25519 + b" " + token + b"@leak\n")
    secrets = needles(content, token)
    child = None
    outputs = []
    try:
        fake.write("/etc/passwd", PASSWD + b"mallory:x:%d:%d::/home/mallory:/bin/bash\n"
                   % (UID, UID))
        shadow = fake.write("/etc/shadow", content, mode=0o600)
        for home in ("/root", "/home/alice", "/home/bob", "/var/lib/systraq"):
            fake.mkdir(home)
        fake.mkdir("/etc/systraq")
        for name in ("snapshot_pub.homelist", "snapshot_root.homelist"):
            fake.write(f"/etc/systraq/{name}", ".bashrc\n.profile\n.race\n.ssh\n")
        fake.write("/etc/systraq/snapshot_root.list", "/etc/shadow\n")
        fake.write("/etc/systraq/snapshot_pub.list", "/etc/passwd\n")
        fake.write("/etc/systraq/filetraq.tail.conf", "")
        # Mail off: the report is kept in the state directory, and walked.
        fake.write("/etc/systraq/systraq.conf", "[report]\nmailto =\n")
        home = fake.mkdir(HOME, 0o755)
        for name in SWAPPED:
            fake.write(HOME + b"/" + name, b"umask 022\n")
        for directory, dirs, files in os.walk(home):
            for name in [directory] + [os.path.join(directory, f) for f in dirs + files]:
                os.lchown(name, UID, UID)

        # Without a race first: a baseline with files, then every name a
        # link to the shadow, so that each job surely meets the links.
        for links in (False, True):
            if links:
                for name in SWAPPED:
                    os.unlink(home + b"/" + name)
                    os.symlink(shadow, home + b"/" + name)
                    os.lchown(home + b"/" + name, UID, UID)
            for argv in JOBS:
                outputs.append((argv, job(fake, *argv)))

        counter = mmap.mmap(-1, 8)
        child = os.fork()
        if child == 0:
            try:
                swapper(home, shadow, counter)
            finally:
                os._exit(1)
        runs = 0
        rounds = scale(4, 40)
        for _ in range(rounds):
            for argv in JOBS:
                outputs.append((argv, job(fake, *argv)))
                runs += 1
        swaps = struct.unpack("<Q", counter[:8])[0]
        assert swaps > rounds, "the user's side did not race"
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        child = None
        done = subprocess.run([sys.executable, "-m", "systraq", "--root", os.fsdecode(fake.path),
                               "report"], cwd=ROOT, capture_output=True, timeout=JOB_LIMIT)
        assert done.returncode in (0, 1), done
        outputs.append((("report",), done.stdout + done.stderr))

        # The search works: it finds every needle in the shadow itself.
        with open(shadow, "rb") as handle:
            assert token in handle.read()
        files = 0
        leaks = []
        for path in exposed_files(os.fsencode(top), shadow):
            files += 1
            with open(path, "rb") as handle:
                data = handle.read()
            leaks += [(path, s) for s in secrets if s in data]
        for argv, data in outputs:
            leaks += [(argv, s) for s in secrets if s in data]
        assert not leaks, leaks
        assert files > 10, "the walk found nothing to look at"
        reports = os.listdir(fake.host("/var/lib/systraq/reports"))
        assert reports, "no report was kept"
        # The jobs met the links: changes to the swapped names were
        # spooled (a file that became a link, a link that became a file).
        spool = Spool(fake.settings())
        seen = [r for batch in spool.pending() + spool.delivered()
                for r in spool.records(batch)
                if r.get("path", "").startswith("/home/mallory/")]
        assert seen, "no job saw the swapped names change"
        record(runs=runs, files=files, swaps=swaps, changes_seen=len(seen))
    finally:
        if child:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
        shutil.rmtree(top)


def test_the_leak_search_can_fail(tmp_path):
    """The walk's two halves, shown to see a leak: a copy of the secret
    readable by others is found; one in a closed directory is not."""
    content = b"secret\n"
    found = needles(content, b"tok")
    assert base64.b64encode(hashlib.sha256(content).digest()) in found
    top = os.fsencode(tmp_path)
    os.chmod(top, 0o755)
    (tmp_path / "open").write_bytes(b"x " + hashlib.md5(content).hexdigest().encode())
    (tmp_path / "open").chmod(0o644)
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    (closed / "copy").write_bytes(content)
    (closed / "copy").chmod(0o644)
    exposed = list(exposed_files(top, b"/nonexistent"))
    if os.geteuid() == 0:
        assert exposed == [os.path.join(top, b"open")]
    else:  # files owned by the user are never protected
        assert os.path.join(top, b"open") in exposed
