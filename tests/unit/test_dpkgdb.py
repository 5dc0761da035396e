# SPDX-License-Identifier: GPL-2.0-or-later
"""systraq.dpkgdb against fake dpkg databases built below the test root.

Every admindir here is written by the FakeDpkg helper into the ``root``
fixture's tree; nothing reads the host's /var/lib/dpkg or /etc/dpkg.
"""

import ctypes
import ctypes.util
import hashlib
import os

import pytest

from systraq import dpkgdb
from systraq.errors import ConfigError, RunError, SystraqError, UsageError

ADMIN = "/var/lib/dpkg"


def md5(data):
    return hashlib.md5(data).hexdigest()


class FakeDpkg:
    """Writes a dpkg admindir (status, info/*, diversions) below a FakeRoot."""

    def __init__(self, root, info_format=b"1\n"):
        self.root = root
        self.stanzas = []
        root.mkdir(ADMIN + "/info")
        if info_format is not None:
            root.write(ADMIN + "/info/format", info_format)

    def package(self, name, files=None, arch="amd64", version="1.0",
                state="installed", multi_arch=None, conffiles=None, sums=True,
                listed=None, extra_sums=b"", want="install", write_files=True):
        """Add a package.

        ``files`` maps logical paths (bytes or str) to contents: each is
        written below the root, listed in the .list and in md5sums.
        ``conffiles`` maps paths to ``(content, flags...)`` or to a raw
        ``Conffiles`` line tail (bytes: hash and flags).  ``listed``
        replaces the generated .list paths; ``sums`` False writes no
        md5sums file.
        """
        files = {os.fsencode(k): v for k, v in (files or {}).items()}
        conffiles = {os.fsencode(k): v for k, v in (conffiles or {}).items()}
        lines = [f"Package: {name}", f"Status: {want} ok {state}",
                 "Maintainer: Nobody <nobody@example.org>"]
        if arch:
            lines.append(f"Architecture: {arch}")
        if multi_arch:
            lines.append(f"Multi-Arch: {multi_arch}")
        if version:
            lines.append(f"Version: {version}")
        stanza = "\n".join(lines).encode() + b"\n"
        if conffiles:
            stanza += b"Conffiles:\n"
            for path, spec in conffiles.items():
                if isinstance(spec, bytes):
                    tail = spec
                else:
                    content, *flags = spec
                    if write_files:
                        self.root.write(path, content)
                    tail = " ".join([md5(content)] + flags).encode()
                stanza += b" " + path + b" " + tail + b"\n"
        stanza += b"Description: test package\n"
        self.stanzas.append(stanza)

        stem = f"{name}:{arch}" if multi_arch == "same" else name
        sum_lines = b""
        for path, content in files.items():
            if write_files:
                self.root.write(path, content)
            sum_lines += md5(content).encode() + b"  " + path.lstrip(b"/") + b"\n"
        if sums:
            self.root.write(f"{ADMIN}/info/{stem}.md5sums", sum_lines + extra_sums)
        if listed is None:
            listed = [b"/."] + sorted(set(files) | set(conffiles))
        self.root.write(f"{ADMIN}/info/{stem}.list",
                        b"".join(os.fsencode(p) + b"\n" for p in listed))
        return self

    def diversions(self, *records):
        """Write ``(from, to, package or ':')`` records."""
        data = b"".join(b"%s\n%s\n%s\n" % tuple(os.fsencode(f) for f in r)
                        for r in records)
        self.root.write(ADMIN + "/diversions", data)
        return self

    def write(self, extra=b""):
        self.root.write(ADMIN + "/status", b"\n".join(self.stanzas) + extra)
        return self

    def load(self):
        self.write()
        return dpkgdb.load(self.root.settings())


@pytest.fixture
def dpkg(root):
    return FakeDpkg(root)


def paths(plan):
    return [(item.package.key, item.path) for item in plan.items]


def status_name(root):
    return os.fsdecode(root.host(ADMIN + "/status"))


# --- settings --------------------------------------------------------------------

def test_settings_put_dpkg_below_the_root(root):
    settings = root.settings()
    assert settings.dpkg_admindir == root.host("/var/lib/dpkg")
    assert settings.dpkg_cfg_dir == root.host("/etc/dpkg")


# --- packages and states ------------------------------------------------------------

