# SPDX-License-Identifier: GPL-2.0-or-later
"""textdiff against the real GNU diff: every case is run through both."""

import os
import random
import subprocess

import pytest

from systraq.pathcodec import escape
from systraq.textdiff import cap, is_binary, unified

DIFF = "/usr/bin/diff"
# diff translates "No newline at end of file"; systraq's text is the C one.
ENV = {"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def gnu_diff(tmp_path, old, new, *options):
    """Run the real diff on OLD and NEW written below TMP_PATH."""
    paths = []
    for name, data in (("old", old), ("new", new)):
        path = tmp_path / name
        path.write_bytes(data)
        paths.append(str(path))
    proc = subprocess.run([DIFF, *options, *paths], env=ENV,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout


def gnu_unified(tmp_path, old, new, context=3):
    return gnu_diff(tmp_path, old, new, f"-U{context}",
                    "--label", "old", "--label", "new")


def numbered(n, fmt="line %d\n"):
    return b"".join((fmt % i).encode() for i in range(1, n + 1))


def replace_lines(data, changes):
    lines = data.split(b"\n")
    for index, text in changes.items():
        lines[index] = text
    return b"\n".join(lines)


TEN = numbered(10)
CONF = b"""\
# /etc/example.conf
[main]
user = root
port = 22

[logging]
level = info
file = /var/log/example.log
"""

CORPUS = {
    "changed line": (TEN, TEN.replace(b"line 5\n", b"line five\n")),
    "added at start": (TEN, b"new first\n" + TEN),
    "removed at start": (TEN, TEN.split(b"\n", 1)[1]),
    "added at end": (TEN, TEN + b"line 11\nline 12\n"),
    "removed at end": (TEN, numbered(8)),
    "old lacks final newline": (TEN[:-1], TEN),
    "new lacks final newline": (TEN, TEN[:-1]),
    "both lack final newline, last line changed":
        (TEN[:-1], TEN[:-1] + b" changed"),
    "both lack final newline, change nearby":
        (TEN[:-1], TEN[:-1].replace(b"line 8", b"line eight")),
    "only the final newline differs": (b"a", b"a\n"),
    "crlf line changed": (TEN.replace(b"\n", b"\r\n"),
                          TEN.replace(b"\n", b"\r\n").replace(b"line 3", b"x")),
    "crlf to lf": (TEN.replace(b"\n", b"\r\n"), TEN),
    "lone carriage returns": (b"a\rb\nc\n", b"a\rB\nc\n"),
    "old empty": (b"", TEN),
    "new empty": (TEN, b""),
    "empty to newline": (b"", b"\n"),
    "empty to no newline": (b"", b"x"),
    "non-utf-8 bytes": (b"caf\xe9\nna\xefve\n\xff\xfe\n",
                        b"caf\xc3\xa9\nna\xefve\n\xff\xfd\n"),
    "very long lines": (b"a" * 100000 + b"\nshort\n" + b"b" * 70000 + b"\n",
                        b"a" * 99999 + b"c\nshort\n" + b"b" * 70001 + b"\n"),
    "many hunks": (numbered(300),
                   replace_lines(numbered(300),
                                 {i: b"changed %d" % i
                                  for i in range(0, 300, 9)})),
    "hunks just merged and just apart": (
        numbered(40),
        replace_lines(numbered(40), {2: b"x", 9: b"y", 17: b"z"})),
    "identical": (TEN, TEN),
    "identical without final newline": (TEN[:-1], TEN[:-1]),
    "repeated lines slide": (b"a\nb\na\nb\nc\n", b"a\nb\na\nb\na\nb\nc\n"),
    "blank lines and braces": (b"{\n}\n\n{\n}\n", b"{\n}\n\n{\n  x\n}\n\n{\n}\n"),
    "config section moved": (CONF, CONF.replace(b"[logging]\n", b"")
                             + b"[logging]\n"),
    "everything changed": (TEN, numbered(7, "other %d\n")),
    "single line": (b"one\n", b"two\n"),
    "nul-free control bytes": (b"a\x1b[31m\nb\n", b"a\x1b[32m\nb\n"),
    "form feed and tabs": (b"a\tb\n\x0c\nc\n", b"a  b\n\x0c\nc\n"),
}


@pytest.mark.parametrize("context", [3, 0, 1])
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_unified_is_byte_identical_to_gnu_diff(tmp_path, name, context):
    old, new = CORPUS[name]
    expected = gnu_unified(tmp_path, old, new, context)
    assert unified(old, new, "old", "new", context) == expected


def test_identical_contents_give_no_diff():
    assert unified(TEN, TEN, "old", "new") == b""
    assert unified(b"", b"", "old", "new") == b""


def test_no_newline_marker_is_the_c_locale_text():
    diff = unified(b"a\n", b"b", "old", "new")
    assert diff.endswith(b"+b\n\\ No newline at end of file\n")


def test_labels_are_shown_as_given_and_times_follow_a_tab():
    label = escape(b"/etc/caf\xe9\n.conf")
    diff = unified(b"a\n", b"b\n", label, "new",
                   old_time="2026-11-21 07:00:00.000000000 +0000")
    assert diff.splitlines()[:2] == [
        b"--- /etc/caf\\xe9\\n.conf\t2026-11-21 07:00:00.000000000 +0000",
        b"+++ new"]


def test_non_ascii_label_is_utf_8_as_diff_prints_it(tmp_path):
    old, new = b"a\n", b"b\n"
    expected = gnu_diff(tmp_path, old, new, "-u",
                        "--label", "/etc/café", "--label", "/etc/naïve")
    assert unified(old, new, "/etc/café", "/etc/naïve") == expected


def test_negative_context_is_refused():
    with pytest.raises(ValueError):
        unified(b"a\n", b"b\n", "old", "new", context=-1)


# Lines drawn from a small alphabet, so that edits make repeated lines,
# blank lines and braces: the cases where one edit script can be drawn in
# several equally short ways and only GNU's own choices give its output.
ALPHABET = [b"a\n", b"b\n", b"c\n", b"d\n", b"e\n", b"\n", b"x y\n", b"}\n",
            b"a\r\n"]


def random_pair(rng):
    old = [rng.choice(ALPHABET) for _ in range(rng.randint(0, 15))]
    new = list(old)
    for _ in range(rng.randint(0, 5)):
        op = rng.randint(0, 2)
        if op == 0 or not new:
            new.insert(rng.randint(0, len(new)), rng.choice(ALPHABET))
        elif op == 1:
            del new[rng.randrange(len(new))]
        else:
            new[rng.randrange(len(new))] = rng.choice(ALPHABET)
    old, new = b"".join(old), b"".join(new)
    # A fifth of the files lose their final newline.
    if old and rng.random() < 0.2:
        old = old[:-1]
    if new and rng.random() < 0.2:
        new = new[:-1]
    return old, new


def test_random_edits_match_gnu_diff(tmp_path):
    rng = random.Random(20261121)
    mismatches = []
    for case in range(400):
        old, new = random_pair(rng)
        context = rng.choice([0, 1, 2, 3, 5])
        expected = gnu_unified(tmp_path, old, new, context)
        got = unified(old, new, "old", "new", context)
        if got != expected:
            mismatches.append(
                f"case {case}, context {context}\n"
                f"old={old!r}\nnew={new!r}\n"
                f"diff:\n{expected.decode('latin-1')}"
                f"textdiff:\n{got.decode('latin-1')}")
    assert not mismatches, (f"{len(mismatches)} of 400 differ; first:\n"
                            + "\n".join(mismatches[:3]))


def test_larger_files_with_scattered_edits_match_gnu_diff(tmp_path):
    # Past 64 lines, lines that match many others are only provisionally
    # discarded; this exercises that part of GNU's algorithm.
    rng = random.Random(7)
    alphabet = [b"%d\n" % i for i in range(30)] + [b"\n"] * 10 + [b"}\n"] * 10
    for size in (100, 500, 2000):
        old = [rng.choice(alphabet) for _ in range(size)]
        new = list(old)
        for _ in range(size // 10):
            pos = rng.randrange(len(new))
            op = rng.randint(0, 2)
            if op == 0:
                new.insert(pos, rng.choice(alphabet + [b"new %d\n" % pos]))
            elif op == 1:
                del new[pos]
            else:
                new[pos] = b"changed %d\n" % pos
        old, new = b"".join(old), b"".join(new)
        assert unified(old, new, "old", "new") == gnu_unified(tmp_path, old,
                                                              new)


BINARY_CASES = {
    "text": (b"a\n", b"b\n"),
    "nul at start": (b"\0a\n", b"b\n"),
    "nul in new only": (b"a\n", b"b\0\n"),
    "nul in last byte of first block": (b"a" * 4095 + b"\0", b"b\n"),
    "nul just past first block": (b"a" * 4096 + b"\0\n", b"b\n"),
    "nul far in": (b"a\n" * 10000 + b"\0", b"b\n"),
}


@pytest.mark.parametrize("name", sorted(BINARY_CASES))
def test_binary_detection_agrees_with_gnu_diff(tmp_path, name):
    old, new = BINARY_CASES[name]
    said = gnu_diff(tmp_path, old, new)
    blksize = os.stat(tmp_path / "old").st_blksize
    ours = is_binary(old, blksize) or is_binary(new, blksize)
    assert ours == said.startswith(b"Binary files "), said[:80]


def test_binary_test_reads_the_first_4096_bytes_by_default():
    assert is_binary(b"a" * 4095 + b"\0")
    assert not is_binary(b"a" * 4096 + b"\0")
    assert not is_binary(b"")


def test_cap_keeps_a_short_diff_whole():
    diff = unified(TEN, TEN.replace(b"line 5", b"five"), "old", "new")
    assert cap(diff, 200) == (diff, 0)
    assert cap(diff, len(diff.splitlines())) == (diff, 0)


def test_cap_cuts_to_max_lines_and_counts_the_rest():
    diff = unified(numbered(300), b"", "old", "new")
    assert len(diff.split(b"\n")) - 1 == 303
    text, cut = cap(diff, 200)
    assert cut == 103
    assert text.count(b"\n") == 200
    assert diff.startswith(text)
    assert cap(diff, 0) == (b"", 303)


def test_cap_counts_only_newlines_as_line_ends():
    # CRLF files give diff lines holding \r; they are not line ends.
    old = TEN.replace(b"\n", b"\r\n")
    diff = unified(old, b"", "old", "new")
    text, cut = cap(diff, 5)
    assert cut == 13 - 5
    assert text.endswith(b"-line 2\r\n")


def test_cap_refuses_negative_limits():
    with pytest.raises(ValueError):
        cap(b"x\n", -1)


def test_a_diff_that_cannot_run_is_one_clear_error(monkeypatch):
    from systraq import textdiff
    from systraq.errors import RunError
    monkeypatch.setattr(textdiff, "DIFF", "/nonexistent/diff")
    with pytest.raises(RunError, match=r"^cannot run /nonexistent/diff: No such file"):
        unified(b"a\n", b"b\n", "old", "new")


def test_contents_reach_diff_through_memory_not_paths(tmp_path, monkeypatch):
    """diff is handed the contents, never a file name: what it reads is
    what systraq read, whatever is on the disk now."""
    seen = []
    real = subprocess.run

    def spy(argv, **kwargs):
        seen.append(argv)
        return real(argv, **kwargs)
    monkeypatch.setattr(subprocess, "run", spy)
    assert unified(b"a\n", b"b\n", "/etc/x", "/etc/x") == (
        b"--- /etc/x\n+++ /etc/x\n@@ -1 +1 @@\n-a\n+b\n")
    assert [arg for arg in seen[0] if "/etc/" in arg] == ["/etc/x", "/etc/x"]
    assert all(arg.startswith("/proc/self/fd/") for arg in seen[0][-2:])
