# SPDX-License-Identifier: GPL-2.0-or-later
"""Manifests from a real .deb (dpkg-deb --build), and the check against them, on a fake root."""

import hashlib
import io
import json
import os
import subprocess

import pytest

from systraq import archive, dpkgdb, fromarchive, manifest
from systraq.cli import main
from systraq.spool import Spool

TOOL = b"#!/bin/sh\necho tool\n"
HELPER = b"\x7fELF pretend helper\n"


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def build_deb(tmp_path, name="tool", version="1.0-1", tool=TOOL):
    """A .deb made by dpkg-deb, with a file, a setuid file, a symlink, a
    hard link, a conffile and a document; its path."""
    top = tmp_path / f"{name}-{version}"
    for directory in ("DEBIAN", "usr/bin", "etc", f"usr/share/doc/{name}"):
        (top / directory).mkdir(parents=True, exist_ok=True)
    (top / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n"
        "Maintainer: x <x@example.org>\nDescription: test\n")
    (top / "DEBIAN/conffiles").write_text(f"/etc/{name}.conf\n")
    (top / "usr/bin" / name).write_bytes(tool)
    os.chmod(top / "usr/bin" / name, 0o755)
    (top / "usr/bin/helper").write_bytes(HELPER)
    os.chmod(top / "usr/bin/helper", 0o4755)
    os.link(top / "usr/bin/helper", top / "usr/bin/helper2")
    os.symlink(name, top / "usr/bin/alias")
    (top / f"etc/{name}.conf").write_text("setting = 1\n")
    (top / f"usr/share/doc/{name}/README").write_text("read me\n")
    for directory in ("DEBIAN", "usr", "usr/bin", "etc", "usr/share", "usr/share/doc",
                      f"usr/share/doc/{name}"):
        os.chmod(top / directory, 0o755)
    deb = tmp_path / f"{name}_{version}_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(top),
                    str(deb)], check=True, capture_output=True)
    return str(deb)


class Installed:
    """A .deb unpacked into a FakeRoot with its dpkg database entries."""

    def __init__(self, root):
        self.root = root
        self.stanzas = {}
        # The fake system's root account is whoever runs the tests, so
        # that the unpacked files' owner is the one the .deb names.
        root.write("/etc/passwd", f"root:x:{os.getuid()}:{os.getgid()}::/root:/bin/sh\n"
                   "nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n")
        root.write("/etc/group", f"root:x:{os.getgid()}:\nnogroup:x:65534:\n")
        root.write("/var/lib/dpkg/info/format", "1\n")
        root.mkdir("/etc/dpkg/dpkg.cfg.d")

    def install(self, deb):
        subprocess.run(["dpkg-deb", "-x", deb, self.root.path], check=True)
        fields = subprocess.run(["dpkg-deb", "-f", deb, "Package", "Version"], check=True,
                                capture_output=True, text=True).stdout.split("\n")
        name, version = (f.split(": ", 1)[1] for f in fields[:2])
        listing = subprocess.run(["dpkg-deb", "-c", deb], check=True, capture_output=True,
                                 text=True).stdout.splitlines()
        paths = []
        for line in listing:
            path = line.split(None, 5)[5].split(" -> ")[0].split(" link to ")[0]
            path = "/" + path.lstrip("./").rstrip("/")
            if path != "/":
                paths.append(path)
        info = f"/var/lib/dpkg/info/{name}"
        self.root.write(info + ".list", "/.\n" + "".join(p + "\n" for p in sorted(paths)))
        conf = f"/etc/{name}.conf"
        sums = []
        for path in sorted(paths):
            host = self.root.host(path)
            if os.path.isfile(host) and not os.path.islink(host) and path != conf:
                sums.append(f"{hashlib.md5(open(host, 'rb').read()).hexdigest()}  {path[1:]}\n")
        self.root.write(info + ".md5sums", "".join(sums))
        conf_md5 = hashlib.md5(open(self.root.host(conf), "rb").read()).hexdigest()
        self.stanzas[name] = (f"Package: {name}\nStatus: install ok installed\n"
                              f"Architecture: amd64\nVersion: {version}\n"
                              f"Conffiles:\n {conf} {conf_md5}\n")
        self.root.write("/var/lib/dpkg/status", "\n".join(self.stanzas.values()))

    def forge(self, name, path, data):
        """Change a file and its md5sums line together."""
        host = self.root.host(path)
        old = hashlib.md5(open(host, "rb").read()).hexdigest()
        with open(host, "r+b") as handle:
            handle.write(data)
        sums = self.root.host(f"/var/lib/dpkg/info/{name}.md5sums")
        text = open(sums).read().replace(old, hashlib.md5(open(host, "rb").read()).hexdigest())
        open(sums, "w").write(text)