def test_only_packages_with_files_on_disk_are_installed(dpkg):
    for state in ("installed", "half-installed", "unpacked", "half-configured",
                  "triggers-awaited", "triggers-pending", "config-files",
                  "not-installed"):
        dpkg.package(f"p-{state}", {f"/usr/share/{state}": b"x"}, state=state)
    db = dpkg.load()
    assert [p.name for p in db.installed()] == [
        "p-half-configured", "p-half-installed", "p-installed",
        "p-triggers-awaited", "p-triggers-pending", "p-unpacked"]
    # debsums: /\s(installed|half-configured)$/
    assert [p.name for p in db.installed(dpkgdb.DEBSUMS_STATES)] == [
        "p-half-configured", "p-installed"]
    planned = db.plan(states=dpkgdb.DEBSUMS_STATES)
    assert [p for _k, p in paths(planned)] == [
        b"/usr/share/half-configured", b"/usr/share/installed"]


def test_package_fields(dpkg):
    dpkg.package("tool", version="1:2.3-4", want="hold", multi_arch="foreign")
    pkg, = dpkg.load().packages
    assert (pkg.name, pkg.arch, pkg.version, pkg.multi_arch, pkg.want, pkg.eflag,
            pkg.state) == ("tool", "amd64", "1:2.3-4", "foreign", "hold", "ok",
                           "installed")
    assert pkg.multi_arch == "foreign" and pkg.key == "tool"


# --- multiarch -------------------------------------------------------------------------

def test_multi_arch_same_packages_use_qualified_info_files(dpkg, root):
    dpkg.package("dpkg", arch="amd64")
    dpkg.package("libfoo", {"/usr/lib/x86_64-linux-gnu/libfoo.so.1": b"64"},
                 multi_arch="same")
    dpkg.package("libfoo", {"/usr/lib/i386-linux-gnu/libfoo.so.1": b"32"},
                 arch="i386", multi_arch="same")
    dpkg.package("helper", {"/usr/bin/helper": b"h"}, multi_arch="foreign")
    dpkg.package("wine32", {"/usr/bin/wine32": b"w"}, arch="i386")
    dpkg.package("docs", {"/usr/share/doc/docs/README": b"d"}, arch="all")
    db = dpkg.load()
    info = root.host(ADMIN + "/info/")
    by_key = {p.key: p for p in db.packages}
    assert sorted(by_key) == ["docs", "dpkg", "helper", "libfoo:amd64",
                              "libfoo:i386", "wine32:i386"]
    assert db.native_arch == "amd64"
    assert db.info_path(by_key["libfoo:i386"], b"md5sums") == info + b"libfoo:i386.md5sums"
    assert db.info_path(by_key["helper"], b"list") == info + b"helper.list"
    # Only Multi-Arch: same qualifies the file name, not a foreign arch.
    assert db.info_path(by_key["wine32:i386"], b"list") == info + b"wine32.list"
    assert paths(db.plan()) == [
        ("docs", b"/usr/share/doc/docs/README"),
        ("helper", b"/usr/bin/helper"),
        ("libfoo:amd64", b"/usr/lib/x86_64-linux-gnu/libfoo.so.1"),
        ("libfoo:i386", b"/usr/lib/i386-linux-gnu/libfoo.so.1"),
        ("wine32:i386", b"/usr/bin/wine32"),
    ]


def test_legacy_info_layout_never_qualifies(root):
    dpkg = FakeDpkg(root, info_format=None)
    root.write(ADMIN + "/info/libfoo.md5sums", md5(b"x").encode() + b"  usr/lib/libfoo\n")
    root.write(ADMIN + "/info/libfoo.list", b"/usr/lib/libfoo\n")
    dpkg.package("libfoo", multi_arch="same", sums=False, listed=[])
    os.unlink(root.host(ADMIN + "/info/libfoo:amd64.list"))
    db = dpkg.load()
    assert db.info_format == dpkgdb.INFODB_LEGACY
    assert [(i.path, i.md5) for i in db.plan().items] == [(b"/usr/lib/libfoo", md5(b"x"))]


def test_info_format_upgrade_in_progress_and_too_new(root, dpkg):
    root.write(ADMIN + "/info/format", b"0\n")
    root.write(ADMIN + "/info/format.new", b"1\n")
    assert dpkg.load().info_format == dpkgdb.INFODB_MULTIARCH
    os.unlink(root.host(ADMIN + "/info/format.new"))
    root.write(ADMIN + "/info/format", b"2\n")
    with pytest.raises(dpkgdb.DatabaseError, match=r"info/format:1: .*too new"):
        dpkg.load()
    root.write(ADMIN + "/info/format", b"junk\n")
    with pytest.raises(dpkgdb.DatabaseError, match="corrupt"):
        dpkg.load()


# --- the plan ------------------------------------------------------------------------------

