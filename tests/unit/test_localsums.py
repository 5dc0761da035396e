# SPDX-License-Identifier: GPL-2.0-or-later
import hashlib
import os

import pytest

from systraq import localsums
from systraq.errors import ConfigError, RunError
from systraq.localsums import Line

SUMS = "/var/lib/systraq/systraq.sums"
LEGACY = "/var/lib/systraq/systraq.md5sums"


def md5(data):
    return hashlib.md5(data).hexdigest()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def sums(root, text, name=SUMS):
    return root.write(name, text)


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
