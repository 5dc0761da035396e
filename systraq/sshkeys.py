# SPDX-License-Identifier: GPL-2.0-or-later
"""Reading ssh ``authorized_keys`` files and saying which keys changed.

A change to ``~/.ssh/authorized_keys`` (or ``authorized_keys2``) grants or
takes away a login, so the admin is told which keys were added or removed,
each with its type, fingerprint and comment, and which keys had their
options changed (dropping ``command=`` or ``from=`` widens what a key can
do).  The file itself is never shown as a diff: it is long base64 that
nobody reads.

The format is the one sshd(8) documents under AUTHORIZED_KEYS FILE FORMAT,
and lines are split the way OpenSSH's own parser splits them, so that what
is reported is what sshd would accept.  The file belongs to a user: it may
be binary, malformed or hostile.  Nothing here raises on its content, and
all text that comes from it is escaped with ``pathcodec.escape`` before it
can reach a report.  The caller reads the bytes and caps their size.
"""

import base64
import binascii
import hashlib
import re
from collections import Counter, namedtuple

from systraq.pathcodec import escape

# type: the key type name as the line declares it (checked against the blob).
# fingerprint: "SHA256:..." exactly as ``ssh-keygen -l`` prints it.
# bits: the size ``ssh-keygen -l`` prints, or None.
# options, comment: escaped text, "" when absent.
# line: 1-based line number.
# identity: what compare() matches keys by.  For a plain key it is the
# fingerprint; a certificate has the fingerprint of the key it certifies
# (as ssh-keygen prints it), so its identity is the digest of the whole
# certificate: a re-issued certificate with other principals is a change.
Key = namedtuple("Key", "type fingerprint bits options comment line identity")
Invalid = namedtuple("Invalid", "line reason")
OptionsChange = namedtuple("OptionsChange", "old new")
Change = namedtuple("Change", "added removed options_changed invalid")

_CERT_SUFFIX = "-cert-v01@openssh.com"

# Plain key type -> (number of SSH string fields after the type name in
# the public blob, bits if fixed by the type).  The field counts let a
# certificate's embedded key be cut out without understanding the rest.
_PLAIN = {
    "ssh-rsa": (2, None),            # e, n
    "ssh-dss": (4, None),            # p, q, g, y
    "ecdsa-sha2-nistp256": (2, 256),  # curve name, point
    "ecdsa-sha2-nistp384": (2, 384),
    "ecdsa-sha2-nistp521": (2, 521),
    "ssh-ed25519": (1, 256),         # public key
    "sk-ecdsa-sha2-nistp256@openssh.com": (3, 256),  # curve, point, application
    "sk-ssh-ed25519@openssh.com": (2, 256),          # public key, application
}


def _plain_type(key_type):
    """The plain type for a known plain or certificate type, else None."""
    if key_type in _PLAIN:
        return key_type
    if key_type.endswith(_CERT_SUFFIX):
        # ssh-rsa-cert-v01@openssh.com, sk-ssh-ed25519-cert-v01@openssh.com:
        # the suffix replaces "@openssh.com" when the plain name has one.
        stem = key_type[:-len(_CERT_SUFFIX)]
        for candidate in (stem, stem + "@openssh.com"):
            if candidate in _PLAIN:
                return candidate
    return None


# Sizes sshd insists on, so a blob it would refuse is reported as invalid.
_ED25519_LEN = 32
_EC_POINT_LEN = {256: 65, 384: 97, 521: 133}  # uncompressed: 04 || X || Y
_RSA_MIN_BITS = 1024  # OpenSSH's SSH_RSA_MINIMUM_MODULUS_SIZE


class _Bad(Exception):
    """A line that is not a key sshd would use; the message says why."""


def _read_string(blob, pos):
    if pos + 4 > len(blob):
        raise _Bad("key blob is truncated")
    length = int.from_bytes(blob[pos:pos + 4], "big")
    end = pos + 4 + length
    if end > len(blob):
        raise _Bad("key blob is truncated")
    return blob[pos + 4:end], end


