# SPDX-License-Identifier: GPL-2.0-or-later
"""systraq packages in a chroot of the release under test, against dpkg --verify and debsums.

The tests run in file order on one chroot: each is a step.
"""

import json
import re

from tests.package.conftest import wait_for_first_baseline

USER = "debian-systraq"


def findings(chroot, *args, check=False):
    result = chroot.run("systraq packages --json " + " ".join(args), check=False)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def paths_of(data, *kinds):
    return {f["path"] for f in data["findings"] if f["kind"] in kinds}


def dpkg_verify(chroot):
    """{path: 'changed' | 'missing'} and the conffiles, from dpkg --verify."""
    out = chroot.run("dpkg --verify", check=False).stdout
    files, conffiles = {}, set()
    for line in out.splitlines():
        match = re.match(r"^(missing  |\S{9}) ([c ]) (/.*)$", line)
        assert match, f"unexpected dpkg --verify line: {line!r}"
        flags, conffile, path = match.groups()
        if conffile == "c":
            conffiles.add(path)
        elif flags.startswith("missing"):
            files[path] = "missing"
        elif flags[2] == "5":
            files[path] = "changed"
    return files, conffiles


def debsums(chroot):
    """{path: 'changed' | 'missing'} from debsums -s (non-conffiles)."""
    result = chroot.run("debsums -s", check=False)
    files = {}
    for line in (result.stdout + result.stderr).splitlines():
        match = re.match(r"^debsums: (changed|missing) file (/.*) \(from \S+ package\)$", line)
        if match:
            files[match.group(2)] = match.group(1)
    return files


def test_install_with_the_peers(chroot, deb):
    chroot.copy_in(deb, "/tmp/systraq.deb")
    chroot.apt_install("/tmp/systraq.deb", "debsums")
    wait_for_first_baseline(chroot)


def test_an_intact_system_has_no_warnings(chroot):
    code, data = findings(chroot)
    assert [f for f in data["findings"] if f["warning"]] == []
    assert code == 0
    assert data["packages"] > 80 and data["files"] > 3000
    # Run as the systraq user even when root starts it.
    assert chroot.run("stat -c %U /var/lib/systraq/packages.state").stdout.strip() == USER


def sed_path(chroot):
    """Where dpkg's database says the sed program is."""
    listed = chroot.run("dpkg-query -L sed").stdout.split()
    return next(path for path in listed if path.endswith("bin/sed"))


def test_tampered_and_deleted_files_agree_with_dpkg_verify_and_debsums(chroot):
    chroot.run("echo extra >> /usr/bin/tac"
               " && printf 'x' | dd of=/usr/bin/sed bs=1 seek=100 conv=notrunc status=none"
               " && rm /usr/bin/tee /usr/share/man/man1/grep.1.gz"
               " && echo '# local' >> /etc/adduser.conf"
               " && rm /etc/default/useradd")
    code, data = findings(chroot)
    assert code == 1
    ours = {p: "changed" for p in paths_of(data, "changed")}
    ours.update({p: "missing" for p in paths_of(data, "missing")})
    # Up to bookworm sed lists itself as /bin/sed (reached through the
    # /bin symlink); from trixie on, as /usr/bin/sed.
    assert ours == {"/usr/bin/tac": "changed", sed_path(chroot): "changed",
                    "/usr/bin/tee": "missing", "/usr/share/man/man1/grep.1.gz": "missing"}
    assert ours == debsums(chroot)
    verify_files, verify_conffiles = dpkg_verify(chroot)
    assert ours == verify_files
    assert paths_of(data, "conffile") == verify_conffiles == {
        "/etc/adduser.conf", "/etc/default/useradd"}


def test_deleted_sums_are_named_then_repaired_from_the_archive(chroot):
    original = chroot.read("/var/lib/dpkg/info/grep.md5sums")
    chroot.run("rm /var/lib/dpkg/info/grep.md5sums")
    code, data = findings(chroot)
    assert code == 1
    assert {f["package"] for f in data["findings"] if f["kind"] == "without sums"} == {"grep"}
    # Its missing man page is not checked any more: dpkg has no sum for it.
    assert "/usr/share/man/man1/grep.1.gz" not in paths_of(data, "missing")

    denied = chroot.run("systraq packages --repair-missing", user=USER, check=False)
    assert denied.returncode == 2 and "must run as root" in denied.stderr
    repaired = chroot.run("systraq packages --repair-missing grep")
    assert repaired.stdout.startswith("repaired: grep ")
    # The archive's sums, not the installed files': the missing man page
    # is back in the list and reported missing again.
    assert sorted(chroot.read("/var/lib/dpkg/info/grep.md5sums").splitlines()) == \
        sorted(original.splitlines())
    code, data = findings(chroot)
    assert "grep" not in {f["package"] for f in data["findings"] if f["kind"] == "without sums"}
    assert "/usr/share/man/man1/grep.1.gz" in paths_of(data, "missing")


def test_a_version_that_cannot_be_fetched_is_named_and_nothing_is_written(chroot):
    # A package apt has never heard of, installed from a local .deb.
    chroot.run("mkdir -p /tmp/local/DEBIAN /tmp/local/usr/bin"
               " && printf 'Package: local-tool\\nVersion: 1.0\\nArchitecture: all\\n"
               "Maintainer: x <x@example.org>\\nDescription: local\\n' > /tmp/local/DEBIAN/control"
               " && echo tool > /tmp/local/usr/bin/local-tool"
               " && dpkg-deb -b /tmp/local /tmp/local.deb >/dev/null && dpkg -i /tmp/local.deb"
               " && rm /var/lib/dpkg/info/local-tool.md5sums")
    result = chroot.run("systraq packages --repair-missing local-tool", check=False)
    assert result.returncode == 3
    assert "local-tool 1.0" in result.stderr
    assert not chroot.exists("/var/lib/dpkg/info/local-tool.md5sums")
    chroot.run("dpkg --purge local-tool")


def test_a_reinstall_is_labelled_and_a_hand_edit_is_a_warning(chroot):
    findings(chroot)                      # the state before the operations
    chroot.run("apt-get install -y -q --reinstall coreutils sed")
    chroot.run("echo extra >> /usr/bin/head")
    code, data = findings(chroot)
    assert code == 1
    explained = {f["package"]: f for f in data["findings"] if f["kind"] == "explained"}
    assert set(explained) >= {"coreutils", "sed"}
    assert explained["coreutils"]["label"].startswith("reinstalled")
    assert "by apt-get" in explained["coreutils"]["label"]
    assert not explained["coreutils"]["warning"]
    assert {"/usr/bin/tac", "/usr/bin/tee", sed_path(chroot)} <= paths_of(data, "fixed")
    assert paths_of(data, "changed") == {"/usr/bin/head"}
    warned = {f["path"] for f in data["findings"] if f["warning"] and "path" in f}
    assert "/usr/bin/head" in warned and "/usr/bin/tac" not in warned


def test_accept_then_quiet(chroot):
    chroot.run("systraq accept /usr/bin/head")
    code, data = findings(chroot)
    assert "/usr/bin/head" not in paths_of(data, "changed")
    assert data["accepted"] == 1
