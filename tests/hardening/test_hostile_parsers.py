# SPDX-License-Identifier: GPL-2.0-or-later
"""Property-based tests of every parser that reads what someone else wrote.

Each test feeds a parser hypothesis-made input built from the pieces its
format is made of (keywords, separators, digests) mixed with hostile
bytes (controls, ESC sequences, bytes that are not UTF-8), and checks
that nothing escapes but the documented errors (SystraqError and its
subclasses), and that what the parser says about its input -- messages,
report lines -- carries no raw control byte.  Where a round trip exists
(escape/unescape, a diff applied to its old text) it is checked too.

``max_examples`` is reduced under ``make check`` and large under
``make hardening`` (``scale``).
"""

import os
import re
import shutil
import pytest
import subprocess
import sys
import tempfile

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from systraq import attribution, config, dpkgdb, lists, records, report, sshkeys, textdiff
from systraq.contents import printable
from systraq.errors import SystraqError
from systraq.pathcodec import escape, unescape
from systraq.settings import Settings
from tests.hardening.conftest import ROOT, scaled
from tests.hardening.hostile import NASTY_CONTENT, NASTY_NAMES, assert_clean

# Hypothesis keeps a cache (the Unicode tables of st.text) in its home
# directory, by default .hypothesis/ in the tree: build/ is ignored and
# cleaned.  No example database: every run draws afresh.
set_hypothesis_home_dir(os.path.join(ROOT, "build", "hypothesis"))

EXAMPLES = scaled(150, 3000)
# One example may write a file and parse it: no deadline (the machine is
# shared), and the examples count comes from ``scale``.
PROFILE = dict(max_examples=EXAMPLES, deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow,
                                      HealthCheck.function_scoped_fixture,
                                      HealthCheck.data_too_large])

NASTY = st.sampled_from(NASTY_NAMES + [b"\x1b[2J", b"\x1b]0;x\x07", b"\x00", b"\xff",
                                       b"\\", b"\r", b"\t", b"\x9b"])


def pieces(*words):
    """Byte strings made of the format's own ``words`` and hostile bytes."""
    word = st.one_of(st.sampled_from([w if isinstance(w, bytes) else w.encode()
                                      for w in words]),
                     NASTY, st.binary(max_size=12),
                     st.text(max_size=8).map(lambda t: t.encode("utf-8", "surrogatepass")))
    return st.lists(word, max_size=24).map(b"".join)


def lines_of(*words):
    return st.lists(pieces(*words), max_size=12).map(b"\n".join)


class Counter:
    """How many examples a test tried, for its record."""

    def __init__(self):
        self.count = 0

    def __call__(self):
        self.count += 1


def fake_root():
    top = tempfile.mkdtemp(prefix="systraq-hostile-")
    return top, Settings(root=top)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


# -- pathcodec ---------------------------------------------------------------