def test_plan_items_carry_the_shipped_digest(dpkg):
    dpkg.package("b", {"/usr/bin/b": b"bee", "/usr/share/b/data": b"data"})
    dpkg.package("a", {"/usr/bin/a": b"ay"})
    plan = dpkg.load().plan()
    assert [p.name for p in plan.packages] == ["a", "b"]
    assert [(i.package.name, i.path, i.md5, i.conffile, i.flags, i.listed)
            for i in plan.items] == [
        ("a", b"/usr/bin/a", md5(b"ay"), False, frozenset(), b"/usr/bin/a"),
        ("b", b"/usr/bin/b", md5(b"bee"), False, frozenset(), b"/usr/bin/b"),
        ("b", b"/usr/share/b/data", md5(b"data"), False, frozenset(),
         b"/usr/share/b/data"),
    ]
    assert plan.without_sums == [] and plan.disowned == [] and plan.problems == []


def test_md5sums_paths_are_normalised_as_dpkg_does(dpkg):
    dpkg.package("odd", {}, extra_sums=(
        md5(b"1").encode() + b"  ./usr/one\n" + md5(b"2").encode() + b"  /usr/two\n"
        + md5(b"3").encode() + b"  usr/three/\n"),
        listed=[b"/usr/one", b"/usr/two", b"/usr/three"])
    db = dpkg.load()
    assert db.sums(db.packages[0]) == {b"/usr/one": md5(b"1"), b"/usr/two": md5(b"2"),
                                       b"/usr/three": md5(b"3")}
    assert [i.path for i in db.plan().items] == [b"/usr/one", b"/usr/two", b"/usr/three"]


def test_odd_list_lines_are_read_carefully_before_a_file_is_disowned(dpkg):
    dpkg.package("odd", {"/usr/one": b"1", "/usr/two": b"2", "/usr/three": b"3"},
                 listed=[b"/.", b"usr/one", b"//usr/two", b"/./usr/three/"])
    db = dpkg.load()
    plan = db.plan()
    assert [i.path for i in plan.items] == [b"/usr/one", b"/usr/two", b"/usr/three"]
    assert plan.disowned == []
    assert db.files(db.packages[0]) == {b"/.", b"/usr/one", b"/usr/two", b"/usr/three"}


def test_packages_without_sums_still_have_their_conffiles_checked(dpkg):
    dpkg.package("nosums", {"/usr/bin/nosums": b"n"},
                 conffiles={"/etc/nosums.conf": (b"conf",)}, sums=False)
    dpkg.package("emptysums", {}, listed=[b"/usr/share/doc/emptysums"])
    db = dpkg.load()
    plan = db.plan()
    assert [p.name for p in plan.without_sums] == ["nosums"]
    assert [(i.path, i.md5, i.conffile) for i in plan.items] == [
        (b"/etc/nosums.conf", md5(b"conf"), True)]
    by_name = {p.name: p for p in db.packages}
    assert db.sums(by_name["nosums"]) is None and not db.has_sums(by_name["nosums"])
    assert db.sums(by_name["emptysums"]) == {} and db.has_sums(by_name["emptysums"])


def test_a_package_without_a_files_list_has_no_files(dpkg, root):
    dpkg.package("nolist", {"/usr/bin/nolist": b"x"})
    os.unlink(root.host(ADMIN + "/info/nolist.list"))
    plan = dpkg.load().plan()
    assert plan.items == []
    (file, line, message), = plan.problems
    assert file.endswith("/info/nolist.list") and line is None
    assert "no files list" in message


def test_existence_adds_every_other_listed_path(dpkg):
    dpkg.package("p", {"/usr/bin/p": b"p"}, conffiles={"/etc/p": (b"c",)},
                 listed=[b"/.", b"/etc", b"/etc/p", b"/usr", b"/usr/bin",
                         b"/usr/bin/p", b"/usr/bin/link"])
    items = dpkg.load().plan(existence=True).items
    assert [(i.path, i.md5 is not None, i.conffile) for i in items] == [
        (b"/usr/bin/p", True, False), (b"/etc/p", True, True),
        (b"/.", False, False), (b"/etc", False, False), (b"/usr", False, False),
        (b"/usr/bin", False, False), (b"/usr/bin/link", False, False)]


# --- conffiles -----------------------------------------------------------------------------

