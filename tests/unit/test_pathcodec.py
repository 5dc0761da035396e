# SPDX-License-Identifier: GPL-2.0-or-later
import random

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
]


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