def test_escape_round_trips_and_is_printable(record):
    tried = Counter()

    @hsettings(**PROFILE)
    @given(st.one_of(st.binary(max_size=300), NASTY,
                     st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass"))))
    def check(name):
        tried()
        shown = escape(name)
        assert unescape(shown) == name
        assert_clean(shown, "escape()")
        assert "\n" not in shown and "\t" not in shown
        # Text that already looks like an escape stays unambiguous.
        assert unescape(escape(shown.encode("utf-8", "surrogateescape"))) == \
            shown.encode("utf-8", "surrogateescape")
    check()
    record(examples=tried.count)


# -- lists.parse -------------------------------------------------------------

def test_list_parser_raises_only_config_errors(tmp_path, record):
    tried = Counter()
    path = os.fsencode(tmp_path / "snapshot_pub.list")

    @hsettings(**PROFILE)
    @given(lines_of("/etc/", "*", "?", "[a-z]", "#", "..", " ", "\t", "\r", "/", ".ssh",
                    "~", "//"),
           st.sampled_from(["system", "home"]))
    def check(data, kind):
        tried()
        write(path, data)
        try:
            entries = lists.parse(path, kind)
        except SystraqError as exc:
            for line in exc.lines():
                assert_clean(line, "list file error")
            return
        for entry in entries:
            assert b"\0" not in entry.pattern and b"\n" not in entry.pattern
            assert entry.pattern.startswith(b"/") == (kind == "system")
    check()
    record(examples=tried.count)


# -- config.load -------------------------------------------------------------

def test_config_loader_raises_only_config_errors(tmp_path, record):
    tried = Counter()
    path = os.fsencode(tmp_path / "systraq.conf")
    sections = ["[report]", "[snapshot]", "[contents]", "[check]", "[watch]", "[DEFAULT]",
                "[x\x1b[2J]"]
    keys = ["mailto", "digest", "exclude", "critical", "secret", "ignore", "max_size",
            "enabled", "mail_when", "=", ":", " = ", "yes", "sha256", "1M", "%",
            "/etc/x", "*", "\x1b[2J"]

    @hsettings(**PROFILE)
    @given(st.lists(st.one_of(st.sampled_from(sections).map(str.encode), pieces(*keys)),
                    max_size=14).map(b"\n".join))
    def check(data):
        tried()
        write(path, data)
        try:
            conf = config.load(path)
        except SystraqError as exc:
            for line in exc.lines():
                assert_clean(line, "config error")
            return
        for line in conf.warnings:
            assert_clean(line, "config warning")
    check()
    record(examples=tried.count)


# -- dpkg's database -----------------------------------------------------------

STATUS_WORDS = ["Package: ", "Status: ", "install ok installed", "deinstall ok config-files",
                "Version: ", "Architecture: ", "amd64", "all", "Multi-Arch: ", "same",
                "Conffiles:", "\n /etc/x ", "d41d8cd98f00b204e9800998ecf8427e", " obsolete",
                "newconffile", "\n\n", "\n", ": ", "dpkg", "1.0-1"]


def _sum_line():
    return st.one_of(
        st.tuples(st.text("0123456789abcdef", min_size=32, max_size=32), pieces("/", "etc/", "usr"))
        .map(lambda t: t[0].encode() + b"  " + t[1]),
        pieces("  ", "d41d8cd98f00b204e9800998ecf8427e", "/", "./"))


def test_dpkg_database_raises_only_database_errors(record):
    tried = Counter()
    top, settings = fake_root()
    admin = settings.dpkg_admindir

    @hsettings(**PROFILE)
    @given(lines_of(*STATUS_WORDS),
           lines_of("/etc/x", "\n", ":", "pkg", "/usr/bin/y", "/"),
           st.lists(_sum_line(), max_size=8).map(b"\n".join),
           lines_of("/", "/etc/x", "\n", "./"),
           st.sampled_from([b"1\n", b"0\n", b"2\n", b"x", b""]))
    def check(status, diversions, sums, listing, fmt):
        tried()
        write(admin + b"/status", status)
        write(admin + b"/diversions", diversions)
        write(admin + b"/info/format", fmt)
        try:
            dpkgdb.read_status(settings)
        except SystraqError as exc:
            assert_clean(str(exc), "status error")
        try:
            dpkgdb.read_diversions(settings)
        except SystraqError as exc:
            assert_clean(str(exc), "diversions error")
        # A package whose md5sums and list files are the hostile ones.
        write(admin + b"/status", b"Package: dpkg\nStatus: install ok installed\n"
              b"Version: 1.0\nArchitecture: amd64\n")
        write(admin + b"/diversions", b"")
        write(admin + b"/info/format", b"1\n")
        write(admin + b"/info/dpkg.md5sums", sums)
        write(admin + b"/info/dpkg.list", listing)
        db = dpkgdb.Database(settings)
        package = db.installed()[0]
        found = db.sums(package)
        for path in found:
            assert path.startswith(b"/")
        db.files(package)
        for _, _, message in db.problems:
            assert_clean(message, "dpkg database problem")
    try:
        check()
    finally:
        shutil.rmtree(top)
    record(examples=tried.count)


# -- dpkg.log and apt's history.log -------------------------------------------

DPKG_WORDS = ["2025-03-10 10:32:01 ", "2025-03-10 10:32:0", "startup archives unpack",
              "upgrade ", "install ", "remove ", "purge ", "configure ", "trigproc ",
              "status installed ", "status half-configured ", "conffile ", " keep",
              " install", "openssh-server:amd64 ", "pkg:all ", "1:9.2p1-2 ", "<none>",
              " ", "/etc/ssh/sshd_config"]
HISTORY_WORDS = ["Start-Date: 2025-03-10  10:32:00", "End-Date: 2025-03-10  10:33:00",
                 "Commandline: apt-get install ", "Requested-By: alice (1000)",
                 "Install: ", "Upgrade: ", "Remove: ", "Purge: ", "Error: ",
                 "pkg:amd64 (1.0, 2.0)", "pkg:amd64 (1.0, automatic)", ", ", "\n\n", "\n"]


def test_log_readers_raise_only_their_errors(record):
    tried = Counter()
    top, settings = fake_root()
    now = 1_741_602_720 + 3600

    @hsettings(**PROFILE)
    @given(lines_of(*DPKG_WORDS), lines_of(*HISTORY_WORDS),
           st.sampled_from([b"", b".1", b".2.gz"]))
    def check(dpkg_log, history, rotated):
        tried()
        for name in (settings.dpkg_log, settings.apt_history):
            for suffix in (b"", b".1", b".2.gz"):
                try:
                    os.unlink(name + suffix)
                except FileNotFoundError:
                    pass
        # A rotated copy that claims to be compressed and is not is a
        # damaged copy, not a crash.
        write(settings.dpkg_log + rotated, dpkg_log)
        write(settings.apt_history + rotated, history)
        reader = attribution.Attribution(settings, utc_offset=0, native_arch="amd64")
        try:
            events = reader.events(0)
            reader.apt_runs(0)
        except SystraqError as exc:
            assert_clean(str(exc), "log error")
            return
        for event in events:
            assert_clean(reader.describe(event, now=now), "event label")
            operation = report.Operation(event)
            assert_clean(operation.text(now), "operation line")
    try:
        check()
    finally:
        shutil.rmtree(top)
    record(examples=tried.count)


# -- authorized_keys -------------------------------------------------------------

# Real keys (public halves, made for these tests) so that lines parse.
ED25519 = b"AAAAC3NzaC1lZDI1NTE5AAAAIGz1hJzRkq3bHDmqJ3Cz6JfYlY9k9j3yZ2k3V2Hn8cQp"
RSA_BLOB = (b"AAAAB3NzaC1yc2EAAAADAQABAAAAgQDDsD9V+4S3vOjvBBkC2J0rn8Qh1t2V5b5kX0d9yq5m"
            b"6u1KcQ2vOcYQn2d2Yt2w1ZcP6k8e1sVwB6wB1d6z0c3YbLq1P5c3nJ9z8yH5aV7qQ2r1Y6vV"
            b"8cU1g4mJrB5yS3i2vR0zLw8bXyQpQx9hX0yQbJcS8qH2aW4J1k0a5uQ==")
KEY_WORDS = [b"ssh-ed25519 ", b"ssh-rsa ", b"ecdsa-sha2-nistp256 ", ED25519, RSA_BLOB,
             b" comment", b" alice@host", b"command=\"/bin/true\" ", b"from=\"*.x\",",
             b"restrict ", b"no-pty,", b"\"", b"#", b" ", b"\t", b"\r",
             b"ssh-ed25519-cert-v01@openssh.com ", b"AAAA", b"="]


def test_authorized_keys_parser_never_raises(record):
    tried = Counter()

    @hsettings(**PROFILE)
    @given(lines_of(*KEY_WORDS), lines_of(*KEY_WORDS))
    def check(old, new):
        tried()
        entries = sshkeys.parse(new)
        for entry in entries:
            if isinstance(entry, sshkeys.Key):
                assert_clean(entry.comment + entry.options + entry.type, "key fields")
        change = sshkeys.compare(old, new)
        for line in sshkeys.describe(change):
            assert_clean(line, "key line")
            assert "\n" not in line
        same = sshkeys.compare(new, new)
        assert not (same.added or same.removed or same.options_changed)
        back = sshkeys.compare(new, old)
        assert (sorted(k.identity for k in back.added)
                == sorted(k.identity for k in change.removed))
    check()
    record(examples=tried.count)


# -- diffs and how the report shows them -------------------------------------------

def apply(diff, old):
    """``old`` patched with the unified ``diff`` (bytes), as patch(1)
    would: the test's own reading of the format, independent of textdiff."""
    lines = old.split(b"\n")
    ends = [True] * (len(lines) - 1) + [False]
    if lines[-1] == b"":
        lines.pop()
        ends.pop()
    body = diff.split(b"\n")[2:]
    out, at, i = [], 0, 0
    last_end = {}
    while i < len(body):
        header = re.match(rb"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@$", body[i])
        if not header:
            assert body[i] == b"", body[i]
            i += 1
            continue
        start = int(header.group(1))
        count = 1 if header.group(2) is None else int(header.group(2))
        first = start - 1 if count else start
        while at < first:
            out.append((lines[at], ends[at]))
            at += 1
        i += 1
        while i < len(body) and body[i][:1] in (b" ", b"-", b"+", b"\\"):
            sign, text = body[i][:1], body[i][1:]
            if sign == b"\\":
                last_end["line"][1] = False
                i += 1
                continue
            if sign in (b" ", b"-"):
                assert lines[at] == text
                at += 1
            if sign in (b" ", b"+"):
                entry = [text, True]
                out.append(entry)
                last_end["line"] = entry
            else:
                last_end["line"] = [text, True]
            i += 1
    while at < len(lines):
        out.append((lines[at], ends[at]))
        at += 1
    return b"".join(text + (b"\n" if end else b"") for text, end in out)


def _describe_diff(data):
    """How the report shows a content record with ``data`` as its diff."""
    shown, cut = textdiff.cap(data, 200)
    item = {"source": "contents", "change": "content", "path": escape(b"/etc/x\x1b[2J"),
            "diff": printable(shown), "cut": cut}
    return records.describe(item)


TEXT_LINES = st.lists(st.one_of(st.sampled_from([b"a", b"b", b"", b"\r", b"c d",
                                                 b"\x1b[2J", b"\x1b]0;t\x07", b"\xff",
                                                 b"\\ No newline", b"@@ -1 +1 @@",
                                                 b"--- x", b"+++ y", b"\x9b", b"\xc2\x9b"]),
                                 st.binary(max_size=6).filter(lambda b: b"\n" not in b)),
                      max_size=30)


def test_diff_applies_and_shows_no_raw_control(record):
    tried = Counter()

    @hsettings(**PROFILE)
    @given(TEXT_LINES, TEXT_LINES, st.booleans(), st.booleans(), st.integers(0, 4))
    def check(old_lines, new_lines, old_end, new_end, context):
        tried()
        old = b"\n".join(old_lines) + (b"\n" if old_end and old_lines else b"")
        new = b"\n".join(new_lines) + (b"\n" if new_end and new_lines else b"")
        diff = textdiff.unified(old, new, escape(b"/etc/x"), escape(b"/etc/x"),
                                context=context)
        if old == new:
            assert diff == b""
            return
        assert apply(diff, old) == new
        for line in _describe_diff(diff):
            assert_clean(line, "report line of a diff")
    check()
    record(examples=tried.count)


def test_fixed_hostile_content_is_shown_escaped(record):
    """The worst content of a world-readable file, once, spelled out: a
    diff line shows ESC as the four characters \\x1b."""
    diff = textdiff.unified(b"", NASTY_CONTENT, "/dev/null", "/etc/motd")
    lines = _describe_diff(diff)
    for line in lines:
        assert_clean(line, "report line")
    assert "+\\x1b[2J\\x1b[Hscreen cleared" in lines
    assert "+carriage\\rreturn fakes a line" in lines
    assert "+tab\tstays" in lines
    record(examples=1)


@pytest.mark.parametrize("status, line, name", [
    (b"Package: dpkg\nStatus: install ok installed\nVersion: 1\n\xf9: x\n", 4, "\\xf9"),
    # apt looks for the colon that ends a name beyond the end of its line
    # (hypothesis found these in full runs, after the first fix).
    (b"tab\there\n\xc3\xa4install ok\n obsolete\xc3\xaf\x90HArchitecture: \n", 1,
     "tab\\there\\n\u00e4install ok\\n obsolete\u00ef\\x90HArchitecture"),
    (b"\nall\t\n\x0b\x0c\r-dash\xf7: c1\nPackage: x\n", 2,
     "all\\t\\n\\x0b\\x0c\\r-dash\\xf7"),
    # A name that starts with a carriage return (a reduced run on trixie).
    (b"Package: x\n\n\r\xcf:\n", 3, "\\r\\xcf"),
])
def test_status_field_name_not_utf8_is_an_error_not_a_crash(tmp_path, record, status, line,
                                                           name):
    """The examples hypothesis found: python-apt 2.6 crashes the whole
    interpreter on a field name that is not UTF-8.  Run in a child, so a
    regression fails this test instead of killing the run."""
    fake = tmp_path / "root"
    (fake / "var/lib/dpkg/info").mkdir(parents=True)
    (fake / "var/lib/dpkg/info/format").write_bytes(b"1\n")
    (fake / "var/lib/dpkg/status").write_bytes(status)
    code = ("import sys\nfrom systraq import dpkgdb\nfrom systraq.errors import SystraqError\n"
            "from systraq.settings import Settings\n"
            "try:\n    dpkgdb.read_status(Settings(root=sys.argv[1]))\n"
            "except SystraqError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code, str(fake)], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 0, done
    assert done.stdout.endswith(f"status:{line}: field name is not UTF-8: '{name}'\n")
    record(examples=1)