def test_conffiles_field_flags_and_special_hashes(dpkg):
    digest = md5(b"x")
    dpkg.package("c", conffiles={
        "/etc/plain": (b"plain",),
        "/etc/old": (b"old", "obsolete"),
        "/etc/gone": (b"gone", "remove-on-upgrade"),
        "/etc/both": (b"both", "obsolete", "remove-on-upgrade"),
        "/etc/with space.conf": (b"space",),
        "/etc/new": b"newconffile",
        "/etc/unread": b"-",
        "./etc/dotted": digest.encode(),
    })
    pkg, = dpkg.load().packages
    assert pkg.conffiles == {
        b"/etc/plain": dpkgdb.Conffile(md5(b"plain"), frozenset(), md5(b"plain")),
        b"/etc/old": dpkgdb.Conffile(md5(b"old"), frozenset({"obsolete"}), md5(b"old")),
        b"/etc/gone": dpkgdb.Conffile(md5(b"gone"), frozenset({"remove-on-upgrade"}),
                                      md5(b"gone")),
        b"/etc/both": dpkgdb.Conffile(md5(b"both"),
                                      frozenset({"obsolete", "remove-on-upgrade"}),
                                      md5(b"both")),
        b"/etc/with space.conf": dpkgdb.Conffile(md5(b"space"), frozenset(), md5(b"space")),
        b"/etc/new": dpkgdb.Conffile(None, frozenset({"newconffile"}), "newconffile"),
        b"/etc/unread": dpkgdb.Conffile(None, frozenset(), "-"),
        b"/etc/dotted": dpkgdb.Conffile(digest, frozenset(), digest),
    }


def test_conffiles_are_checked_against_the_conffiles_field(dpkg):
    # md5sums also lists the conffile, with another sum: the field wins.
    dpkg.package("c", {"/usr/bin/c": b"bin"},
                 conffiles={"/etc/c.conf": (b"as configured",),
                            "/etc/old.conf": (b"old", "obsolete"),
                            "/etc/rou.conf": (b"rou", "remove-on-upgrade"),
                            "/etc/new.conf": b"newconffile"},
                 extra_sums=md5(b"shipped").encode() + b"  etc/c.conf\n",
                 listed=[b"/usr/bin/c", b"/etc/c.conf", b"/etc/old.conf",
                         b"/etc/new.conf"])
    db = dpkg.load()
    items = db.plan().items
    assert [(i.path, i.md5, i.conffile, sorted(i.flags)) for i in items] == [
        (b"/usr/bin/c", md5(b"bin"), False, []),
        (b"/etc/c.conf", md5(b"as configured"), True, []),
        (b"/etc/old.conf", md5(b"old"), True, ["obsolete"]),
        (b"/etc/new.conf", None, True, ["newconffile"]),
    ]
    assert [i.path for i in db.plan(ignore_obsolete=True).items if i.conffile] == [
        b"/etc/c.conf", b"/etc/new.conf"]


def test_a_conffile_taken_over_by_another_package_is_not_checked(dpkg):
    # dpkg marks A's conffile obsolete and drops it from A's list.
    dpkg.package("a", {"/usr/bin/a": b"a"}, conffiles={"/etc/shared.conf": (b"a's",
                                                                          "obsolete")},
                 listed=[b"/usr/bin/a"])
    dpkg.package("b", conffiles={"/etc/shared.conf": (b"b's",)})
    items = dpkg.load().plan().items
    assert [(i.package.name, i.path, i.md5) for i in items] == [
        ("a", b"/usr/bin/a", md5(b"a")), ("b", b"/etc/shared.conf", md5(b"b's"))]


def test_unknown_conffile_hash_is_reported(dpkg, root):
    dpkg.package("c", conffiles={"/etc/c": b"garbage"})
    db = dpkg.load()
    assert db.plan().items[0].md5 is None
    (file, line, message), = db.problems
    assert file == status_name(root) and line == 1
    assert "unknown hash 'garbage'" in message


def test_malformed_conffiles_line_names_the_entry(dpkg, root):
    dpkg.package("ok")
    dpkg.package("c", conffiles={"/etc/c": b""})
    with pytest.raises(dpkgdb.DatabaseError) as info:
        dpkg.load()
    # "ok" takes lines 1-6, a blank line, then "c" from line 8.
    assert str(info.value) == (f"{status_name(root)}:8: malformed line in "
                               "Conffiles: '/etc/c'")


# --- files replaced by another package ---------------------------------------------------

def test_a_file_taken_over_by_another_package_is_checked_for_its_new_owner(dpkg):
    # B Replaces A and took /usr/bin/tool: dpkg rewrote A's list without it
    # but A's md5sums still has A's old sum.
    dpkg.package("a", {"/usr/bin/tool": b"old tool", "/usr/bin/a": b"a"},
                 listed=[b"/.", b"/usr/bin/a"])
    dpkg.package("b", {"/usr/bin/tool": b"new tool"})
    db = dpkg.load()
    plan = db.plan()
    assert [(i.package.name, i.path, i.md5) for i in plan.items] == [
        ("a", b"/usr/bin/a", md5(b"a")), ("b", b"/usr/bin/tool", md5(b"new tool"))]
    assert [(p.name, path) for p, path in plan.disowned] == [("a", b"/usr/bin/tool")]
    assert [p.name for p in db.owners(b"/usr/bin/tool")] == ["b"]
    assert db.owners(b"/nowhere") == ()