def fetcher_of(debs, calls=None):
    """A fetcher that hands out local .debs by (name, version), as
    archive.fetch_verified hands out verified ones."""
    def fetch(package, area):
        if calls is not None:
            calls.append(package.key)
        deb = debs.get((package.name, package.version))
        if deb is None:
            raise archive.Unavailable(f"{package.key} {package.version}: not in any "
                                      "package list apt knows", absent=True)
        if deb == "down":
            raise archive.Unavailable(f"{package.key}: download failed: 503")
        data = open(deb, "rb").read()
        # Downloaded where apt writes, then taken by root: a copy the
        # builder removes once read.
        copy = os.path.join(area.incoming, os.path.basename(deb))
        open(copy, "wb").write(data)
        return archive.Fetched(area.take(copy), sha256(data), len(data), True)
    return fetch


@pytest.fixture
def system(root, tmp_path):
    installed = Installed(root)
    (tmp_path / "debs").mkdir()
    deb = build_deb(tmp_path / "debs")
    installed.install(deb)
    installed.debs = {("tool", "1.0-1"): deb}
    return installed


def built(root, installed, **kwargs):
    settings = root.settings()
    database = dpkgdb.load(settings)
    fetch = kwargs.pop("fetcher", None) or fetcher_of(installed.debs)
    result = manifest.ensure(settings, database, database.installed(),
                             fetcher=fetch, **kwargs)
    return settings, database, result


def checked(root, installed):
    settings, database, _ = built(root, installed)
    database = dpkgdb.load(settings)
    return fromarchive.check(settings, database, database.installed(), workers=1)


def found(result):
    return {f.path.decode(): f.detail for f in result.findings}


# --- manifests ------------------------------------------------------------------------

def test_a_manifest_holds_every_member_of_the_deb(tmp_path):
    entries = manifest.entries_of_deb(build_deb(tmp_path))
    assert entries[b"/usr/bin/tool"] == ("f", 0o755, "root", "root", 0, 0, sha256(TOOL))
    assert entries[b"/usr/bin/helper"][:2] == ("f", 0o4755)
    # A hard link is the file it links to, content included.
    assert entries[b"/usr/bin/helper2"][manifest.VALUE] == sha256(HELPER)
    assert entries[b"/usr/bin/alias"][manifest.KIND] == "l"
    assert entries[b"/usr/bin/alias"][manifest.VALUE] == b"tool"
    assert entries[b"/usr/share/doc/tool"][:2] == ("d", 0o755)
    assert b"/etc/tool.conf" in entries and b"/" not in entries


def test_the_format_keeps_odd_names_and_refuses_damage():
    entries = {b"/usr/bin/a\tb\nc": ("f", 0o644, "root", "r\u00f6ot", 0, 7, "ab" * 32),
               b"/usr/bin/\xff": ("l", 0o777, "root", "root", 0, 0, b"x\ty\xfe"),
               b"/usr": ("d", 0o755, "root", "root", 0, 0, None)}
    header = {"format": manifest.FORMAT, "package": "p", "source": "archive"}
    data = manifest.encode(header, entries)
    assert manifest.decode(data).entries == entries
    with pytest.raises(manifest.RunError, match="damaged manifest"):
        manifest.decode(data[:-5])


def test_manifests_are_built_once_per_version_root_only(root, system):
    calls = []
    settings, _, result = built(root, system, fetcher=fetcher_of(system.debs, calls))
    assert result.built == 1 and calls == ["tool"]
    assert result.fetched_bytes == os.path.getsize(system.debs[("tool", "1.0-1")])
    store = manifest.directory(settings)
    assert os.stat(store).st_mode & 0o777 == 0o700
    (name,) = os.listdir(store)
    deb_sha = sha256(open(system.debs[("tool", "1.0-1")], "rb").read())
    assert name == f"tool_1.0-1_amd64_{deb_sha}.manifest".encode()
    assert os.stat(os.path.join(store, name)).st_mode & 0o777 == 0o600
    # Nothing new installed: nothing fetched, however often it runs.
    _, _, again = built(root, system, fetcher=fetcher_of(system.debs, calls))
    assert again.built == 0 and calls == ["tool"]


