# SPDX-License-Identifier: GPL-2.0-or-later
"""Turning file names (bytes) into text that is safe to show and can be turned back.

A file name on Linux is any sequence of bytes but NUL and '/'.  systraq
shows names in mail, on terminals and in JSON, where raw control bytes
would let a user who names a file forge report lines or send escape
sequences to the admin's terminal.  ``escape`` writes every byte that is
not printable UTF-8 as a backslash escape (and a backslash as ``\\\\``),
so the result is printable, unambiguous and reversible with ``unescape``.
Invisible format characters (bidirectional controls, zero-width spaces)
are escaped too, so that a name shows what it is.
"""

import re

_NAMED = {0x5C: "\\\\", 0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r"}

# The Unicode format characters (category Cf, Unicode 14): invisible, and
# among them the bidirectional controls that make a terminal or a mail
# reader show text in another order than it is (U+202E turns
# "evil\u202etxt.sh" into what reads as "evilhs.txt"), and zero-width
# ones that make two different names look the same.  Escaped like
# control characters.  tests/unit/test_pathcodec.py checks this class
# against the running Python's unicodedata.
FORMAT = ("\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
          "\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
          "\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3"
          "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f")
_FORMAT = re.compile(f"[{FORMAT}]")


def _escape_char(ch):
    code = ord(ch)
    if code in _NAMED:
        return _NAMED[code]
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    # C1 controls and the Unicode line/paragraph separators act like
    # control characters on some terminals and mail readers.
    if 0x80 <= code < 0xA0 or code in (0x2028, 0x2029):
        return f"\\u{code:04x}"
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if _FORMAT.match(ch):
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    return ch


_NEEDS_ESCAPE = re.compile(f"[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\udc80-\udcff{FORMAT}]")


def escape(name):
    """Printable, reversible text for a file name given as bytes."""
    text = name.decode("utf-8", "surrogateescape")
    if not _NEEDS_ESCAPE.search(text):
        return text
    return "".join(_escape_char(ch) for ch in text)


_ESCAPE = re.compile(r"\\(\\|n|t|r|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def unescape(text):
    """The bytes that ``escape`` turned into ``text``."""
    out = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(text):
        out += text[pos:match.start()].encode("utf-8", "surrogateescape")
        code = match.group(1)
        if code == "\\":
            out += b"\\"
        elif code in ("n", "t", "r"):
            out += {"n": b"\n", "t": b"\t", "r": b"\r"}[code]
        elif code[0] == "x":
            out.append(int(code[1:], 16))
        else:
            out += chr(int(code[1:], 16)).encode("utf-8")
        pos = match.end()
    out += text[pos:].encode("utf-8", "surrogateescape")
    return bytes(out)
