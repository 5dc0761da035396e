# SPDX-License-Identifier: GPL-2.0-or-later
"""The first snapshot after an upgrade, against .stat files the old
package's real st_snapshot wrote (fixtures/oldstat, made by
tools/make-oldstat-fixture from the tree in its tree.json)."""

import json
import os
import shutil
import subprocess

import pytest

from systraq import config, oldstat, snapshot
from systraq.spool import Spool, stamp

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "oldstat")
# The tree has files of uid 4242 and daemon, as the old run saw them.
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown)")
# When the old package last looked: before the upgrade, whatever the clock says.
OLD_TIME = 1_700_000_000


def fixture(name):
    with open(os.path.join(FIXTURE, name), "rb") as handle:
        return handle.read()


def build(root, stat_file="pub.sha256.stat", mode="pub", conf_text=""):
    """The fixture's tree below ``root`` as the old run saw it, its lists
    and accounts, and the old .stat file in the mode's directory."""
    root.write("/etc/passwd", fixture("passwd"))
    root.write("/etc/group", fixture("group"))
    for entry in json.loads(fixture("tree.json")):
        path = root.host(entry["path"].encode("utf-8", "surrogateescape"))
        if entry["type"] == "d":
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(entry["content"].encode("utf-8"))
        os.chown(path, entry["uid"], entry["gid"])
        os.chmod(path, int(entry["mode"], 8))
    for name in ("snapshot_pub.list", "snapshot_pub.homelist", "snapshot_root.list",
                 "snapshot_root.homelist"):
        path = root.write("/etc/systraq/" + name, fixture(name))
        os.utime(path, (OLD_TIME - 3600, OLD_TIME - 3600))
    root.write("/etc/systraq/systraq.conf", "[snapshot]\n" + conf_text)
    settings = root.settings()
    directory = settings.mode_dir(mode)
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o700 if mode == "root" else 0o750)
    target = os.path.join(directory, f"snapshot_{mode}.stat".encode())
    with open(target, "wb") as handle:
        handle.write(fixture(stat_file))
    os.utime(target, (OLD_TIME, OLD_TIME))
    return target


def take(root, mode="pub"):
    path = root.host("/etc/systraq/systraq.conf")
    return snapshot.run(root.settings(), config.load(path), mode, workers=1)


def changes(result):
    """(path, change) of every record but the baseline."""
    return sorted((r["path"], r["change"]) for r in result.records if r["change"] != "baseline")


def spooled(root):
    spool = Spool(root.settings())
    return [r for b in spool.pending() for r in spool.records(b)]


# --- parsing --------------------------------------------------------------------

def test_the_fixture_parses_into_its_sections():
    old = oldstat.parse(fixture("pub.sha256.stat"), OLD_TIME)
    assert old.sections == {"homes", "remainder", "sums", "permissions"}
    assert old.algorithm == "sha256" and old.tool == b"sha256sum"
    resolved = oldstat.resolve(old, [b"/etc/w/cut\\cme"], [])
    assert resolved.complete
    # The line echo stopped at "\\c", and the next file's line after it.
    assert resolved.files[b"/etc/w/cut\\cme"].perm == 0o644
    assert resolved.files[b"/etc/w/.hidden"].perm == 0o644
    # "lit\\nnl" printed over two lines.
    assert resolved.files[b"/etc/w/lit\\nnl"].user == "root"
    assert resolved.skipped == {}
    assert old.built_from == b"/etc/systraq/snapshot_pub.list and /etc/systraq/snapshot_pub.homelist"
    assert len(old.homes) == 5
    # sha256sum's escapes undone: exact names; "//" of a home with a
    # trailing slash folded.
    assert old.digests[b"/etc/w/new\nline"] and old.digests[b"/etc/w/back\\slash"]
    assert b"/home/bob/.bashrc" in old.digests
    # The secret file: listed, but nobody could hash it.
    assert b"/etc/w/secret" not in old.digests
    assert not old.skipped