def test_an_upgrade_gets_a_new_manifest_and_the_old_one_goes(root, system, tmp_path):
    settings, _, _ = built(root, system)
    (tmp_path / "v2").mkdir()
    newer = build_deb(tmp_path / "v2", version="1.1-1", tool=b"#!/bin/sh\necho v2\n")
    system.install(newer)
    system.debs[("tool", "1.1-1")] = newer
    _, _, result = built(root, system)
    assert result.built == 1 and result.removed == 1
    assert list(manifest.index(settings)) == [("tool", "1.1-1", "amd64")]


def test_a_local_package_falls_back_to_dpkg_sums_and_is_listed(root, system):
    settings, _, result = built(root, system, fetcher=fetcher_of({}))
    assert [p.key for p in result.from_dpkg] == ["tool"]
    database = dpkgdb.load(settings)
    check = fromarchive.check(settings, database, database.installed(), workers=1)
    assert check.from_dpkg == ["tool"] and check.findings == []
    # Content only, by dpkg's md5 as it was when the manifest was made:
    # changing the file and its sums line afterwards is still seen.
    system.forge("tool", "/usr/bin/tool", b"#!/bin/sh\nrm -rf\n")
    check = fromarchive.check(settings, dpkgdb.load(settings), database.installed(),
                              workers=1)
    assert found(check) == {"/usr/bin/tool": "content differs (md5 of dpkg's sums)"}


def test_a_failed_download_is_tried_again_offline_and_limit_build_nothing(root, system):
    settings, _, result = built(root, system, fetcher=fetcher_of({("tool", "1.0-1"): "down"}))
    assert [(p.key, "503" in r) for p, r in result.failed] == [("tool", True)]
    assert manifest.index(settings) == {}
    _, _, offline = built(root, system, offline=True)
    assert offline.built == 0 and manifest.index(settings) == {}
    check = fromarchive.check(settings, dpkgdb.load(settings),
                              dpkgdb.load(settings).installed(), workers=1)
    assert check.without_manifest == ["tool"] and check.findings == []
    _, _, result = built(root, system, fetch_limit=1)
    # The limit lets the first .deb through, then defers the rest.
    assert result.built == 1


# --- the check --------------------------------------------------------------------------

def test_an_intact_installation_matches(root, system):
    result = checked(root, system)
    assert result.findings == [] and result.without_manifest == []
    assert result.files >= 6


def test_a_binary_changed_with_its_md5sums_line_is_reported(root, system):
    built(root, system)
    system.forge("tool", "/usr/bin/tool", b"#!/bin/sh\nevil\n")
    # dpkg's sums agree with the file now...
    sums = dpkgdb.load(root.settings()).sums(dpkgdb.load(root.settings()).installed()[0])
    assert sums[b"/usr/bin/tool"] == hashlib.md5(
        open(root.host("/usr/bin/tool"), "rb").read()).hexdigest()
    # ...the manifest does not.
    assert found(checked(root, system)) == {"/usr/bin/tool": "content differs (sha256)"}


def test_setuid_added_and_a_changed_symlink_are_reported(root, system):
    os.chmod(root.host("/usr/bin/tool"), 0o4755)
    os.unlink(root.host("/usr/bin/alias"))
    os.symlink("/tmp/evil", root.host("/usr/bin/alias"))
    assert found(checked(root, system)) == {
        "/usr/bin/tool": "mode 4755, not 0755 (setuid added)",
        "/usr/bin/alias": "links to /tmp/evil, not tool"}


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_file_chowned_to_a_user_is_reported(root, system):
    os.chown(root.host("/usr/bin/tool"), 65534, -1)
    assert found(checked(root, system)) == {"/usr/bin/tool": "owner nobody, not root"}


def test_stat_overrides_are_honoured_and_checked(root, system):
    root.write("/var/lib/dpkg/statoverride", "root root 2755 /usr/bin/tool\n"
               "#0 nogroup 0700 /usr/bin/helper\n")
    os.chmod(root.host("/usr/bin/tool"), 0o2755)
    # helper (and its hard link) stay 4755: the override says 0700.
    # "#0": uid 0, the fake system's root only when the tests run as root.
    owner = "" if os.getuid() == 0 else "; owner root, not 0"
    assert found(checked(root, system)) == {
        "/usr/bin/helper": f"mode 4755, not 0700 (setuid added){owner}; group root, "
                           "not nogroup"}


