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
import unicodedata

_NAMED = {0x5C: "\\\\", 0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r"}

# Unicode's format characters (category Cf) are invisible, and among them
# are the bidirectional controls that make a terminal or a mail reader show
# text in another order than it is (U+202E turns "evil\u202etxt.sh" into
# what reads as "evilhs.txt"), and zero-width ones that make two different
# names look the same.  They are escaped like control characters.  Which
# characters are Cf is asked of the running Python's unicodedata, so a
# newer Unicode's additions (U+13439-U+1343F in Unicode 15) are escaped
# too; only text outside ASCII is asked, as ASCII has no Cf character.
# Code points the running Python does not know at all (category Cn:
# unassigned, or noncharacters) are escaped as well: the admin's terminal
# or mail reader may know a newer Unicode in which they are format
# characters (U+13439-U+1343F are Cn to bookworm's Python, Unicode 14).
_CONTROLS = "\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\udc80-\udcff"
_SUSPECT = re.compile(f"[{_CONTROLS}]|[^\x00-\x7f]")


def invisible(ch):
    """Whether ``ch`` is a format character (Unicode category Cf), or a
    code point the running Python does not know (Cn), which a newer
    Unicode may make one."""
    return unicodedata.category(ch) in ("Cf", "Cn")


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
    if invisible(ch):
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    return ch


def _needs_escape(text):
    for match in _SUSPECT.finditer(text):
        if _escape_char(match.group(0)) != match.group(0):
            return True
    return False


def escape(name):
    """Printable, reversible text for a file name given as bytes."""
    text = name.decode("utf-8", "surrogateescape")
    if not _needs_escape(text):
        return text
    return "".join(_escape_char(ch) for ch in text)


def escape_text(text, keep="\t\n"):
    """``text`` with what ``escape`` escapes written as escapes, but the
    characters in ``keep`` and backslashes left as they are: file content
    shown in a diff or a notice, readable rather than reversible."""
    def one(match):
        ch = match.group(0)
        return ch if ch in keep or ch == "\\" else _escape_char(ch)
    return _SUSPECT.sub(one, text)


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
