# SPDX-License-Identifier: GPL-2.0-or-later
"""What the hostile-input tests share: the names and bytes an attacker
picks, and the check that a text an admin reads carries no raw control
byte (doc/hardening.md, "Hostile input")."""

import re
import unicodedata

# Bytes a user may put in a file name or a file: every C0 control, DEL,
# the C1 controls as UTF-8, ESC sequences that clear the screen, set the
# window title or hide text, backslashes that could fake an escape, and
# bytes that are not UTF-8.
NASTY_NAMES = [
    b"new\nline",
    b"tab\there",
    b"back\\slash",
    b"fake\\x1b",
    b"cr\rreturn",
    b"esc\x1b[2Jclear",
    b"title\x1b]0;owned\x07",
    b"hide\x1b[8mhidden\x1b[0m",
    b"bell\x07del\x7f",
    b"c1\xc2\x9b2Jcsi",
    b"latin1\xe9\xff",
    b"lone\x80cont",
    b"sep\xe2\x80\xa8line",
    "evil\u202etxt.sh".encode(),             # right-to-left override
    "zero\u200bwidth\u2066isolate".encode(),  # invisible, bidi isolate
    b"all" + bytes(range(1, 32)).replace(b"/", b""),
    b"-dash first",
    b" leading space",
]

# Content a world-readable file may hold.
NASTY_CONTENT = (b"plain line\n"
                 b"\x1b[2J\x1b[Hscreen cleared\n"
                 b"\x1b]0;title set\x07 and a bell\n"
                 b"carriage\rreturn fakes a line\n"
                 b"backspace\x08\x08\x08 over text\n"
                 b"c1 csi \xc2\x9b31m red\n"
                 b"not utf-8 \xff\xfe\n"
                 + "access = deny \u202e\u2066# admins only\u2069\u2066\n".encode()
                 + b"tab\tstays\n")

# Characters that must never reach a terminal or mail raw: C0 but tab
# and newline, DEL, C1, the Unicode line and paragraph separators, and
# lone surrogates (undecodable bytes smuggled through surrogateescape);
# and Unicode's invisible format characters (category Cf: bidirectional
# controls that reorder what is shown, zero-width spaces).
_RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def raw_controls(text):
    """The raw control characters in ``text`` (str or bytes), as a list."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    return _RAW.findall(text) + [ch for ch in text if unicodedata.category(ch) == "Cf"]


def assert_clean(text, what="text"):
    found = raw_controls(text)
    assert not found, f"{what} carries raw control characters {found!r}: {text!r}"
