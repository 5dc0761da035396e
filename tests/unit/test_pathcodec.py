# SPDX-License-Identifier: GPL-2.0-or-later
import random
import sys
import unicodedata

import pytest

from systraq.pathcodec import escape, unescape

CASES = [
    (b"/etc/passwd", "/etc/passwd"),
    (b"/tmp/a b", "/tmp/a b"),
    (b"/tmp/a\nb", "/tmp/a\\nb"),
    (b"/tmp/a\tb", "/tmp/a\\tb"),
    (b"/tmp/back\\slash", "/tmp/back\\\\slash"),
    (b"/tmp/\xff\xfe", "/tmp/\\xff\\xfe"),
    (b"/tmp/\x1b[31mred", "/tmp/\\x1b[31mred"),
    (b"/tmp/del\x7f", "/tmp/del\\x7f"),
    ("/tmp/caf\u00e9".encode(), "/tmp/caf\u00e9"),
    ("/tmp/c1\u009b".encode(), "/tmp/c1\\u009b"),
    ("/tmp/ls\u2028".encode(), "/tmp/ls\\u2028"),
    (b"/tmp/literal\\x41", "/tmp/literal\\\\x41"),
    # Bidirectional controls and invisible characters: shown as escapes.
    ("/tmp/evil\u202etxt.sh".encode(), "/tmp/evil\\u202etxt.sh"),
    ("/tmp/zero\u200bwidth".encode(), "/tmp/zero\\u200bwidth"),
    ("/tmp/\ufeffbom".encode(), "/tmp/\\ufeffbom"),
    ("/tmp/tag\U000e0041".encode(), "/tmp/tag\\U000e0041"),
]

# Format characters that a Unicode newer than 14 added (Egyptian
# hieroglyph format controls, Unicode 15): escaped on every Python, as Cf
# where it knows them, as unknown (Cn) where it does not (Python 3.11).
NEWER = [chr(code) for code in range(0x13439, 0x13440)]


@pytest.mark.parametrize("name,shown", CASES)
def test_escape_shows_control_and_invalid_bytes_as_escapes(name, shown):
    assert escape(name) == shown
    assert unescape(shown) == name


def test_escaped_text_has_no_control_characters():
    for byte in range(256):
        text = escape(b"x" + bytes([byte]) + b"y")
        assert all(ch.isprintable() for ch in text), (byte, text)
        assert unescape(text) == b"x" + bytes([byte]) + b"y"


def test_round_trip_of_random_names():
    rng = random.Random(20261121)
    for _ in range(2000):
        name = bytes(rng.randrange(1, 256) for _ in range(rng.randrange(0, 40)))
        assert unescape(escape(name)) == name


def test_every_format_character_is_escaped():
    """Every character the running Python's unicodedata calls Cf is
    escaped, whatever Unicode version that Python has."""
    missed = [hex(code) for code in range(sys.maxunicode + 1)
              if not 0xD800 <= code <= 0xDFFF
              and unicodedata.category(chr(code)) == "Cf"
              and escape(chr(code).encode()) == chr(code)]
    assert missed == []


def test_every_unknown_code_point_is_escaped():
    """Every code point the running Python's unicodedata does not know
    (Cn) is escaped: the reader's Unicode may be newer."""
    missed = [hex(code) for code in range(0x80, sys.maxunicode + 1)
              if not 0xD800 <= code <= 0xDFFF
              and unicodedata.category(chr(code)) == "Cn"
              and escape(chr(code).encode()) == chr(code)]
    assert missed == []
    assert escape("a\u0378b".encode()) == "a\\u0378b"   # never assigned
    assert escape("a\uffffb".encode()) == "a\\uffffb"   # a noncharacter


@pytest.mark.parametrize("ch", NEWER)
def test_a_newer_unicodes_format_character_is_escaped(ch):
    shown = f"a\\U{ord(ch):08x}b"
    assert escape(f"a{ch}b".encode()) == shown
    assert unescape(shown) == f"a{ch}b".encode()


def test_file_content_escapes_format_characters_too():
    from systraq.contents import printable
    assert printable("x = 1 \u202e# yes\n".encode()) == "x = 1 \\u202e# yes\n"
    assert printable("tab\there\\ caf\u00e9\r\n".encode()) == "tab\there\\ caf\u00e9\\r\n"
    for ch in NEWER:
        assert printable(f"x{ch}\n".encode()) == f"x\\U{ord(ch):08x}\n"
