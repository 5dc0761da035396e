# SPDX-License-Identifier: GPL-2.0-or-later
"""Any debconf answer for the mail recipient is safe: preseeded, each
hostile value either lands in /etc/systraq/systraq.conf exactly (and
systraq reads it back as those addresses) or is refused at the question
with a one-line message, mail going to root; the installation and
dpkg-reconfigure never fail because of it.

The tests run in file order on one chroot of the release under test.
"""

import json

import pytest

from tests.package.conftest import wait_for_first_baseline

LIST = ", ".join(f"admin{n:04d}@example.org" for n in range(100))[:2000].rsplit(",", 1)[0]
REFUSED = "is not a list of mail addresses (systraq.conf(5), mailto); mail goes to root"

# (what is preseeded, as debconf-set-selections reads it; the value
# debconf then holds; whether systraq takes it).  A preseeded "\n" is a
# newline in debconf's database (its file format decodes it so).
CASES = [
    ("ops|team@example.org", "ops|team@example.org", True),
    ("r&d@example.org", "r&d@example.org", True),
    ("o'brien@example.org", "o'brien@example.org", True),
    ("root, admin@example.org", "root, admin@example.org", True),
    (LIST, LIST, True),
    ("", "", True),                                           # mail off
    ("ops\\team@example.org", "ops\\team@example.org", False),  # a backslash
    ("root\\nBcc: someone@example.org", "root\nBcc: someone@example.org", False),  # a newline
    ('"ops team"@example.org', '"ops team"@example.org', False),  # quotes
    ("x" * 2000, "x" * 2000, False),                          # 2,000 characters
    ("jörg@example.org", "jörg@example.org", False),          # non-ASCII
    ("Admin <admin@example.org>", "Admin <admin@example.org>", False),
]


def preseed(chroot, value):
    chroot.run("debconf-set-selections", input=f"systraq systraq/mailto string {value}\n")


def mailto_line(chroot):
    lines = [line for line in chroot.read("/etc/systraq/systraq.conf").decode().splitlines()
             if line.startswith("mailto =")]
    assert len(lines) == 1, lines
    return lines[0]


def read_back(chroot):
    """[report] mailto as systraq reads it."""
    return tuple(json.loads(chroot.run(
        "python3 -c 'import json; from systraq import config;"
        " print(json.dumps(config.load(b\"/etc/systraq/systraq.conf\").get(\"report\", \"mailto\")))'"
    ).stdout))


def written(value):
    return "mailto =" + (f" {value}" if value else "")


def addresses(value):
    return tuple(part.strip() for part in value.split(",") if part.strip())


def messages(result):
    return [line for line in (result.stdout + result.stderr).splitlines() if REFUSED in line]


def test_installed_with_a_recipient_sed_would_have_mangled(chroot, deb):
    chroot.copy_in(deb, "/tmp/systraq.deb")
    preseed(chroot, "r&d@example.org")
    chroot.apt_install("/tmp/systraq.deb")
    wait_for_first_baseline(chroot)
    assert mailto_line(chroot) == "mailto = r&d@example.org"
    assert read_back(chroot) == ("r&d@example.org",)


@pytest.mark.parametrize("preseeded, value, accepted", CASES,
                         ids=[f"case{n}" for n in range(len(CASES))])
def test_each_answer_lands_exactly_or_is_refused_with_a_message(chroot, preseeded, value,
                                                                accepted):
    preseed(chroot, preseeded)
    result = chroot.run("dpkg-reconfigure -fnoninteractive systraq", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    if accepted:
        assert messages(result) == []
        assert mailto_line(chroot) == written(value)
        assert read_back(chroot) == addresses(value)
    else:
        assert len(messages(result)) == 1, result.stdout + result.stderr
        assert mailto_line(chroot) == "mailto = root"
        assert read_back(chroot) == ("root",)
        shown = chroot.run("debconf-show systraq").stdout
        assert "systraq/mailto: root\n" in shown, shown


def test_an_installation_with_a_refused_answer_does_not_fail(chroot):
    chroot.apt("apt-get purge -y -q systraq")
    preseed(chroot, "root\\nBcc: someone@example.org")
    result = chroot.apt_install("/tmp/systraq.deb")
    wait_for_first_baseline(chroot)
    # apt preconfigures, then the postinst runs the config script again:
    # once refused, the answer is root, and said once.
    assert len(messages(result)) == 1, result.stdout + result.stderr
    assert chroot.run("dpkg-query -W -f '${Status}' systraq").stdout == "install ok installed"
    assert mailto_line(chroot) == "mailto = root"