def test_a_stop_in_the_last_name_is_not_a_cut_file():
    data = (b"# remainder of file built from a and b\n"
            b"# ownership and permissions of critical files\n"
            b"-rw-r--r-- root root /etc/plain\n-rwxr-xr-x root root /etc/x")
    old = oldstat.parse(data)
    assert oldstat.resolve(old, [b"/etc/x\\cy"], []).files[b"/etc/x\\cy"].perm == 0o755
    assert oldstat.resolve(old, [b"/etc/x\\cy"], []).complete
    assert not oldstat.resolve(old, [], []).complete


def test_a_home_of_slash_and_lines_that_disagree():
    data = (b"# ownership and permissions of homedirs\n"
            b"drwxr-xr-x root root /\ndrwxr-xr-x root root /home/x/\n"
            b"lrwxrwxrwx root root /home/l -> /srv/l\n"
            b"# remainder of file built from a and b\n"
            b"# ownership and permissions of critical files\n"
            b"-rw-r--r-- root root /etc/a\n-rw------- root root /etc/a\n"
            b"-rw-r--r-- root root /etc/b\n-rw-r--r-- root root /etc/b\n")
    resolved = oldstat.resolve(oldstat.parse(data), [], [b"/home/x", b"/home/l"])
    # "/" is no home the snapshot watches: passed over, not counted.
    assert sorted(resolved.homes) == [b"/home/l", b"/home/x"]
    assert resolved.homes[b"/home/l"].kind == "l"
    # Two lines that disagree: neither believed; the same line twice is one.
    assert sorted(resolved.files) == [b"/etc/b"] and b"/etc/a" in resolved.maybe
    assert resolved.skipped == {"listed twice": 1}


def test_permission_strings():
    listed, name = oldstat.split_line(b"-rwsr-xr-x root root /etc/w/suid")
    assert (listed.kind, listed.perm, listed.user, name) == ("f", 0o4755, "root", b"/etc/w/suid")
    assert oldstat.split_line(b"drwxrwxrwT 4242 4242 /tmp/x")[0].perm == 0o1776
    assert oldstat.split_line(b"-rw-r-Sr--+ a b /x")[0].perm == 0o2644
    for bad in (b"-rw-r--r-- root root", b"rw-r--r-- root root /x", b"-rwzr--r-- a b /x", b""):
        assert oldstat.split_line(bad) is None


def test_the_mangling_is_what_find_read_and_dash_echo_do(tmp_path):
    """mangle() against the real pipeline of st_snapshot, on odd names."""
    names = [b"plain", b"one space", b"two  spaces", b" lead", b"new\nline", b"back\\slash",
             b"lit\\nnl", b"tab\tx", b"quo\"te", b"caf\xc3\xa9", b"v\x0bx", b"oct\\101",
             b"bell\\a", b"x\\0101y", b"cr\rx", b"end\\"]
    for name in names:
        with open(os.path.join(os.fsencode(tmp_path), name), "wb"):
            pass
    out = subprocess.run(
        ["/bin/sh", "-c", "find . -type f -ls | while read i m p n u g s m d t f; "
         "do echo $p $u $g $f; done"],
        cwd=tmp_path, capture_output=True, check=True, env={"PATH": "/usr/bin:/bin"}).stdout
    printed = out.split(b"\n")
    for name in names:
        texts = [text for text, stopped in oldstat.mangle(b"./" + name)]
        assert any(any(line.endswith(b" " + text) for line in printed) or
                   (b" " + text + b"\n") in out for text in texts), name