def test_a_file_in_two_lists_is_checked_for_each(dpkg):
    # Multi-Arch: same instances share their docs; each has its own sum.
    dpkg.package("lib", {"/usr/share/doc/lib/changelog": b"same"}, multi_arch="same")
    dpkg.package("lib", {"/usr/share/doc/lib/changelog": b"same"}, arch="i386",
                 multi_arch="same")
    db = dpkg.load()
    assert paths(db.plan()) == [("lib:amd64", b"/usr/share/doc/lib/changelog"),
                                ("lib:i386", b"/usr/share/doc/lib/changelog")]
    assert [p.key for p in db.owners(b"/usr/share/doc/lib/changelog")] == [
        "lib:amd64", "lib:i386"]


# --- diversions ----------------------------------------------------------------------------

def test_diverted_files_are_checked_where_they_went(dpkg):
    dpkg.package("libpq-dev", {"/usr/bin/pg_config": b"real"},
                 write_files=False)
    dpkg.package("postgresql-common", {"/usr/bin/pg_config": b"wrapper"})
    dpkg.package("lib", {"/usr/lib/x/lib.so": b"lib"}, multi_arch="same")
    dpkg.package("other", {"/usr/lib/x/lib.so.distrib": b"other"})
    dpkg.package("cfg", conffiles={"/etc/cfg.conf": (b"cfg",)})
    dpkg.diversions(("/usr/bin/pg_config", "/usr/bin/pg_config.libpq-dev",
                     "postgresql-common"),
                    ("/usr/lib/x/lib.so", "/usr/lib/x/lib.so.distrib", "lib"),
                    ("/etc/cfg.conf", "/etc/cfg.conf.local", ":"))
    db = dpkg.load()
    assert [(i.package.key, i.path, i.listed) for i in db.plan().items] == [
        # A local diversion applies to every package, conffiles too.
        ("cfg", b"/etc/cfg.conf.local", b"/etc/cfg.conf"),
        # The diverting package's own file stays (by name: any arch).
        ("lib:amd64", b"/usr/lib/x/lib.so", b"/usr/lib/x/lib.so"),
        ("libpq-dev", b"/usr/bin/pg_config.libpq-dev", b"/usr/bin/pg_config"),
        # A package that ships the diverted-to name is checked as it is.
        ("other", b"/usr/lib/x/lib.so.distrib", b"/usr/lib/x/lib.so.distrib"),
        ("postgresql-common", b"/usr/bin/pg_config", b"/usr/bin/pg_config"),
    ]
    assert db.diversions[b"/etc/cfg.conf"] == dpkgdb.Diversion(
        b"/etc/cfg.conf", b"/etc/cfg.conf.local", None)


def test_no_diversions_file_means_no_diversions(dpkg):
    assert dpkg.load().diversions == {}


def test_diversion_record_cut_short_names_its_line(dpkg, root):
    root.write(ADMIN + "/diversions", b"/a\n/a.distrib\npkg\n/b\n/b.distrib\n")
    with pytest.raises(dpkgdb.DatabaseError) as info:
        dpkg.load()
    assert str(info.value) == (f"{os.fsdecode(root.host(ADMIN + '/diversions'))}:4: "
                               "diversion record is cut short: a record is three "
                               "lines (from, to, package)")


def test_conflicting_diversions_are_refused(dpkg, root):
    dpkg.diversions(("/a", "/a.distrib", "p"), ("/a.distrib", "/a.other", "q"))
    with pytest.raises(dpkgdb.DatabaseError, match=r"diversions:4: conflicting"):
        dpkg.load()
    dpkg.diversions(("/a", "/x", "p"), ("", "/y", "q"))
    with pytest.raises(dpkgdb.DatabaseError, match=r"diversions:4: empty line"):
        dpkg.load()


# --- dpkg's path filters ------------------------------------------------------------------

def cfg(root, name, text):
    root.write(f"/etc/dpkg/{name}", text)


def test_no_dpkg_configuration_excludes_nothing(dpkg):
    db = dpkg.load()
    assert db.filters.rules == [] and not db.excluded(b"/usr/share/doc/x")


