# SPDX-License-Identifier: GPL-2.0-or-later
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from systraq import localsums
from systraq.errors import ConfigError, RunError, UsageError
from systraq.localsums import Line

from .conftest import as_nobody, world_readable_root

AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (files closed to nobody)")
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}

SUMS = "/var/lib/systraq/systraq.sums"
LEGACY = "/var/lib/systraq/systraq.md5sums"


def md5(data):
    return hashlib.md5(data).hexdigest()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def sums(root, text, name=SUMS):
    return root.write(name, text)


# Names coreutils escapes (backslash, newline, carriage return), one that
# is not UTF-8, and plain ones.
ODD_NAMES = [b"/usr/local/share/new\nline", b"/usr/local/share/back\\slash",
             b"/usr/local/share/cr\rname", b"/usr/local/share/caf\xe9",
             b"/usr/local/share/two  spaces", b"/usr/local/share/#hash"]


def coreutils(root, tool, paths, *options):
    """What the real ``tool`` (md5sum, sha256sum) writes for logical
    ``paths`` in the fake root, with names made logical again."""
    out = subprocess.run([tool, *options, *(root.host(p) for p in paths)], env=ENV,
                         check=True, capture_output=True).stdout
    # The root's own name holds nothing coreutils escapes.
    return out.replace(b"  " + root.path + b"/", b"  /").replace(b" *" + root.path + b"/", b" */")


def coreutils_check(root, tool, text):
    """Run ``tool -c`` on sums ``text`` (logical names) against the fake root."""
    host = text.replace(b"  /", b"  " + root.path + b"/").replace(b" */", b" *" + root.path + b"/")
    checked = root.write("/tmp/check.sums", host)
    return subprocess.run([tool, "-c", checked], env=ENV, capture_output=True)


# --- reading the format ------------------------------------------------------


def test_parse_reads_both_algorithms_markers_comments_and_blank_lines(root):
    path = sums(root, (
        "# made by hand\n"
        "\n"
        f"{md5(b'a')}  /usr/local/bin/a\n"
        f"{sha256(b'b')} */usr/local/bin/b\n"
        "   \n"
        f"{md5(b'c').upper()}  /usr/local//lib/c\r\n"
        f"  {sha256(b'd')}\t/usr/local/d\n"
        f"{md5(b'e')} /usr/local/e"   # BSD 'md5 -r', no final newline
    ).encode())
    assert localsums.parse(path) == [
        Line(md5(b"a"), "md5", b"/usr/local/bin/a", 3),
        Line(sha256(b"b"), "sha256", b"/usr/local/bin/b", 4),
        Line(md5(b"c"), "md5", b"/usr/local/lib/c", 6),
        Line(sha256(b"d"), "sha256", b"/usr/local/d", 7),
        Line(md5(b"e"), "md5", b"/usr/local/e", 8),
    ]


def test_parse_unescapes_names_as_md5sum_c_does(root):
    path = sums(root, (
        f"\\{md5(b'x')}  /usr/local/new\\nline\n"
        f"\\{md5(b'x')} */usr/local/back\\\\slash\\r\n"
        # Without the leading backslash a backslash is just a byte.
        f"{md5(b'x')}  /usr/local/plain\\n\n"
    ).encode())
    assert [line.path for line in localsums.parse(path)] == [
        b"/usr/local/new\nline", b"/usr/local/back\\slash\r", b"/usr/local/plain\\n"]


def test_parse_keeps_non_utf8_names_as_bytes(root):
    path = sums(root, md5(b"x").encode() + b"  /usr/local/caf\xe9\n")
    assert localsums.parse(path)[0].path == b"/usr/local/caf\xe9"


def test_lines_written_by_real_md5sum_and_sha256sum_verify(root):
    for number, path in enumerate(ODD_NAMES):
        root.write(path, b"content %d" % number)
    text = (coreutils(root, "md5sum", ODD_NAMES[:3])
            + coreutils(root, "sha256sum", ODD_NAMES[3:], "--binary"))
    assert text.startswith(b"\\") and b"\\n" in text   # escaped, as coreutils does it
    sums(root, text)
    assert [line.path for line in localsums.parse(root.host(SUMS))] == ODD_NAMES
    assert [line.algorithm for line in localsums.parse(root.host(SUMS))] == ["md5"] * 3 + ["sha256"] * 3
    result = localsums.verify(root.settings(), workers=1)
    assert result.ok == ODD_NAMES and not result.changed
    root.write(ODD_NAMES[0], b"changed")
    root.write(ODD_NAMES[3], b"changed")
    result = localsums.verify(root.settings(), workers=1)
    assert result.changed == [ODD_NAMES[0], ODD_NAMES[3]]
    assert result.ok == [ODD_NAMES[1], ODD_NAMES[2], *ODD_NAMES[4:]]