def _mpint_bits(value):
    # An mpint is big-endian with a leading zero byte when the top bit is
    # set; counting from the first non-zero byte avoids building a
    # possibly huge integer from user data.
    value = value.lstrip(b"\0")
    if not value:
        return 0
    return (len(value) - 1) * 8 + value[0].bit_length()


def _fingerprint(blob):
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _shown(raw, limit=40):
    # For reasons that quote the line: short, and escaped like any user text.
    text = escape(raw[:limit])
    return text + ("..." if len(raw) > limit else "")


def _examine(key_type, blob):
    """(fingerprint, bits, identity) for a blob, or raise _Bad."""
    plain = _plain_type(key_type)
    embedded, pos = _read_string(blob, 0)
    if embedded != key_type.encode("ascii"):
        raise _Bad(f"declared type {key_type} but the key inside is "
                   f"{_quote(_shown(embedded))}")
    start = pos
    if plain != key_type:
        _nonce, start = _read_string(blob, pos)
    count, bits = _PLAIN[plain]
    fields = []
    pos = start
    for _ in range(count):
        field, pos = _read_string(blob, pos)
        fields.append(field)
    if plain == "ssh-rsa":
        bits = _mpint_bits(fields[1])
        if bits < _RSA_MIN_BITS:
            raise _Bad(f"RSA key of {bits} bits: sshd refuses keys under "
                       f"{_RSA_MIN_BITS} bits")
    elif plain == "ssh-dss":
        bits = _mpint_bits(fields[0])
    elif plain.startswith(("ecdsa-", "sk-ecdsa-")):
        if fields[0] != b"nistp%d" % bits:
            raise _Bad(f"{key_type} key on curve {_quote(_shown(fields[0]))}")
        if len(fields[1]) != _EC_POINT_LEN[bits]:
            raise _Bad("ECDSA public point has the wrong length")
    elif len(fields[0]) != _ED25519_LEN:
        raise _Bad("Ed25519 public key has the wrong length")
    # ssh-keygen -l fingerprints a certificate by the key it certifies:
    # the plain type name followed by the same fields.
    plain_blob = (len(plain).to_bytes(4, "big") + plain.encode("ascii")
                  + blob[start:pos])
    fingerprint = _fingerprint(plain_blob)
    identity = fingerprint if plain == key_type else _fingerprint(blob)
    return fingerprint, bits, identity


_BLANKS = b" \t"
# In the options sshd skips a backslash-escaped quote as two characters,
# inside or outside quotes (auth2-pubkeyfile.c); a blank ends the options
# only outside quotes.
_OPTION_TOKEN = re.compile(rb'\\"|[" \t]')
# sshd splits words on spaces and tabs only; bytes.split() would also split
# on vertical tabs and form feeds, and find no word in a line of them.
_BLANK_RUN = re.compile(rb"[ \t]+")


def _skip_options(line):
    quoted = False
    for match in _OPTION_TOKEN.finditer(line):
        token = match.group()
        if token == b'\\"':
            continue
        if token == b'"':
            quoted = not quoted
        elif not quoted:
            return match.start()
    if quoted:
        # sshd would take the whole line as options and find no key.
        raise _Bad(f"options have an unterminated quote: {_quote(_shown(line))}")
    return len(line)


def _parse_key(text, options, number):
    """A Key from ``type blob [comment]`` (bytes), or raise _Bad."""
    parts = _BLANK_RUN.split(text, 2)
    raw_type = parts[0]
    key_type = raw_type.decode("ascii", "replace")
    if _plain_type(key_type) is None:
        raise _Bad(f"unknown key type {_quote(_shown(raw_type))}")
    if len(parts) < 2 or not parts[1]:
        raise _Bad(f"{key_type} with no key data")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise _Bad(f"{key_type} key data is not valid base64") from None
    fingerprint, bits, identity = _examine(key_type, blob)
    comment = parts[2].rstrip(_BLANKS) if len(parts) > 2 else b""
    return Key(key_type, fingerprint, bits, escape(options), escape(comment),
               number, identity)


def _first_word(line):
    return _BLANK_RUN.split(line, 1)[0]