def test_path_filters_follow_dpkg_order_and_last_match_wins(root, dpkg):
    # dpkg reads dpkg.cfg.d/* in sorted order, then dpkg.cfg.
    cfg(root, "dpkg.cfg.d/50-include", "path-include=/usr/share/doc/*/copyright\n")
    cfg(root, "dpkg.cfg.d/10-exclude",
        "# docs out\npath-exclude /usr/share/doc/*\npath-exclude=/usr/share/man/*\n")
    cfg(root, "dpkg.cfg.d/60-ignored.conf", "path-exclude=/usr/bin/*\n")  # a '.': skipped
    cfg(root, "dpkg.cfg.d/.hidden", "path-exclude=/usr/sbin/*\n")
    cfg(root, "dpkg.cfg", "force-unsafe-io\npath-include = \"/usr/share/man/man1/*\"  \n"
        "log /var/log/dpkg.log\n")
    db = dpkg.load()
    assert [(kind, pattern) for kind, pattern, _f, _l in db.filters.rules] == [
        ("exclude", b"/usr/share/doc/*"), ("exclude", b"/usr/share/man/*"),
        ("include", b"/usr/share/doc/*/copyright"), ("include", b"/usr/share/man/man1/*")]
    assert db.excluded(b"/usr/share/doc/pkg/README")
    assert db.excluded(b"/usr/share/doc/pkg/sub/dir/file")   # '*' crosses '/'
    assert not db.excluded(b"/usr/share/doc/pkg/copyright")
    assert db.excluded(b"/usr/share/man/man8/x.8.gz")
    assert not db.excluded(b"/usr/share/man/man1/x.1.gz")
    assert not db.excluded(b"/usr/bin/tool") and not db.excluded(b"/usr/sbin/tool")


def test_a_later_exclude_wins_over_an_earlier_include(root):
    cfg(root, "dpkg.cfg.d/a", "path-include=/usr/share/locale/en*\n")
    cfg(root, "dpkg.cfg.d/b", "path-exclude=/usr/share/locale/*\n")
    filters = dpkgdb.load_path_filters(root.settings())
    assert filters.excluded(b"/usr/share/locale/en_GB/LC_MESSAGES/x.mo")


def test_broken_path_options_name_file_and_line(root):
    cfg(root, "dpkg.cfg.d/bad", "path-exclude\nno-debsig\npath-include='/x\n")
    with pytest.raises(ConfigError) as info:
        dpkgdb.load_path_filters(root.settings())
    name = os.fsdecode(root.host("/etc/dpkg/dpkg.cfg.d/bad"))
    assert info.value.lines() == [
        f"{name}:1: 'path-exclude' needs a value",
        f"{name}:3: unbalanced quotes in 'path-include='/x'"]


def libc_fnmatch():
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.fnmatch.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int)
    return lambda pattern, name: libc.fnmatch(pattern, name, 0) == 0


FNMATCH_CASES = [
    b"/usr/share/doc/*", b"*", b"/usr/?in/*", b"/usr/share/doc/*/copyright",
    b"/usr/[bs]*/x", b"/usr/[!b]*", b"/usr/[^b]*", b"/usr/[]]", b"/usr/[a-c]x",
    b"/usr/[a-]", b"/usr/[[:digit:]]*", b"/usr/[[:alpha:][:digit:]]x",
    b"/usr/\\*", b"/usr/\\", b"/usr/[", b"/usr/[ab", b"/usr/.hidden",
    b"/usr/*.gz", b"/usr/share/locale/*/LC_MESSAGES/*.mo", b"/usr/[[:bogus:]]",
    b"/usr/[\\]]x", b"**/x", b"/usr/a?",
]
FNMATCH_NAMES = [
    b"/usr/share/doc/a/b", b"/usr/bin/x", b"/usr/sin/y", b"/usr/share/doc/p/copyright",
    b"/usr/sbin/x", b"/usr/lib", b"/usr/]", b"/usr/bx", b"/usr/-", b"/usr/a",
    b"/usr/7up", b"/usr/7x", b"/usr/*", b"/usr/\\", b"/usr/[", b"/usr/[ab",
    b"/usr/.hidden", b"/usr/a/b.gz", b"/usr/share/locale/de/LC_MESSAGES/x.mo",
    b"/usr/b", b"/usr/]x", b"/x", b"/usr/a/", b"/usr/ab", b"/usr/a\xff",
]


def test_fnmatch_translation_agrees_with_libc():
    fnmatch = libc_fnmatch()
    for pattern in FNMATCH_CASES:
        regex = dpkgdb.fnmatch_regex(pattern)
        for name in FNMATCH_NAMES:
            if name.isascii():
                assert bool(regex.fullmatch(name)) == fnmatch(pattern, name), (pattern, name)