def test_a_cut_or_damaged_file_is_counted_never_a_traceback():
    data = fixture("pub.sha256.stat")
    for end in range(0, len(data), 97):
        old = oldstat.parse(data[:end], OLD_TIME)
        resolved = oldstat.resolve(old, [], [])
        assert isinstance(resolved.files, dict)
    cut = oldstat.parse(data[:data.index(b"/etc/w/sub/deep\n-rw") + 20], OLD_TIME)
    assert not oldstat.resolve(cut, [], []).complete
    garbage = oldstat.parse(b"# remainder of file built from x\n\xff\x00 junk\n"
                            b"# sha256sum of critical files\nnot a digest\n"
                            b"\\abc  bad\\q escape\n0123  /short\n", OLD_TIME)
    assert sum(garbage.skipped.values()) == 4 and not garbage.digests


def test_only_the_old_format_is_taken_for_old():
    assert oldstat.is_old_format(fixture("root.sha256.stat"))
    assert oldstat.is_old_format(fixture("pub.nosum.stat"))
    assert not oldstat.is_old_format(b"f 0644 root root 5 2026-01-01 00:00:00 ab /etc/x\n")
    assert not oldstat.is_old_format(b"")


# --- the first snapshot after the upgrade ---------------------------------------

@AS_ROOT
@pytest.mark.parametrize("stat_file", ["pub.sha256.stat", "pub.md5.stat", "pub.nosum.stat"])
def test_an_unchanged_system_yields_no_records(root, stat_file):
    build(root, stat_file)
    result = take(root)
    assert result.baseline
    assert [r["change"] for r in result.records] == ["baseline"]
    summary = result.old_stat
    assert summary["new_files"] == "compared"
    assert summary["compared"] >= 20 and summary["skipped"] == 0
    # The old file gave way to the new format.
    stat_file = os.path.join(root.settings().state_dir, b"snapshot_pub.stat")
    assert not oldstat.is_old_file(stat_file)
    assert take(root).records == []


@AS_ROOT
def test_an_unchanged_root_mode_yields_no_records(root):
    build(root, "root.sha256.stat", mode="root")
    result = take(root, "root")
    assert [r["change"] for r in result.records] == ["baseline"]
    assert result.old_stat["compared"] >= 20 and result.old_stat["new_files"] == "compared"


@AS_ROOT
def test_each_change_yields_one_record_of_its_kind(root):
    build(root)
    # What happened between the old package's last run and the upgrade:
    root.write("/etc/w/edit", "two\n")
    os.unlink(root.host("/etc/w/gone"))
    os.chmod(root.host("/etc/w/chmod"), 0o666)
    os.chmod(root.host("/etc/w/tool"), 0o4755)
    os.chown(root.host("/etc/w/owned"), 1000, 4242)
    os.chown(root.host("/etc/w/keep"), 0, 1001)
    root.write("/etc/w/fresh", "new\n")
    root.write("/etc/w/new\nline", "changed\n")
    os.unlink(root.host("/etc/w/sub/deep"))
    root.mkdir("/etc/w/sub/deep")
    os.chmod(root.host("/home/alice"), 0o777)
    root.write("/home/alice/.bash_login", "not in the list\n")
    result = take(root)
    assert changes(result) == [
        ("/etc/w/chmod", "mode"), ("/etc/w/edit", "content"), ("/etc/w/fresh", "added"),
        ("/etc/w/gone", "removed"), ("/etc/w/keep", "group"), ("/etc/w/new\\nline", "content"),
        ("/etc/w/owned", "owner"), ("/etc/w/sub/deep", "type"), ("/etc/w/tool", "mode"),
        ("/home/alice", "mode")]
    by_path = {r["path"]: r for r in result.records}
    assert by_path["/etc/w/chmod"]["flags"] == ["world-writable gained"]
    assert by_path["/etc/w/tool"]["flags"] == ["setuid gained"]
    assert (by_path["/etc/w/owned"]["before"], by_path["/etc/w/owned"]["after"]) == ("4242", "alice")
    assert (by_path["/etc/w/keep"]["before"], by_path["/etc/w/keep"]["after"]) == ("root", "bob")
    assert by_path["/home/alice"]["flags"] == ["world-writable gained"]
    assert by_path["/etc/w/fresh"]["mode"] == "0644"
    # Records say when the old package last looked; no digest, no content.
    assert {r["since"] for r in result.records if r["change"] != "baseline"} == {stamp(OLD_TIME)}
    text = json.dumps(result.records)
    assert "changed" not in text and "two" not in text
    assert not any(len(word) >= 32 and all(c in "0123456789abcdef" for c in word)
                   for word in text.replace('"', " ").split())
    # Spooled once, with the baseline; the next run has nothing to say.
    assert sorted((r["path"], r["change"]) for r in spooled(root) if r["change"] != "baseline") \
        == changes(result)
    assert take(root).records == []