def test_malformed_lines_are_all_named_by_file_and_line(root):
    path = sums(root, (
        "# fine\n"
        f"{md5(b'a')}  /usr/local/a\n"
        f"{md5(b'a')[:-1]}  /usr/local/short\n"        # 3
        "not a checksum at all\n"                        # 4
        f"{md5(b'a')}  usr/local/relative\n"             # 5
        f"\\{md5(b'a')}  /usr/local/bad\\tescape\n"      # 6
        f"MD5 (/usr/local/a) = {md5(b'a')}\n"            # 7
        f"{md5(b'a')}  /usr/local/../etc/shadow\n"       # 8
        f"{md5(b'a')}  \n"                               # 9
        f"{md5(b'a')}x  /usr/local/a\n"                  # 10
        "  # only a '#' in the first column is a comment\n"  # 11
    ).encode())
    with pytest.raises(ConfigError) as caught:
        localsums.parse(path)
    where = os.fsdecode(path)
    assert caught.value.lines() == [
        f"{where}:3: a digest of 31 hex digits; expected 32 (md5) or 64 (sha256)",
        f"{where}:4: not a checksum line (expected 'DIGEST  PATH', as md5sum or sha256sum write it)",
        f"{where}:5: not an absolute path (name files from /)",
        f"{where}:6: bad escape in the file name (after a leading '\\' only \\\\, \\n and \\r "
        "may follow a backslash)",
        f"{where}:7: BSD-style line ('ALGO (name) = digest', md5sum --tag); "
        "write it as 'DIGEST  PATH'",
        f"{where}:8: '.' or '..' in the path (write it without them)",
        f"{where}:9: no file name",
        f"{where}:10: not a checksum line (expected 'DIGEST  PATH', as md5sum or sha256sum write it)",
        f"{where}:11: not a checksum line (expected 'DIGEST  PATH', as md5sum or sha256sum write it)",
    ]
    assert caught.value.exit_status == 2


def test_parse_refuses_a_symlinked_or_missing_sums_file(root):
    root.write("/etc/secret", "x\n", mode=0o600)
    root.symlink(root.host("/etc/secret"), SUMS)
    with pytest.raises(RunError, match="symbolic link; not followed"):
        localsums.parse(root.host(SUMS))
    with pytest.raises(RunError, match="no such file"):
        localsums.parse(root.host(LEGACY))


# --- verifying ---------------------------------------------------------------


@pytest.fixture
def local(root):
    """A /usr/local with a few files and their lines in systraq.sums."""
    for name in ("same", "edited", "gone", "swapped", "retyped", "twice"):
        root.write(f"/usr/local/bin/{name}", name.encode(), mode=0o755)
    lines = [f"{md5(name.encode())}  /usr/local/bin/{name}"
             for name in ("same", "edited", "gone", "swapped", "retyped")]
    lines.append(f"{sha256(b'twice')} */usr/local/bin/twice")
    lines.append(f"{md5(b'stale')}  /usr/local/bin/twice")
    sums(root, "# trusted after install\n" + "\n".join(lines) + "\n")
    root.write("/usr/local/bin/edited", b"edited, later", mode=0o755)
    os.unlink(root.host("/usr/local/bin/gone"))
    os.unlink(root.host("/usr/local/bin/swapped"))
    root.write("/tmp/evil", b"swapped")
    root.symlink("/tmp/evil", "/usr/local/bin/swapped")
    os.unlink(root.host("/usr/local/bin/retyped"))
    root.mkdir("/usr/local/bin/retyped")
    return root


def test_verify_sorts_every_line_into_ok_changed_and_missing(local):
    result = localsums.verify(local.settings(), workers=1)
    assert result.source == local.host(SUMS) and not result.legacy
    assert result.ok == [b"/usr/local/bin/same"]
    # A symlink is never followed, even to content with the recorded
    # digest; a path listed twice counts by its worst line.
    assert result.changed == [b"/usr/local/bin/edited", b"/usr/local/bin/swapped",
                              b"/usr/local/bin/retyped", b"/usr/local/bin/twice"]
    assert result.reasons == {
        b"/usr/local/bin/edited": "content differs (md5)",
        b"/usr/local/bin/swapped": "a symbolic link (to /tmp/evil), not a regular file",
        b"/usr/local/bin/retyped": "a directory, not a regular file",
        b"/usr/local/bin/twice": "content differs (md5)",
    }
    assert result.missing == [b"/usr/local/bin/gone"]
    assert result.unreadable == []


