# SPDX-License-Identifier: GPL-2.0-or-later
"""systraq packages --from-archive and the apt hook in a chroot of the
release under test.

The tests run in file order on one chroot: each is a step.  The cost
figures (bytes, seconds) are printed, and written as JSON lines to
$SYSTRAQ_ARCHIVE_COSTS when it is set.
"""

import json
import os
import time

import pytest

from tests.chroot import SUITE, mirror
from tests.package.conftest import set_option, wait_for_first_baseline

# An architecture-independent package whose version in the next release
# installs on this one without pulling in anything else (an arch-dependent
# one pulls in the next release's libc6): the upgrade the hook is tested
# with, and one of its files.
LEAF = "tzdata"
LEAF_FILE = "/usr/share/zoneinfo/Europe/Paris"
NEXT = {"bookworm": "trixie", "trixie": "sid"}


def from_archive(chroot, *args):
    started = time.monotonic()
    result = chroot.run("systraq packages --from-archive --json " + " ".join(args),
                        check=False)
    seconds = time.monotonic() - started
    assert result.returncode in (0, 1), result.stderr
    # Nothing on stderr (apt's sandbox warning included): cron would mail it.
    assert result.stderr == ""
    return result.returncode, json.loads(result.stdout), seconds


def warned(data):
    return {f["path"]: f["detail"] for f in data["findings"] if f["warning"]}


def quiet(result):
    """Nothing in an apt run's output comes from the hook."""
    output = result.stdout + result.stderr
    return ("systraq:" not in output and "pre-install" not in output
            and "Traceback" not in output and "not found" not in output)


def cost(step, data, seconds):
    built = data["manifests"]
    line = {"step": step, "packages": data["packages"], "files": data["files"],
            "manifests_built": built["built"] + len(built["from_dpkg"]),
            "fetched_bytes": built["fetched_bytes"], "reused_bytes": built["reused_bytes"],
            "build_seconds": built["seconds"], "run_seconds": round(seconds, 2)}
    print("cost:", json.dumps(line))
    if os.environ.get("SYSTRAQ_ARCHIVE_COSTS"):
        with open(os.environ["SYSTRAQ_ARCHIVE_COSTS"], "a") as handle:
            handle.write(json.dumps(line) + "\n")


def test_install(chroot, deb):
    chroot.copy_in(deb, "/tmp/systraq.deb")
    chroot.apt_install("/tmp/systraq.deb", "debsums", LEAF)
    wait_for_first_baseline(chroot)
    assert chroot.exists("/etc/apt/apt.conf.d/70systraq")


def test_first_run_builds_every_manifest_and_an_intact_system_matches(chroot):
    code, data, seconds = from_archive(chroot)
    cost("first run, whole installed set", data, seconds)
    assert warned(data) == {}, json.dumps(warned(data), indent=1)
    assert code == 0
    # systraq itself was installed from a local .deb: no archive has it.
    assert data["without_manifest"] == []
    assert data["checked_against_dpkg_md5sums"] == ["systraq"]
    assert data["packages"] > 80 and data["files"] > 3000
    assert data["manifests"]["built"] + 1 == data["packages"]
    listing = chroot.run("stat -c '%a %U' /var/lib/systraq/root/manifests "
                         "/var/lib/systraq/root/manifests/findutils_*").stdout.split("\n")
    assert listing[:2] == ["700 root", "600 root"]
    size = chroot.run("du -sb /var/lib/systraq/root/manifests").stdout.split()[0]
    print(f"cost: manifests on disk: {size} bytes")


def test_a_second_run_fetches_nothing(chroot):
    code, data, seconds = from_archive(chroot)
    cost("second run", data, seconds)
    assert data["manifests"]["built"] == 0 and data["manifests"]["fetched_bytes"] == 0
    assert code == 0


def test_a_scheduled_run_that_downloads_prints_nothing(chroot):
    # One manifest gone and apt's download cache empty for this run: the
    # .deb comes from the archive, fetched by apt's sandbox user (_apt).
    # Run from cron or a timer, the job prints nothing at all.
    conf = chroot.read("/etc/systraq/systraq.conf").decode()
    chroot.write("/etc/systraq/systraq.conf", set_option(conf, "packages", "from_archive", "yes"))
    chroot.run("rm /var/lib/systraq/root/manifests/findutils_*"
               " && mkdir -p /var/cache/apt/empty/partial")
    chroot.write("/etc/apt/apt.conf.d/99test-empty-cache",
                 'Dir::Cache::Archives "/var/cache/apt/empty/";\n')
    try:
        result = chroot.run("systraq packages --from-archive --scheduled", check=False)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
        assert chroot.run("ls /var/lib/systraq/root/manifests/findutils_*").stdout
        # The same again, not scheduled: the .deb was downloaded.
        chroot.run("rm /var/lib/systraq/root/manifests/findutils_*")
        _code, data, _seconds = from_archive(chroot)
        assert data["manifests"]["built"] == 1 and data["manifests"]["fetched_bytes"] > 0
    finally:
        chroot.run("rm -rf /etc/apt/apt.conf.d/99test-empty-cache /var/cache/apt/empty")
        chroot.write("/etc/systraq/systraq.conf", conf)