@AS_ROOT
def test_root_mode_changes_say_what_never_a_digest(root):
    build(root, "root.sha256.stat", mode="root")
    root.write("/etc/shadowish", "root:$y$new::::::\n", mode=0o640)
    os.chmod(root.host("/root/.ssh/authorized_keys"), 0o644)
    os.unlink(root.host("/home/alice/.ssh/authorized_keys"))
    root.write("/root/.ssh/id_ed25519", "key\n", mode=0o600)
    result = take(root, "root")
    assert changes(result) == [
        ("/etc/shadowish", "content"), ("/home/alice/.ssh/authorized_keys", "removed"),
        ("/root/.ssh/authorized_keys", "mode"), ("/root/.ssh/id_ed25519", "added")]
    content = [r for r in result.records if r["change"] == "content"][0]
    assert set(content) == {"source", "mode", "path", "change", "since", "old_stat", "time"}
    assert "$y$" not in json.dumps(result.records)


@AS_ROOT
def test_md5_era_changes_are_found_by_reading_the_files_with_md5(root):
    build(root, "pub.md5.stat")
    root.write("/etc/w/edit", "two\n")
    result = take(root)
    assert changes(result) == [("/etc/w/edit", "content")]
    assert result.old_stat["digest"] == "md5sum"


@AS_ROOT
def test_an_unknown_digest_tool_compares_no_content(root):
    target = build(root)
    data = fixture("pub.sha256.stat").replace(b"# sha256sum of", b"# whirlpoolsum of")
    with open(target, "wb") as handle:
        handle.write(data)
    os.utime(target, (OLD_TIME, OLD_TIME))
    root.write("/etc/w/edit", "two\n")
    os.chmod(root.host("/etc/w/keep"), 0o600)
    assert changes(take(root)) == [("/etc/w/keep", "mode")]


@AS_ROOT
def test_odd_names_new_since_do_not_show_as_added(root):
    build(root)
    # Names the old script could not have printed back as they are: not
    # judged, rather than called new.
    root.write("/etc/w/with  blanks", "x\n")
    root.write("/etc/w/nl\nname", "x\n")
    root.write("/etc/w/glob?", "x\n")
    root.write("/etc/w/plain-new", "x\n")
    assert changes(take(root)) == [("/etc/w/plain-new", "added")]


@AS_ROOT
def test_changed_lists_mean_no_file_is_called_new(root):
    build(root)
    # The admin took systraq's new default list at the upgrade: it names
    # more than the old one did; none of that is new.
    root.write("/etc/systraq/snapshot_pub.list", fixture("snapshot_pub.list") + b"/etc/extra\n")
    root.write("/etc/extra/file", "x\n")
    root.write("/etc/w/fresh", "x\n")
    result = take(root)
    assert changes(result) == []
    assert result.old_stat["new_files"] == "not compared"


@AS_ROOT
def test_files_no_longer_listed_are_not_removed(root):
    build(root)
    root.write("/etc/systraq/snapshot_pub.list", "/etc/single.conf\n")
    os.unlink(root.host("/etc/w/gone"))
    result = take(root)
    # /etc/w/gone is gone: said so; the rest of /etc/w is still there,
    # only no longer watched.
    assert changes(result) == [("/etc/w/gone", "removed")]


