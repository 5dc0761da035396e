# SPDX-License-Identifier: GPL-2.0-or-later
"""One rule for [report] mailto, written twice: recipients() in
systraq/mail.py reads the configuration, valid_recipients in
debian/config checks the debconf answer before the package is unpacked
(so it cannot import systraq).  Both are given the same cases here and
must agree on each."""

import os
import random
import subprocess

import pytest

from systraq import mail

TOP = os.path.join(os.path.dirname(__file__), "..", "..")

LONG_LIST = ", ".join(f"admin{n:04d}@example.org" for n in range(100))[:2000].rsplit(",", 1)[0]

# (value, accepted)
CASES = [
    ("root", True),
    ("", True),                                  # mail off
    (" , ,\t", True),                            # mail off too
    ("root, admin@example.org", True),
    (" root ,admin@example.org,", True),
    ("ops|team@example.org", True),
    ("r&d@example.org", True),
    ("o'brien@example.org", True),
    ("a.b+tag@mail.example.org", True),
    ("!#$%&'*+-/=?^_`{|}~.@example.org", True),
    ("-oi@example.org", True),                   # sendmail -t reads headers, not arguments
    (LONG_LIST, True),                           # a long list of ordinary addresses
    ("x" * 254, True),
    ("x" * 64 + "@" + "d" * 189, True),
    ("x" * 255, False),
    ("x" * 2000, False),
    ("ops\\team@example.org", False),            # backslash
    ("root\nBcc: someone@example.org", False),   # newline
    ("root\n", False),
    ("root\r", False),
    ('"ops team"@example.org', False),           # quote
    ('"root"', False),
    ("jörg@example.org", False),                 # non-ASCII
    ("root@exämple.org", False),
    ("root\u00a0", False),                       # no-break space
    ("two words", False),
    ("Admin <admin@example.org>", False),
    ("root (the admin)", False),
    ("team: a@example.org;", False),             # group syntax
    ("user@[192.0.2.1]", False),                 # domain literal
    ("a@b@example.org", False),
    ("@example.org", False),
    ("root@", False),
    ("@", False),
    ("root,\x1b[31m", False),
    ("root\x7f", False),
    ("root\x01", False),
    ("root;rm -rf /", False),
    ("$(reboot)", False),
    ("*", True),
    ("root, bad\\", False),
]


def shell_verdicts(values):
    """valid_recipients of debian/config on each value, in one /bin/sh:
    True where it returned 0."""
    text = open(os.path.join(TOP, "debian", "config"), encoding="utf-8").read()
    start = text.index("valid_recipients() {")
    end = text.index("\n}\n", start) + 3
    script = (text[start:end] + 'for value; do if valid_recipients "$value"; then echo 1; '
              'else echo 0; fi; done\n')
    done = subprocess.run(["/bin/sh", "-c", script, "sh", *[v.encode() for v in values]],
                          capture_output=True, check=True)
    verdicts = done.stdout.decode().split()
    assert len(verdicts) == len(values), done.stderr
    return [v == "1" for v in verdicts]


def python_verdict(value):
    try:
        mail.recipients(value)
    except ValueError:
        return False
    return True


def test_each_case_is_judged_as_the_rule_says_by_both():
    shell = shell_verdicts([value for value, _ in CASES])
    for (value, accepted), by_shell in zip(CASES, shell):
        assert python_verdict(value) == accepted, value
        assert by_shell == accepted, value


def test_both_agree_on_random_strings_of_the_characters_that_matter():
    # Letters, the allowed punctuation, the separators and blanks, and a
    # few of everything refused; lengths around the limit too.
    alphabet = ("ab@.,, \t-|&'\\\"<>()[];:\n\r\x01\x7f\u00e9\u00a0"
                "!#$%*+/=?^_`{|}~0Z")
    rng = random.Random(23)
    values = []
    for _ in range(600):
        length = rng.choice([1, 2, 3, 5, 8, 13, 40])
        values.append("".join(rng.choice(alphabet) for _ in range(length)))
    for _ in range(20):
        values.append("a" * rng.randint(250, 260) + rng.choice(["", ",b", "@c"]))
    shell = shell_verdicts(values)
    disagree = [v for v, by_shell in zip(values, shell) if python_verdict(v) != by_shell]
    assert disagree == []


@pytest.mark.parametrize("value", ["ops|team@example.org", "r&d@example.org", "root, admin"])
def test_an_accepted_value_is_read_back_as_its_addresses(value):
    assert mail.recipients(value) == tuple(part.strip() for part in value.split(","))