def test_conffiles_excluded_paths_taken_over_files_and_diversions(root, system):
    built(root, system)
    # A conffile is the admin's: systraq packages reports its edits.
    root.write("/etc/tool.conf", "setting = 2\n")
    # Kept off the disk by dpkg's filters: not missing.
    root.write("/etc/dpkg/dpkg.cfg.d/excludes", "path-exclude=/usr/share/doc/*\n")
    os.unlink(root.host("/usr/share/doc/tool/README"))
    # A local diversion: the package's file is where it was diverted to.
    os.rename(root.host("/usr/bin/tool"), root.host("/usr/bin/tool.real"))
    root.write("/usr/bin/tool", "local replacement\n")
    root.write("/var/lib/dpkg/diversions", "/usr/bin/tool\n/usr/bin/tool.real\n:\n")
    assert checked(root, system).findings == []
    # And a file that really is missing is.
    os.unlink(root.host("/usr/bin/tool.real"))
    result = checked(root, system)
    assert [(f.kind, f.path) for f in result.findings] == [
        (fromarchive.MISSING, b"/usr/bin/tool.real")]


def test_the_daily_run_queues_new_findings_once_and_fixes(root, system):
    settings = root.settings()
    os.chmod(root.host("/usr/bin/tool"), 0o4755)
    first = fromarchive.save(settings, checked(root, system), now=1_800_000_000)
    assert [(r["change"], r["path"]) for r in first] == [(fromarchive.MISMATCH,
                                                          "/usr/bin/tool")]
    assert os.stat(fromarchive.state_path(settings)).st_mode & 0o777 == 0o600
    assert fromarchive.save(settings, checked(root, system), now=1_800_086_400) == []
    os.chmod(root.host("/usr/bin/tool"), 0o755)
    fixed = fromarchive.save(settings, checked(root, system), now=1_800_172_800)
    assert [(r["change"], r["path"]) for r in fixed] == [("fixed", "/usr/bin/tool")]
    sources = [b.source for b in Spool(settings).pending()]
    assert sources == ["archive", "archive"]


# --- the apt hook -------------------------------------------------------------------------

HOOK_INPUT = (b"VERSION 3\nAPT::Architecture=amd64\nDPkg::Pre-Install-Pkgs::=x\n\n"
              b"tool 1.0-1 amd64 none < 1.1-1 amd64 none /var/cache/apt/archives/t.deb\n"
              b"newpkg - - none < 2.0 amd64 none /var/cache/apt/archives/n.deb\n"
              b"tool 1.0-1 amd64 none < 1.1-1 amd64 none **CONFIGURE**\n")


def test_the_hook_reads_apt_protocol_versions():
    assert fromarchive.parse_hook_input(io.BytesIO(HOOK_INPUT)) == [
        ("tool", "amd64", "1.0-1", "1.1-1", "unpack")]
    two = b"VERSION 2\nA=b\n\nold 1 < 2 **REMOVE**\nnew - < 1 /x.deb\n"
    assert fromarchive.parse_hook_input(io.BytesIO(two)) == [
        ("old", "-", "1", "2", "remove")]
    assert fromarchive.parse_hook_input(io.BytesIO(b"/var/cache/apt/archives/x.deb\n")) == []


def test_the_hook_queues_tampering_before_the_upgrade_erases_it(root, system):
    settings = root.settings()
    built(root, system)
    system.forge("tool", "/usr/bin/tool", b"#!/bin/sh\nevil\n")
    records = fromarchive.pre_install_hook(settings, io.BytesIO(HOOK_INPUT), now=1_800_000_000)
    assert [(r["path"], r["change"]) for r in records] == [
        ("/usr/bin/tool", fromarchive.BEFORE_UPGRADE)]
    assert "before the upgrade to 1.1-1" in records[0]["detail"]
    (batch,) = Spool(settings).pending()
    assert Spool.records(batch)[0]["path"] == "/usr/bin/tool"


def test_the_hook_never_fails_and_queues_its_own_failure(root, system, monkeypatch):
    settings = root.settings()
    root.write("/var/lib/dpkg/status", "garbage without a colon\n")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(HOOK_INPUT)))
    assert fromarchive.hook_main(settings) == 0
    (batch,) = Spool(settings).pending()
    assert Spool.records(batch)[0]["change"] == "pre-install check failed"