def test_verify_in_worker_processes_finds_the_same(local):
    one = localsums.verify(local.settings(), workers=1)
    assert localsums.verify(local.settings(), workers=3) == one


@AS_ROOT
def test_files_closed_to_the_systraq_user_are_unreadable_not_changed():
    fake = world_readable_root()
    try:
        fake.write("/usr/local/bin/open", b"open")
        fake.write("/usr/local/bin/closed", b"closed", mode=0o600)
        fake.write("/usr/local/private/inside", b"inside")
        fake.mkdir("/usr/local/private", mode=0o700)
        fake.mkdir("/var/lib/systraq")
        fake.write(SUMS, "".join(f"{md5(os.path.basename(p).encode())}  {p}\n" for p in (
            "/usr/local/bin/open", "/usr/local/bin/closed", "/usr/local/private/inside")))
        result = as_nobody(lambda: localsums.verify(fake.settings(), workers=1))
        assert result.ok == [b"/usr/local/bin/open"]
        assert result.unreadable == [b"/usr/local/bin/closed", b"/usr/local/private/inside"]
        assert result.changed == [] and result.missing == []
    finally:
        shutil.rmtree(os.path.dirname(fake.path))


def test_verify_checks_sha256_lines_with_sha256(root):
    root.write("/usr/local/sbin/tool", b"v1")
    sums(root, f"{sha256(b'v1')}  /usr/local/sbin/tool\n")
    assert localsums.verify(root.settings(), workers=1).ok == [b"/usr/local/sbin/tool"]
    root.write("/usr/local/sbin/tool", b"v2")
    result = localsums.verify(root.settings(), workers=1)
    assert result.reasons == {b"/usr/local/sbin/tool": "content differs (sha256)"}


def test_verify_does_not_pass_through_a_symlink_others_could_plant(root):
    # /srv is writable by everyone: a symlink there may be anybody's.
    root.mkdir("/srv", mode=0o777)
    root.write("/usr/local/real/tool", b"tool")
    root.symlink(root.host("/usr/local/real"), "/srv/link")
    sums(root, f"{md5(b'tool')}  /srv/link/tool\n")
    result = localsums.verify(root.settings(), workers=1)
    assert result.changed == [b"/srv/link/tool"]
    assert "not followed" in result.reasons[b"/srv/link/tool"]


def test_no_sums_file_is_nothing_declared_not_an_error(root):
    result = localsums.verify(root.settings(), workers=1)
    assert result.source is None
    assert (result.ok, result.changed, result.missing, result.unreadable) == ([], [], [], [])
    assert result.notes == [f"no {os.fsdecode(root.host(SUMS))}: no local files declared"]


def test_verify_reads_the_legacy_file_when_there_is_no_other(root):
    root.write("/usr/local/bin/old", b"old")
    sums(root, f"{md5(b'old')}  /usr/local/bin/old\n", name=LEGACY)
    result = localsums.verify(root.settings(), workers=1)
    assert result.source == root.host(LEGACY) and result.legacy
    assert result.ok == [b"/usr/local/bin/old"]
    assert result.notes == [f"{os.fsdecode(root.host(SUMS))} does not exist; "
                            f"read the old package's {os.fsdecode(root.host(LEGACY))}"]
    # Once systraq.sums exists, it alone counts, and the note says so.
    sums(root, f"{md5(b'new')}  /usr/local/bin/old\n")
    result = localsums.verify(root.settings(), workers=1)
    assert result.source == root.host(SUMS) and not result.legacy
    assert result.changed == [b"/usr/local/bin/old"]
    assert result.notes == [f"{os.fsdecode(root.host(LEGACY))} is ignored: "
                            f"{os.fsdecode(root.host(SUMS))} replaces it"]


def test_verify_stops_at_a_malformed_line(root):
    sums(root, "d41d8cd98f00b204e9800998ecf8427e  relative\n")
    with pytest.raises(ConfigError, match=r"systraq\.sums:1: not an absolute path"):
        localsums.verify(root.settings(), workers=1)


# --- recording ---------------------------------------------------------------