def test_fnmatch_on_bytes_that_are_not_utf8():
    assert dpkgdb.fnmatch_regex(b"/usr/a?").fullmatch(b"/usr/a\xff")
    assert dpkgdb.fnmatch_regex(b"/srv/\xe9*").fullmatch(b"/srv/\xe9t\xe9")
    assert not dpkgdb.fnmatch_regex(b"/usr/[a-z]").fullmatch(b"/usr/\xff")


# --- named packages ---------------------------------------------------------------------------

def test_named_packages_by_name_or_name_and_arch(dpkg):
    dpkg.package("dpkg")
    dpkg.package("libc6", {"/lib/x86_64/libc.so.6": b"64"}, multi_arch="same")
    dpkg.package("libc6", {"/lib/i386/libc.so.6": b"32"}, arch="i386", multi_arch="same")
    dpkg.package("bash", {"/bin/bash": b"bash"})
    dpkg.package("gone", state="config-files")
    db = dpkg.load()
    plan = db.plan(["libc6:i386", "BASH", "bash"])
    assert [p.key for p in plan.packages] == ["libc6:i386", "bash"]
    assert paths(plan) == [("libc6:i386", b"/lib/i386/libc.so.6"), ("bash", b"/bin/bash")]
    assert [p.key for p in db.find(["bash:amd64"])] == ["bash"]


def test_unknown_package_names_are_listed_together(dpkg):
    dpkg.package("bash")
    dpkg.package("gone", state="config-files")
    with pytest.raises(dpkgdb.UnknownPackages) as info:
        dpkg.load().plan(["nosuch", "bash", "gone", "bash:i386"])
    assert info.value.names == ["nosuch", "gone", "bash:i386"]
    assert str(info.value) == "packages not installed: nosuch, gone, bash:i386"
    assert isinstance(info.value, UsageError) and info.value.exit_status == 2


def test_a_bare_name_shared_by_architectures_is_ambiguous(dpkg):
    dpkg.package("libc6", multi_arch="same")
    dpkg.package("libc6", arch="i386", multi_arch="same")
    with pytest.raises(UsageError, match=r"libc6 \(one of libc6:amd64, libc6:i386\)"):
        dpkg.load().find(["libc6"])


# --- file names that are not UTF-8 ---------------------------------------------------------

def test_file_names_that_are_not_utf8_survive(dpkg):
    odd = b"/usr/share/caf\xe9/r\xe9sum\xe9 \n"[:-1]
    dpkg.package("odd", {odd: b"content", b"/usr/bin/tab\there": b"t"},
                 conffiles={b"/etc/\xff.conf": (b"conf",)})
    dpkg.diversions((b"/usr/bin/tab\there", b"/usr/bin/\xfe", ":"))
    items = dpkg.load().plan().items
    assert [(i.path, i.md5) for i in items] == [
        (odd, md5(b"content")), (b"/usr/bin/\xfe", md5(b"t")),
        (b"/etc/\xff.conf", md5(b"conf"))]


def test_messages_escape_bytes_that_are_not_utf8(dpkg):
    dpkg.package("odd", extra_sums=b"not a sum  usr/\xff\x1b[31m\n")
    (file, line, message), = dpkg.load().plan().problems
    assert line == 1
    assert message == "invalid md5sums line, skipped: 'not a sum  usr/\\xff\\x1b[31m'"


# --- malformed input ------------------------------------------------------------------------

def test_bad_md5sums_lines_are_reported_and_skipped(dpkg, root):
    dpkg.package("p", {"/usr/bin/good": b"good"}, extra_sums=(
        b"0123  usr/bin/short\n"
        + md5(b"x").upper().encode() + b"  usr/bin/upper\n"
        + md5(b"x").encode() + b" usr/bin/onespace\n"
        + b"\n"
        + md5(b"y").encode() + b"  usr/bin/after\n"
        + md5(b"z").encode() + b"  usr/bin/trunc"),
        listed=[b"/usr/bin/good", b"/usr/bin/after", b"/usr/bin/trunc"])
    plan = dpkg.load().plan()
    assert [i.path for i in plan.items] == [b"/usr/bin/good", b"/usr/bin/after"]
    name = os.fsdecode(root.host(ADMIN + "/info/p.md5sums"))
    assert [(f, n) for f, n, _m in plan.problems] == [
        (name, 2), (name, 3), (name, 4), (name, 5), (name, 7)]
    assert "truncated?" in plan.problems[-1][2]