# --- the command line -------------------------------------------------------------------

def test_cli_offline_json_and_exit_status(root, system, capsys):
    built(root, system)
    os.chmod(root.host("/usr/bin/tool"), 0o4755)
    args = ["--root", os.fsdecode(root.path), "packages", "--from-archive", "--offline"]
    assert main(args + ["--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [(f["path"], f["warning"]) for f in data["findings"]] == [("/usr/bin/tool", True)]
    assert data["manifests"]["built"] == 0
    assert main(["--root", os.fsdecode(root.path), "packages", "--offline"]) == 2
    assert "go with --from-archive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        main(args + ["--fetch-limit", "lots"])
    assert exit.value.code == 2 and "not a size" in capsys.readouterr().err
    os.chmod(root.host("/usr/bin/tool"), 0o755)
    assert main(args + ["-v"]) == 0
    assert "from archive: 1 packages" in capsys.readouterr().out


@pytest.mark.skipif(os.geteuid() != 0,
                    reason="the scanner follows a link only in a directory root owns "
                           "(scan._trusted): the fake tree must be root's")
def test_a_symlink_where_a_directory_was_shipped_is_what_dpkg_keeps(root, system):
    # Merged /usr: the package's /usr/share/doc/tool is reached through a link.
    os.rename(root.host("/usr/share/doc/tool"), root.host("/usr/share/doc/tool.real"))
    os.symlink("tool.real", root.host("/usr/share/doc/tool"))
    assert checked(root, system).findings == []


def test_cli_scheduled_runs_only_when_the_configuration_says_so(root, system, capsys):
    built(root, system)
    os.chmod(root.host("/usr/bin/tool"), 0o4755)
    args = ["--root", os.fsdecode(root.path), "packages", "--from-archive", "--offline",
            "--scheduled"]
    # [packages] from_archive = no (the default): nothing is checked.
    assert main(args) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["--root", os.fsdecode(root.path), "packages", "--scheduled"]) == 2
    assert "go with --from-archive" in capsys.readouterr().err
    root.write("/etc/systraq/systraq.conf", "[packages]\nfrom_archive = yes\n")
    # Enabled: the check runs, finds the setuid bit, prints nothing (cron).
    assert main(args) == 1
    assert capsys.readouterr() == ("", "")


def test_downloads_stop_after_three_failures_in_a_row(root, system):
    # No network: each download would wait for its own time-out, and the
    # daily report waits for the job.  The rest is left for the next run.
    settings = root.settings()
    database = dpkgdb.load(settings)
    calls = []

    def unreachable(package, area):
        calls.append(package)
        raise archive.Unavailable("Temporary failure resolving 'deb.debian.org'")

    packages = database.installed() * 5
    result = manifest.ensure(settings, database, packages, fetcher=unreachable, prune=False)
    assert len(calls) == manifest.GIVE_UP_AFTER == 3
    assert len(result.failed) == 3 and len(result.deferred) == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="apt's sandbox user is dropped to only by root")
def test_downloads_go_where_apts_sandbox_user_writes_and_root_reads_its_own_copy(tmp_path):
    import pwd
    import stat
    sandbox = pwd.getpwnam("_apt")
    with archive.download_area("systraq-test-") as area:
        top, incoming = os.stat(area.top), os.stat(area.incoming)
        assert (top.st_uid, stat.S_IMODE(top.st_mode)) == (0, 0o711)
        assert (incoming.st_uid, stat.S_IMODE(incoming.st_mode)) == (sandbox.pw_uid, 0o700)
        deb = os.path.join(area.incoming, "a_1_all.deb")
        with open(deb, "wb") as handle:
            handle.write(b"!<arch>\n")
        os.chown(deb, sandbox.pw_uid, sandbox.pw_gid)
        taken = area.take(deb)
        assert os.path.dirname(taken) == area.top and not os.path.lexists(deb)
        info = os.stat(taken)
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600)
        assert open(taken, "rb").read() == b"!<arch>\n"
        # What the sandbox user left there is never followed.
        os.symlink("/etc/shadow", os.path.join(area.incoming, "b_1_all.deb"))
        with pytest.raises(archive.Unavailable, match="the download is not a file"):
            area.take(os.path.join(area.incoming, "b_1_all.deb"))
    assert not os.path.exists(area.top)