@AS_ROOT
def test_a_malformed_old_file_is_counted_and_the_run_completes(root):
    target = build(root)
    data = fixture("pub.sha256.stat")
    # A line mangled, a line of junk, and the file cut short in the middle
    # of a line (the disk filled up under the old cron job).
    damaged = data.replace(b"-rw-r--r-- root root /etc/w/edit", b"-rw-r-- root /etc/w/edit")
    damaged = damaged.replace(b"# ownership and permissions of critical files\n",
                              b"# ownership and permissions of critical files\n\x00\xff junk\n")
    damaged = damaged[:damaged.index(b"/etc/w/keep\n-rw") + 8]
    with open(target, "wb") as handle:
        handle.write(damaged)
    os.utime(target, (OLD_TIME, OLD_TIME))
    root.write("/etc/w/fresh", "x\n")
    os.chmod(root.host("/etc/w/chmod"), 0o600)
    result = take(root)
    # What the file still says plainly is compared; a file missing from
    # it is not called new.
    assert changes(result) == [("/etc/w/chmod", "mode")]
    assert result.old_stat["skipped"] >= 3
    assert result.old_stat["new_files"] == "not compared"


@AS_ROOT
def test_a_run_killed_before_the_state_was_in_place_finds_the_same_records(root, monkeypatch):
    target = build(root)
    os.unlink(root.host("/etc/w/gone"))
    real_rename = os.rename

    def killed(source, destination):
        if source.endswith(b".next"):
            raise KeyboardInterrupt
        return real_rename(source, destination)

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    # Killed before the records were spooled: nothing spooled, the old
    # file stays, the next run finds them.
    monkeypatch.setattr(Spool, "add", boom)
    with pytest.raises(KeyboardInterrupt):
        take(root)
    monkeypatch.undo()
    assert spooled(root) == [] and oldstat.is_old_file(target)
    # Killed after spooling, before the rename: recovered, not repeated.
    monkeypatch.setattr(os, "rename", killed)
    with pytest.raises(KeyboardInterrupt):
        take(root)
    monkeypatch.undo()
    assert [(r["path"], r["change"]) for r in spooled(root)
            if r["change"] != "baseline"] == [("/etc/w/gone", "removed")]
    assert take(root).records == []
    assert [(r["path"], r["change"]) for r in spooled(root)
            if r["change"] != "baseline"] == [("/etc/w/gone", "removed")]
    # The old-format file did not stay behind the state.
    assert not oldstat.is_old_file(target)


@AS_ROOT
def test_a_removed_home_and_a_new_account(root):
    build(root)
    shutil.rmtree(root.host("/home/bob"))
    with open(root.host("/etc/passwd"), "ab") as handle:
        handle.write(b"carol:x:1002:1002::/home/carol:/bin/sh\n")
    root.mkdir("/home/carol", 0o755)
    result = take(root)
    assert ("/home/bob", "removed") in changes(result)
    assert ("/home/bob/.bashrc", "removed") in changes(result)
    # A new account's home: the old script looked at every home.
    assert ("/home/carol", "added") in changes(result)
    assert len(changes(result)) == 3


@AS_ROOT
def test_a_stopped_line_of_a_file_gone_since_hides_nothing(root):
    """The name with \\c is gone.  Without ST_SUM its line cannot be
    matched (counted, its removal unsaid), but the next file's line that
    echo printed after it is still found, so that file is not called new."""
    build(root, "pub.nosum.stat")
    os.unlink(root.host("/etc/w/cut\\cme"))
    result = take(root)
    assert changes(result) == []
    assert result.old_stat["skipped"] == 1 and result.old_stat["new_files"] == "compared"


@AS_ROOT
def test_a_stopped_line_of_a_file_gone_since_is_a_removal_when_its_digest_names_it(root):
    build(root)
    os.unlink(root.host("/etc/w/cut\\cme"))
    result = take(root)
    assert changes(result) == [("/etc/w/cut\\\\cme", "removed")]
    assert result.old_stat["skipped"] == 0