def test_a_truncated_list_is_reported(dpkg, root):
    dpkg.package("p", {"/usr/bin/a": b"a", "/usr/bin/b": b"b"})
    root.write(ADMIN + "/info/p.list", b"/usr/bin/a\n/usr/bin/b\n\n/usr/b")
    plan = dpkg.load().plan()
    assert [i.path for i in plan.items] == [b"/usr/bin/a", b"/usr/bin/b"]
    name = os.fsdecode(root.host(ADMIN + "/info/p.list"))
    assert [(f, n) for f, n, _m in plan.problems] == [(name, 3), (name, 4)]


@pytest.mark.parametrize("status, line, message", [
    (b"Package: a\nStatus: install ok installed\nVersion: 1\n\nPackage: b\nStat",
     6, "file ends in the middle of a line (truncated?)"),
    (b"Package: a\nStatus: install ok installed\nVersion: 1\n\nPackage: b\n"
     b"Status: install ok installed\n", 5, "b: no Version field"),
    (b"\n\nPackage: a\nVersion: 1\n", 3, "a: no Status field"),
    (b"Package: a\nStatus: install ok inst\nVersion: 1\n", 1,
     "a: invalid Status 'install ok inst'"),
    (b"Package: a\nthis is no field\nStatus: install ok installed\n", 1,
     "malformed line in this entry"),
    (b"Version: 1\nStatus: install ok installed\n", 1, "entry without a Package field"),
    (b"Package: ../../etc\nStatus: install ok installed\nVersion: 1\n", 1,
     "invalid package name '../../etc'"),
    (b"Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n"
     b"Multi-Arch: same\n", 1, "a: Multi-Arch: same with architecture 'all'"),
    (b"Package: a\nStatus: install ok installed\nVersion: 1\nMulti-Arch: sometimes\n",
     1, "a: invalid Multi-Arch 'sometimes'"),
    (b"Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n\n"
     b"Package: a\nStatus: install ok installed\nVersion: 2\nArchitecture: amd64\n",
     6, "a is listed twice (first on line 1)"),
])
def test_a_broken_status_file_names_file_and_line(root, status, line, message):
    FakeDpkg(root)
    root.write(ADMIN + "/status", status)
    with pytest.raises(dpkgdb.DatabaseError) as info:
        dpkgdb.load(root.settings())
    assert str(info.value) == f"{status_name(root)}:{line}: {message}"
    assert (info.value.file, info.value.line) == (status_name(root), line)
    assert isinstance(info.value, RunError) and info.value.exit_status == 3


def test_a_missing_status_file_is_a_clear_error(root):
    with pytest.raises(dpkgdb.DatabaseError, match=r"/var/lib/dpkg/status: no such file"):
        dpkgdb.plan(root.settings())


def test_a_package_half_installed_may_lack_a_version(root):
    FakeDpkg(root)
    root.write(ADMIN + "/status", b"Package: a\nStatus: install reinstreq half-installed\n")
    pkg, = dpkgdb.load(root.settings()).packages
    assert (pkg.eflag, pkg.state, pkg.version) == ("reinstreq", "half-installed", "")


def test_errors_are_systraq_errors_with_one_line(root):
    FakeDpkg(root)
    root.write(ADMIN + "/status", b"Package: a\nStatus: bogus\n")
    with pytest.raises(SystraqError) as info:
        dpkgdb.plan(root.settings())
    assert len(info.value.lines()) == 1 and "\n" not in str(info.value)


def test_nothing_is_read_outside_the_root(dpkg, root):
    dpkg.package("p", {"/usr/bin/p": b"p"})
    db = dpkg.load()
    assert db.info_dir.startswith(root.path + b"/")
    # The items are logical: the engine maps them with settings.host().
    item, = db.plan().items
    assert item.path == b"/usr/bin/p"
    assert root.settings().host(item.path) == root.host("/usr/bin/p")


def test_stat_overrides_are_read_as_dpkg_writes_them(dpkg, root):
    dpkg.package("cron", {"/usr/bin/crontab": b"crontab"})
    root.write("/var/lib/dpkg/statoverride", "root crontab 2755 /usr/bin/crontab\n"
               "#0 #42 640 /etc/odd name\n")
    overrides = dpkg.load().statoverrides
    assert overrides[b"/usr/bin/crontab"] == dpkgdb.StatOverride(
        "root", "crontab", 0o2755, b"/usr/bin/crontab")
    assert overrides[b"/etc/odd name"].group == "#42"
    root.write("/var/lib/dpkg/statoverride", "root root 9999 /usr/bin/x\n")
    with pytest.raises(dpkgdb.DatabaseError, match="statoverride:1: bad mode"):
        dpkgdb.load(root.settings())
