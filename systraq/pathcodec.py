# SPDX-License-Identifier: GPL-2.0-or-later
"""Turning file names (bytes) into text that is safe to show and can be turned back.

A file name on Linux is any sequence of bytes but NUL and '/'.  systraq
shows names in mail, on terminals and in JSON, where raw control bytes
would let a user who names a file forge report lines or send escape
sequences to the admin's terminal.  ``escape`` writes every byte that is
not printable UTF-8 as a backslash escape (and a backslash as ``\\\\``),
so the result is printable, unambiguous and reversible with ``unescape``.
"""

import re

_NAMED = {0x5C: "\\\\", 0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r"}


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
    return ch


_NEEDS_ESCAPE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\udc80-\udcff]")


def escape(name):
    """Printable, reversible text for a file name given as bytes."""
    text = name.decode("utf-8", "surrogateescape")
    if not _NEEDS_ESCAPE.search(text):
        return text
    return "".join(_escape_char(ch) for ch in text)


_ESCAPE = re.compile(r"\\(\\|n|t|r|x[0-9a-f]{2}|u[0-9a-f]{4})")


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