def test_a_binary_changed_with_its_md5sums_line_is_seen_only_by_systraq(chroot):
    chroot.run("cp -p /usr/bin/tac /tmp/tac.orig"
               " && old=$(md5sum < /usr/bin/tac | cut -d' ' -f1)"
               " && printf 'x' | dd of=/usr/bin/tac bs=1 seek=200 conv=notrunc status=none"
               " && new=$(md5sum < /usr/bin/tac | cut -d' ' -f1)"
               " && sed -i \"s/^$old  usr\\/bin\\/tac$/$new  usr\\/bin\\/tac/\" "
               "/var/lib/dpkg/info/coreutils.md5sums")
    assert chroot.run("dpkg --verify coreutils").stdout == ""
    assert chroot.run("debsums -s coreutils", check=False).returncode == 0
    code, data, _ = from_archive(chroot)
    assert code == 1
    assert warned(data) == {"/usr/bin/tac": "content differs (sha256)"}
    chroot.run("cp -p /tmp/tac.orig /usr/bin/tac")


def test_setuid_added_and_a_file_chowned_to_a_user_are_reported(chroot):
    chroot.run("chmod u+s /usr/bin/find")
    code, data, _ = from_archive(chroot)
    assert code == 1
    assert warned(data) == {"/usr/bin/find": "mode 4755, not 0755 (setuid added)"}
    chroot.run("chmod u-s /usr/bin/find && chown nobody /usr/bin/find")
    code, data, _ = from_archive(chroot)
    assert warned(data) == {"/usr/bin/find": "owner nobody, not root"}
    chroot.run("chown root /usr/bin/find")
    code, data, _ = from_archive(chroot)
    assert code == 0 and warned(data) == {}


def test_stat_overrides_are_honoured(chroot):
    chroot.run("dpkg-statoverride --update --add root nogroup 0750 /usr/bin/find")
    code, data, _ = from_archive(chroot)
    assert code == 0 and warned(data) == {}
    # The override is what the file must be now.
    chroot.run("chmod 0755 /usr/bin/find")
    code, data, _ = from_archive(chroot)
    assert warned(data) == {"/usr/bin/find": "mode 0755, not 0750"}
    chroot.run("dpkg-statoverride --remove /usr/bin/find && chgrp root /usr/bin/find")
    code, data, _ = from_archive(chroot)
    assert code == 0 and warned(data) == {}


@pytest.mark.skipif(SUITE not in NEXT, reason=f"{SUITE} has no later release to upgrade to")
def test_the_hook_records_tampering_before_an_upgrade_erases_it(chroot):
    # The hook checks only while the check against the archive is on.
    conf = chroot.read("/etc/systraq/systraq.conf").decode()
    chroot.write("/etc/systraq/systraq.conf", set_option(conf, "packages", "from_archive", "yes"))
    chroot.write(f"/etc/apt/sources.list.d/{NEXT[SUITE]}.list",
                 f"deb {mirror()} {NEXT[SUITE]} main\n")
    chroot.write("/etc/apt/apt.conf.d/99default-release", f'APT::Default-Release "{SUITE}";\n')
    chroot.run("apt-get update -qq")
    old = chroot.run(f"dpkg-query -W -f '${{Version}}' {LEAF}").stdout
    chroot.run(f"echo tampered >> {LEAF_FILE}")
    started = time.monotonic()
    upgrade = chroot.apt(f"apt-get install -y -q --no-install-recommends -t {NEXT[SUITE]} {LEAF}")
    elapsed = time.monotonic() - started
    new = chroot.run(f"dpkg-query -W -f '${{Version}}' {LEAF}").stdout
    assert new != old
    # Silent: no word of the hook's in apt's output (systraq's trigger
    # on /etc is named by dpkg, as every trigger is).
    assert quiet(upgrade)
    report = chroot.run("systraq report --stdout", check=False).stdout
    line = [x for x in report.splitlines() if LEAF_FILE in x]
    assert line and "before the upgrade to " + new in line[0], report
    assert "differed from its package in the archive" in line[0]
    print(f"cost: apt-get install of the upgrade, hook included: {elapsed:.1f} s")
    # The upgraded file matches its new manifest, built by the next run.
    code, data, seconds = from_archive(chroot)
    cost("after upgrading one package", data, seconds)
    assert data["manifests"]["built"] == 1 and code == 0


def test_the_hook_on_every_installed_package_is_quick_and_finds_nothing(chroot):
    # As if apt were about to reinstall everything: the hook's worst case.
    lines = chroot.run("dpkg-query -W -f '${Package} ${Version} ${Architecture} none = "
                       "${Version} ${Architecture} none /var/cache/apt/archives/x.deb\\n'"
                       ).stdout
    chroot.write("/tmp/hook-input", "VERSION 3\nAPT::Architecture=amd64\n\n" + lines)
    before = chroot.run("ls /var/lib/systraq/spool | wc -l").stdout
    started = time.monotonic()
    result = chroot.run("/usr/sbin/systraq packages --pre-install-hook < /tmp/hook-input")
    elapsed = time.monotonic() - started
    assert result.stdout == result.stderr == ""
    assert chroot.run("ls /var/lib/systraq/spool | wc -l").stdout == before
    print(f"cost: the hook over all {len(lines.splitlines())} packages: {elapsed:.2f} s")


def test_the_hook_does_nothing_once_systraq_is_removed(chroot):
    chroot.run("apt-get remove -y -q systraq")
    assert chroot.exists("/etc/apt/apt.conf.d/70systraq")
    result = chroot.run(f"apt-get install -y -q --reinstall {LEAF}")
    assert quiet(result)
