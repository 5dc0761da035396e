# SPDX-License-Identifier: GPL-2.0-or-later
"""authorized_keys parsing and comparison, checked against ssh-keygen itself.

Keys are made with ssh-keygen in tmp_path (HOME points there too), so
nothing reads or writes the host's ~/.ssh or /etc.
"""

import base64
import os
import random
import re
import subprocess

import pytest

from systraq import sshkeys
from systraq.sshkeys import Invalid, Key

SSH_KEYGEN = "/usr/bin/ssh-keygen"

pytestmark = pytest.mark.skipif(not os.path.exists(SSH_KEYGEN),
                                reason="ssh-keygen is not installed")


def run_keygen(tmp_path, *args):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path),
           "LC_ALL": "C"}
    return subprocess.run([SSH_KEYGEN, *args], env=env, check=True,
                          capture_output=True).stdout


class Keys:
    """Makes key pairs in a temporary directory; returns public key lines."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.count = 0

    def make(self, key_type, bits=None, comment="user@host"):
        self.count += 1
        path = self.tmp / f"key{self.count}"
        args = ["-q", "-t", key_type, "-N", "", "-C", comment, "-f", str(path)]
        if bits:
            args += ["-b", str(bits)]
        run_keygen(self.tmp, *args)
        return path.with_suffix(".pub").read_bytes().rstrip(b"\n")

    def listing(self, data):
        """(bits, fingerprint, comment) per key, as ``ssh-keygen -lf`` says."""
        path = self.tmp / "listed"
        path.write_bytes(data)
        out = run_keygen(self.tmp, "-l", "-f", str(path))
        rows = []
        for line in out.decode("utf-8", "surrogateescape").splitlines():
            bits, fingerprint, rest = line.split(" ", 2)
            comment = re.sub(r" \([A-Z0-9-]+\)$", "", rest)
            rows.append((int(bits), fingerprint, comment))
        return rows


@pytest.fixture
def keys(tmp_path):
    return Keys(tmp_path)


def only_keys(entries):
    return [entry for entry in entries if isinstance(entry, Key)]


def ssh_string(data):
    return len(data).to_bytes(4, "big") + data


def key_line(key_type, fields, comment=b""):
    blob = ssh_string(key_type) + b"".join(ssh_string(f) for f in fields)
    line = key_type + b" " + base64.b64encode(blob)
    return line + (b" " + comment if comment else b"")


@pytest.mark.parametrize("key_type, bits, type_name", [
    ("rsa", 2048, "ssh-rsa"),
    ("rsa", 3072, "ssh-rsa"),
    ("ecdsa", 256, "ecdsa-sha2-nistp256"),
    ("ecdsa", 384, "ecdsa-sha2-nistp384"),
    ("ecdsa", 521, "ecdsa-sha2-nistp521"),
    ("ed25519", None, "ssh-ed25519"),
])
def test_fingerprint_and_bits_match_ssh_keygen(keys, key_type, bits, type_name):
    line = keys.make(key_type, bits, comment="alice@laptop")
    [key] = sshkeys.parse(line + b"\n")
    assert key.type == type_name
    assert [(key.bits, key.fingerprint, key.comment)] == keys.listing(line)
    assert key.fingerprint.startswith("SHA256:") and "=" not in key.fingerprint
    assert (key.options, key.line) == ("", 1)


def test_dsa_matches_ssh_keygen(keys):
    try:
        line = keys.make("dsa")
    except subprocess.CalledProcessError:
        pytest.skip("this ssh-keygen no longer makes DSA keys")
    [key] = sshkeys.parse(line)
    assert key.type == "ssh-dss"
    assert [(key.bits, key.fingerprint, key.comment)] == keys.listing(line)


def test_security_key_types_match_ssh_keygen(keys):
    # No hardware token here: build the public blobs by hand (they are
    # plain SSH strings) and let ssh-keygen fingerprint them too.
    # The P-256 base point: ssh-keygen refuses points off the curve.
    point = bytes.fromhex(
        "04"
        "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
        "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")
    data = b"\n".join([
        key_line(b"sk-ssh-ed25519@openssh.com", [bytes(32), b"ssh:"], b"sk1"),
        key_line(b"sk-ecdsa-sha2-nistp256@openssh.com",
                 [b"nistp256", point, b"ssh:"], b"sk2"),
    ]) + b"\n"
    parsed = sshkeys.parse(data)
    assert [k.type for k in parsed] == ["sk-ssh-ed25519@openssh.com",
                                        "sk-ecdsa-sha2-nistp256@openssh.com"]
    assert [(k.bits, k.fingerprint, k.comment) for k in parsed] == \
        keys.listing(data)


def test_options_with_quoted_commas_and_spaces(keys):
    first, second, third = (keys.make("ed25519", comment=f"k{n}")
                            for n in range(3))
    data = b"\n".join([
        b'command="echo a, b",no-pty,from="10.0.0.0/8" ' + first,
        b'# a comment line, ignored',
        b'',
        b'  environment="X=a \\" b",restrict\t' + second,
        b'restrict ' + third,
    ]) + b"\n"
    parsed = sshkeys.parse(data)
    assert all(isinstance(entry, Key) for entry in parsed)
    assert [(k.options, k.comment, k.line) for k in parsed] == [
        ('command="echo a, b",no-pty,from="10.0.0.0/8"', "k0", 1),
        ('environment="X=a \\\\" b",restrict', "k1", 4),
        ("restrict", "k2", 5),
    ]
    # ssh-keygen -lf reads authorized_keys files and must agree.
    assert [(k.bits, k.fingerprint, k.comment) for k in parsed] == \
        keys.listing(data)


def test_certificate_has_the_fingerprint_of_its_key(keys, tmp_path):
    line = keys.make("ed25519", comment="certified")
    run_keygen(tmp_path, "-q", "-t", "ed25519", "-N", "", "-f",
               str(tmp_path / "ca"))
    run_keygen(tmp_path, "-q", "-s", str(tmp_path / "ca"), "-I", "id",
               "-n", "user", str(tmp_path / "key1.pub"))
    cert = (tmp_path / "key1-cert.pub").read_bytes()
    [plain, certified] = sshkeys.parse(line + b"\n" + cert)
    assert certified.type == "ssh-ed25519-cert-v01@openssh.com"
    assert certified.fingerprint == plain.fingerprint
    assert [(certified.bits, certified.fingerprint, certified.comment)] == \
        keys.listing(cert)
    # Matching by identity keeps the key and its certificate apart.
    assert certified.identity != plain.identity


def test_rsa_certificate(keys, tmp_path):
    line = keys.make("rsa", 2048, comment="r")
    run_keygen(tmp_path, "-q", "-t", "ed25519", "-N", "", "-f",
               str(tmp_path / "ca"))
    run_keygen(tmp_path, "-q", "-s", str(tmp_path / "ca"), "-I", "id",
               "-n", "user", str(tmp_path / "key1.pub"))
    [certified] = sshkeys.parse((tmp_path / "key1-cert.pub").read_bytes())
    [plain] = sshkeys.parse(line)
    assert certified.type == "ssh-rsa-cert-v01@openssh.com"
    assert (certified.bits, certified.fingerprint) == (2048, plain.fingerprint)


def test_comment_with_terminal_escapes_is_escaped(keys):
    line = keys.make("ed25519", comment="x")
    key_part = b" ".join(line.split(b" ")[:2])
    data = key_part + b" evil \x1b[2J\x1b]0;title\x07 bob\x85laptop\n"
    [key] = sshkeys.parse(data)
    assert key.comment == "evil \\x1b[2J\\x1b]0;title\\x07 bob\\x85laptop"
    [report] = sshkeys.describe(sshkeys.compare(b"", data))
    assert report.isprintable()
    assert report.endswith("evil \\x1b[2J\\x1b]0;title\\x07 bob\\x85laptop")


def test_non_utf8_comment_and_options(keys):
    line = keys.make("ed25519", comment="x")
    key_part = b" ".join(line.split(b" ")[:2])
    [key] = sshkeys.parse(b'from="\xff" ' + key_part + b" caf\xe9 \xc3\xa9\n")
    assert key.comment == "caf\\xe9 \u00e9"
    assert key.options == 'from="\\xff"'


def test_crlf_line_endings(keys):
    lines = [keys.make("ed25519", comment="one two"),
             b"no-pty " + keys.make("ecdsa", comment="three")]
    parsed = sshkeys.parse(b"\r\n".join(lines) + b"\r\n")
    assert [(k.comment, k.options) for k in parsed] == \
        [("one two", ""), ("three", "no-pty")]
    assert parsed == sshkeys.parse(b"\n".join(lines))


def test_invalid_lines_are_reported_and_the_rest_is_read(keys):
    good = keys.make("ed25519", comment="good")
    rsa = keys.make("rsa", 2048)
    ed_blob = good.split(b" ")[1]
    blob = base64.b64decode(ed_blob)
    data = b"\n".join([
        b"ssh-ed25519 !!notbase64!!",                    # 1
        b"ssh-foo " + ed_blob + b" x",                   # 2 unknown type
        b"ssh-rsa " + ed_blob + b" mislabelled",         # 3 type mismatch
        b"ssh-ed25519 " + base64.b64encode(blob[:20]),    # 4 truncated
        b'command="never closed ' + good,                # 5 unterminated quote
        b"restrict",                                     # 6 options, no key
        b"ssh-ed25519",                                  # 7 type, no data
        good,                                            # 8
        b"\x0b\x0c",                                     # 9
        rsa,                                             # 10
    ])
    parsed = sshkeys.parse(data)
    invalid = [e for e in parsed if isinstance(e, Invalid)]
    assert [e.line for e in invalid] == [1, 2, 3, 4, 5, 6, 7, 9]
    reasons = dict(invalid)
    assert "base64" in reasons[1]
    assert reasons[2].startswith("unknown key type: neither 'ssh-foo' nor 'AAAA")
    assert "declared type ssh-rsa" in reasons[3]
    assert "'ssh-ed25519'" in reasons[3]
    assert "truncated" in reasons[4]
    assert reasons[5].startswith("options have an unterminated quote: ")
    assert reasons[6].startswith("no key: 'restrict'")
    assert reasons[7] == "ssh-ed25519 with no key data"
    assert all(reason.isprintable() for reason in reasons.values())
    assert [(k.line, k.comment) for k in only_keys(parsed)] == \
        [(8, "good"), (10, "user@host")]


def test_rsa_below_sshd_minimum_is_invalid():
    line = key_line(b"ssh-rsa", [b"\x01\x00\x01", b"\x00\xff" + bytes(63)])
    [entry] = sshkeys.parse(line)
    assert isinstance(entry, Invalid)
    assert "512 bits" in entry.reason


def test_garbage_never_raises():
    rng = random.Random(4)
    for size in (0, 1, 7, 100, 5000):
        data = bytes(rng.randrange(256) for _ in range(size))
        for entry in sshkeys.parse(data):
            assert isinstance(entry, (Key, Invalid))
        sshkeys.describe(sshkeys.compare(data, data[::-1]))
    # Blobs that claim huge lengths, and a long quoted option.
    for blob in (b"\xff" * 8, ssh_string(b"ssh-rsa") + b"\xff\xff\xff\xff",
                 ssh_string(b"ssh-ed25519") + ssh_string(bytes(31))):
        line = b"ssh-rsa " + base64.b64encode(blob)
        assert isinstance(sshkeys.parse(line)[0], Invalid)
    assert isinstance(sshkeys.parse(b'x="' + b"a, " * 100000)[0], Invalid)


# compare() and describe()

def test_added_and_removed(keys):
    a = keys.make("ed25519", comment="alice@laptop")
    b = keys.make("ecdsa", comment="bob")
    c = keys.make("rsa", 2048, comment="carol")
    change = sshkeys.compare(a + b"\n" + b + b"\n", a + b"\n" + c + b"\n")
    assert [k.comment for k in change.added] == ["carol"]
    assert [k.comment for k in change.removed] == ["bob"]
    assert change.options_changed == [] and change.invalid == []
    [fa] = sshkeys.parse(c)
    [fb] = sshkeys.parse(b)
    assert sshkeys.describe(change) == [
        f"added: ssh-rsa 2048 {fa.fingerprint} carol",
        f"removed: ecdsa-sha2-nistp256 256 {fb.fingerprint} bob",
    ]


def test_reordered_or_recommented_is_no_change(keys):
    a = keys.make("ed25519", comment="a")
    b = keys.make("ed25519", comment="b")
    old = b"# mine\n" + a + b"\n" + b + b"\n"
    new = b"\n" + b + b"\r\n\n" + a.replace(b" a", b" renamed") + b"\n"
    change = sshkeys.compare(old, new)
    assert change == sshkeys.Change([], [], [], [])
    assert sshkeys.describe(change) == []


def test_options_changed_is_reported_with_old_and_new(keys):
    a = keys.make("ed25519", comment="backup@nas")
    change = sshkeys.compare(b'command="backup",no-pty ' + a, a)
    assert change.added == [] and change.removed == []
    [item] = change.options_changed
    assert (item.old.options, item.new.options) == ('command="backup",no-pty', "")
    fingerprint = item.new.fingerprint
    assert sshkeys.describe(change) == [
        f"options changed for {fingerprint}: 'command=\"backup\",no-pty' -> ''"]


def test_added_key_shows_options_before_the_comment(keys):
    a = keys.make("ed25519", comment="x")
    key_part = b" ".join(a.split(b" ")[:2])
    [fp] = [k.fingerprint for k in sshkeys.parse(a)]
    plain = sshkeys.describe(sshkeys.compare(
        b"", key_part + b" with options 'restrict'"))
    restricted = sshkeys.describe(sshkeys.compare(
        b"", b"restrict " + key_part + b" it's"))
    # A comment cannot make an unrestricted key read like a restricted one.
    assert plain == [f"added: ssh-ed25519 256 {fp} with options 'restrict'"]
    assert restricted == [f"added with options 'restrict': ssh-ed25519 256 {fp} it's"]


def test_options_quote_in_report_is_escaped(keys):
    a = keys.make("ed25519")
    [line] = sshkeys.describe(sshkeys.compare(b"", b"from=\"a'b\" " + a))
    assert line.startswith("added with options 'from=\"a\\'b\"': ")


def test_duplicate_key_lines(keys):
    a = keys.make("ed25519", comment="dup")
    old = b'command="x" ' + a + b"\n"
    # sshd tries every line of a key: a second, unrestricted line is a grant.
    change = sshkeys.compare(old, old + a + b"\n")
    assert [k.options for k in change.added] == [""]
    assert change.removed == [] and change.options_changed == []
    change = sshkeys.compare(old + a + b"\n", a + b"\n" + old)
    assert change == sshkeys.Change([], [], [], [])


def test_reissued_certificate_is_a_change(keys, tmp_path):
    keys.make("ed25519")
    run_keygen(tmp_path, "-q", "-t", "ed25519", "-N", "", "-f",
               str(tmp_path / "ca"))
    certs = []
    for principal in ("user", "root"):
        run_keygen(tmp_path, "-q", "-s", str(tmp_path / "ca"), "-I", "id",
                   "-n", principal, str(tmp_path / "key1.pub"))
        certs.append((tmp_path / "key1-cert.pub").read_bytes())
    change = sshkeys.compare(certs[0], certs[1])
    assert len(change.added) == 1 and len(change.removed) == 1


def test_invalid_lines_in_new_are_described(keys):
    a = keys.make("ed25519")
    change = sshkeys.compare(a, a + b"\nssh-ed25519 \x1b[2J")
    assert change.added == [] and change.removed == []
    [line] = sshkeys.describe(change)
    assert line.startswith("invalid line 2: ")
    assert line.isprintable()