def read(root, logical):
    with open(root.host(logical), "rb") as handle:
        return handle.read()


def mode_of(root, logical):
    return os.stat(root.host(logical)).st_mode & 0o7777


def test_update_replaces_in_place_appends_and_keeps_every_other_line(root):
    for name in ("a", "b", "c", "d"):
        root.write(f"/usr/local/bin/{name}", name.encode() + b" v2")
    before = (
        "# trusted after the 2019 install\n"
        f"{md5(b'a')}  /usr/local/bin/a\n"
        "\n"
        f"{md5(b'other')} */usr/local/lib/other\r\n"
        f"{sha256(b'b v2')}  /usr/local/bin/b\n"
        "# keep this too\n"
        f"{md5(b'old c')}  /usr/local/bin/c\n"
        f"{md5(b'older c')}  /usr/local/bin/c"      # no final newline
    ).encode()
    sums(root, before)
    result = localsums.update(root.settings(), ["/usr/local/bin/a", b"/usr/local/bin/b",
                                                "/usr/local/bin/c", "/usr/local/bin/d",
                                                "/usr/local/bin/a"], workers=1)
    assert result.replaced == [b"/usr/local/bin/a", b"/usr/local/bin/c"]
    assert result.unchanged == [b"/usr/local/bin/b"]
    assert result.added == [b"/usr/local/bin/d"]
    assert result.written and result.converted_from is None and result.notes == []
    assert read(root, SUMS) == (
        "# trusted after the 2019 install\n"
        f"{sha256(b'a v2')}  /usr/local/bin/a\n"
        "\n"
        f"{md5(b'other')} */usr/local/lib/other\r\n"
        f"{sha256(b'b v2')}  /usr/local/bin/b\n"
        "# keep this too\n"
        f"{sha256(b'c v2')}  /usr/local/bin/c\n"   # the stale second line is gone
        f"{sha256(b'd v2')}  /usr/local/bin/d\n"
    ).encode()
    assert mode_of(root, SUMS) == 0o644
    verified = localsums.verify(root.settings(), workers=1)
    assert verified.ok == [b"/usr/local/bin/a", b"/usr/local/bin/b",
                           b"/usr/local/bin/c", b"/usr/local/bin/d"]
    assert verified.missing == [b"/usr/local/lib/other"]


def test_update_with_nothing_new_leaves_the_file_alone(root):
    root.write("/usr/local/bin/a", b"a")
    path = sums(root, f"# mine\n{sha256(b'a')}  /usr/local/bin/a\n")
    inode = os.stat(path).st_ino
    result = localsums.update(root.settings(), ["/usr/local/bin/a"], workers=1)
    assert result.unchanged == [b"/usr/local/bin/a"] and not result.written
    assert os.stat(path).st_ino == inode


def test_update_creates_the_file_and_writes_what_sha256sum_writes(root):
    for number, path in enumerate(ODD_NAMES):
        root.write(path, b"content %d" % number)
    result = localsums.update(root.settings(), ODD_NAMES, workers=2)
    assert result.added == ODD_NAMES
    text = read(root, SUMS)
    assert text == coreutils(root, "sha256sum", ODD_NAMES)
    checked = coreutils_check(root, "sha256sum", text)
    assert checked.returncode == 0, checked.stderr
    assert localsums.verify(root.settings(), workers=1).ok == ODD_NAMES


@pytest.mark.parametrize("given, message", [
    ("/usr/local/bin", "a directory; name the files in it"),
    ("/usr/local/bin/nothing", "no such file"),
    ("/usr/local/bin/link", "a symbolic link (to tool); record the file it points to"),
    ("/usr/local/bin/secret", "not world-readable (mode 0600): its digest would be readable "
                              "by the systraq user; list it in snapshot_root.list instead"),
    ("/root/tool", "/root is closed to others: the systraq user could not check it; "
                   "list it in snapshot_root.list instead"),
    ("usr/local/bin/tool", "not an absolute path: give the full path (systraq reads the "
                           "files below its root, not below the current directory)"),
    ("/usr/local/bin/../tool", "'.' or '..' in the path (write it without them)"),
])
def test_update_refuses_what_it_cannot_record_and_writes_nothing(root, given, message):
    root.write("/usr/local/bin/tool", b"tool")
    root.write("/usr/local/bin/secret", b"secret", mode=0o600)
    root.symlink("tool", "/usr/local/bin/link")
    root.mkdir("/root", mode=0o700)
    root.write("/root/tool", b"tool")
    before = f"# mine\n{md5(b'x')}  /usr/local/bin/tool\n".encode()
    sums(root, before)
    with pytest.raises(localsums.Refused) as caught:
        localsums.update(root.settings(), ["/usr/local/bin/tool", given], workers=1)
    assert caught.value.lines() == [f"{given}: {message}", "nothing was recorded"]
    assert caught.value.exit_status == 2
    # Not even the good path was recorded.
    assert read(root, SUMS) == before