def _parse_line(line, number):
    # sshd first reads the line as a bare key; only when that fails does
    # it take the first word as options.  Checking the first word against
    # the known types does the same without parsing twice, and gives a
    # better reason when a bare key is broken.
    if _plain_type(_first_word(line).decode("ascii", "replace")) is not None:
        return _parse_key(line, b"", number)
    end = _skip_options(line)
    options, rest = line[:end], line[end:].lstrip(_BLANKS)
    if not rest:
        raise _Bad(f"no key: {_quote(_shown(line))} is neither a key type "
                   f"nor followed by a key")
    second = _first_word(rest)
    if _plain_type(second.decode("ascii", "replace")) is None:
        # Either a bare key of an unknown type or options before one; sshd
        # cannot tell which, so name both words.
        raise _Bad(f"unknown key type: neither {_quote(_shown(options))} "
                   f"nor {_quote(_shown(second))} is one")
    return _parse_key(rest, options, number)


def parse(data):
    """Keys and Invalid entries of an authorized_keys file, in line order."""
    entries = []
    for number, line in enumerate(data.split(b"\n"), 1):
        # CRLF files (edited on Windows) are common; the CR is a line end,
        # not part of the comment.
        if line.endswith(b"\r"):
            line = line[:-1]
        line = line.lstrip(_BLANKS)
        if not line or line.startswith(b"#"):
            continue
        try:
            entries.append(_parse_line(line, number))
        except _Bad as error:
            entries.append(Invalid(number, str(error)))
    return entries


def _by_identity(entries):
    keys = {}
    for entry in entries:
        if isinstance(entry, Key):
            keys.setdefault(entry.identity, []).append(entry)
    return keys


def compare(old, new):
    """How the keys in ``new`` (bytes) differ from those in ``old`` (bytes).

    Keys are matched by identity, not by line, so reordering the file or
    editing a comment is no change.  A key present in both with other
    options is an options change.  A key may appear on several lines with
    different options (sshd tries each in turn), so lines of one key are
    matched by their options: the unmatched ones pair up as options
    changes, and the rest are added or removed lines.
    """
    new_entries = parse(new)
    before, after = _by_identity(parse(old)), _by_identity(new_entries)
    added, removed, changed = [], [], []
    for identity in list(before) + [i for i in after if i not in before]:
        old_keys, new_keys = before.get(identity, []), after.get(identity, [])
        common = (Counter(k.options for k in old_keys)
                  & Counter(k.options for k in new_keys))
        gone, came = [], []
        for keys, left, unmatched in ((old_keys, common.copy(), gone),
                                      (new_keys, common.copy(), came)):
            for key in keys:
                if left[key.options]:
                    left[key.options] -= 1
                else:
                    unmatched.append(key)
        pairs = min(len(gone), len(came))
        changed.extend(OptionsChange(o, n) for o, n in zip(gone, came))
        removed.extend(gone[pairs:])
        added.extend(came[pairs:])
    added.sort(key=lambda key: key.line)
    removed.sort(key=lambda key: key.line)
    changed.sort(key=lambda change: change.new.line)
    invalid = [entry for entry in new_entries if isinstance(entry, Invalid)]
    return Change(added, removed, changed, invalid)


def _quote(text):
    # Text is already escaped, so every backslash in it is doubled and
    # "\'" can only mean a quote that belongs to the text.
    return "'" + text.replace("'", "\\'") + "'"


def _key_text(key):
    words = [key.type]
    if key.bits is not None:
        words.append(str(key.bits))
    words.append(key.fingerprint)
    if key.comment:
        words.append(key.comment)
    return " ".join(words)


def _key_line(verb, key):
    # Options go before the key, never after the comment: the comment is
    # free text, and one reading "options 'restrict'" must not make an
    # unrestricted key look restricted.
    if key.options:
        verb += f" with options {_quote(key.options)}"
    return f"{verb}: {_key_text(key)}"


def describe(change):
    """One report line per added, removed, changed or invalid entry."""
    lines = [_key_line("added", key) for key in change.added]
    lines += [_key_line("removed", key) for key in change.removed]
    lines += [f"options changed for {c.new.fingerprint}: "
              f"{_quote(c.old.options)} -> {_quote(c.new.options)}"
              for c in change.options_changed]
    lines += [f"invalid line {i.line}: {i.reason}" for i in change.invalid]
    return lines