def test_update_refusal_names_every_bad_path_and_creates_no_file(root):
    root.mkdir("/usr/local/bin")
    with pytest.raises(localsums.Refused) as caught:
        localsums.update(root.settings(), ["/usr/local/bin", "/usr/local/gone"], workers=1)
    assert caught.value.lines() == ["/usr/local/bin: a directory; name the files in it",
                                    "/usr/local/gone: no such file", "nothing was recorded"]
    assert not os.path.lexists(root.host(SUMS))


def test_update_refuses_to_rewrite_a_malformed_file(root):
    root.write("/usr/local/bin/a", b"a")
    before = b"# mine\nthis is not a sum\n"
    sums(root, before)
    with pytest.raises(ConfigError, match=r"systraq\.sums:2: not a checksum line"):
        localsums.update(root.settings(), ["/usr/local/bin/a"], workers=1)
    assert read(root, SUMS) == before


def test_update_converts_the_legacy_file_and_leaves_it_alone(root):
    root.write("/usr/local/bin/old", b"old")
    root.write("/usr/local/bin/new", b"new")
    legacy = (f"# made by md5sum in 2004\n{md5(b'old')}  /usr/local/bin/old\n").encode()
    sums(root, legacy, name=LEGACY)
    result = localsums.update(root.settings(), ["/usr/local/bin/new"], workers=1)
    assert result.converted_from == root.host(LEGACY) and result.written
    assert result.added == [b"/usr/local/bin/new"]
    assert result.notes == [f"{os.fsdecode(root.host(SUMS))} written from the lines of the old "
                            f"{os.fsdecode(root.host(LEGACY))}, which was left as it was and "
                            "is no longer read; remove it when you no longer need it"]
    assert read(root, LEGACY) == legacy
    assert read(root, SUMS) == legacy + f"{sha256(b'new')}  /usr/local/bin/new\n".encode()
    verified = localsums.verify(root.settings(), workers=1)
    assert verified.source == root.host(SUMS)
    assert verified.ok == [b"/usr/local/bin/old", b"/usr/local/bin/new"]


def test_update_keeps_a_narrowed_mode_and_ignores_the_admins_umask(root):
    root.write("/usr/local/bin/a", b"a")
    old = os.umask(0o077)
    try:
        localsums.update(root.settings(), ["/usr/local/bin/a"], workers=1)
        assert mode_of(root, SUMS) == 0o644   # the systraq user must read it
        os.chmod(root.host(SUMS), 0o600)
        root.write("/usr/local/bin/a", b"a2")
        localsums.update(root.settings(), ["/usr/local/bin/a"], workers=1)
        assert mode_of(root, SUMS) == 0o640   # narrowed stays narrow, group may read
    finally:
        os.umask(old)


def test_update_needs_the_state_directory(root):
    root.write("/usr/local/bin/a", b"a")
    shutil.rmtree(root.host("/var/lib/systraq"))
    with pytest.raises(RunError, match="no such directory"):
        localsums.update(root.settings(), ["/usr/local/bin/a"], workers=1)


def test_update_needs_a_path(root):
    with pytest.raises(UsageError, match="at least one path"):
        localsums.update(root.settings(), [], workers=1)


def test_cli_update_then_check_and_exit_statuses(root, capsys):
    from systraq.cli import main
    top = os.fsdecode(root.path)
    root.write("/usr/local/bin/tool", "v1\n")
    assert main(["--root", top, "localsums", "-v"]) == 0
    assert "nothing declared" in capsys.readouterr().out
    assert main(["--root", top, "localsums", "--update", "/usr/local/bin/tool"]) == 0
    assert capsys.readouterr().out == "added: /usr/local/bin/tool\n"
    assert main(["--root", top, "localsums"]) == 0
    root.write("/usr/local/bin/tool", "v2\n")
    assert main(["--root", top, "localsums", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [c["path"] for c in data["changed"]] == ["/usr/local/bin/tool"]
    assert main(["--root", top, "localsums", "--update", "relative/path"]) == 2
