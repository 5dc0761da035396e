# SPDX-License-Identifier: GPL-2.0-or-later
"""``systraq packages --from-archive`` and the apt hook: installed files against their manifests.

Where ``systraq packages`` trusts dpkg's md5sums, this trusts only the
manifest made from the signed ``.deb`` (manifest.py), and checks what
dpkg's sums cannot say: the sha256 of each file, its mode (setuid bits
included), owner and group, and each symlink's target.  So it reports a
binary changed together with its md5sums line, ``chmod u+s`` on a
package binary, and a file chowned to a user.

What dpkg itself legitimately changes is applied first:

conffiles          the admin's to edit (and to chmod): not checked here;
                   ``systraq packages`` reports their edits.
stat overrides     ``dpkg-statoverride`` entries replace the shipped
                   owner, group and mode, as dpkg applies them.
diversions         a diverted file is looked for where it was diverted
                   to; the diverting package's own file at its path.
path-exclude       a file dpkg's filters kept off the disk is not missing.
taken over         a member the package's ``.list`` no longer names
                   (another package replaced it) is not checked for it.
owners             a member's owner and group names are looked up in this
                   system's passwd and group files, as dpkg does; the
                   numeric id of the .deb only when the name is unknown.

Directories are checked for existence and type only: maintainer scripts
chmod and chown their own directories, and many packages share each
one.  A symlink where a directory was shipped is what dpkg itself keeps
and unpacks through (merged /usr: /bin -> usr/bin), and is fine.  A package whose manifest was made from dpkg's md5sums (no archive
has it) is checked for content by md5, as ``systraq packages`` does.

The root job runs this (it reads every file, and the manifests are
root's).  The daily run keeps each finding's first day in
``/var/lib/systraq/root/archive.state`` and queues only what is new,
and what is fixed, for the report.

The apt hook (``--pre-install-hook``, DPkg::Pre-Install-Pkgs) checks the
packages apt is about to upgrade, reinstall or remove, offline, against
the manifests already built, and queues every mismatch: an upgrade
overwrites the evidence, the queued record keeps it for the next report.
"""

import os
import sys
import time

from systraq import dpkgdb, manifest, records, runner, scan
from systraq.packages import Finding as PackageFinding
from systraq.pathcodec import escape
from systraq.scan import Scanner
from systraq.spool import Spool, stamp as record_stamp

# The state file (statefile.py): the findings and their first day in the
# header (format 1 was a JSON file of the same).
STATE_FORMAT = 2
# The change word of a record: what the report shows after the path.
MISMATCH = "differs from its package in the archive"
BEFORE_UPGRADE = "differed from its package in the archive before an upgrade"
MISSING = "missing, shipped by its package in the archive"
FIXED = "fixed"
WARNING_KINDS = (MISMATCH, MISSING)

_KIND_WORDS = {"f": "a file", "d": "a directory", "l": "a symbolic link", "p": "a FIFO",
               "s": "a socket", "c": "a character device", "b": "a block device"}


def state_path(settings):
    return os.path.join(settings.root_state_dir, b"archive.state")


class Finding(PackageFinding):
    """One path (or package) ``--from-archive`` has something to say about:
    a ``systraq packages`` finding with this check's warning kinds, shown
    path first."""

    __slots__ = ()
    warning_kinds = WARNING_KINDS

    def head(self):
        where = escape(self.path) if self.path is not None else f"package {self.package}"
        return f"{where}: {self.kind}"


class Result:
    def __init__(self):
        self.findings = []
        self.packages = 0
        self.files = 0
        self.from_dpkg = []            # keys of packages checked against md5sums only
        self.without_manifest = []     # keys of packages not checked at all
        self.unreadable = 0
        self.build = None              # manifest.BuildResult

    @property
    def warnings(self):
        return [f for f in self.findings if f.warning]

    def as_dict(self):
        out = {"packages": self.packages, "files": self.files,
               "findings": [f.as_dict() for f in self.findings],
               "checked_against_dpkg_md5sums": self.from_dpkg,
               "without_manifest": self.without_manifest,
               "not_readable": self.unreadable}
        if self.build is not None:
            out["manifests"] = self.build.as_dict()
        return out


# --- accounts, as dpkg resolves a tar member's owner --------------------------------

def _ids(path):
    """name -> id from a passwd or group file below the root."""
    ids = {}
    try:
        with open(path, "rb") as handle:
            for line in handle:
                fields = line.split(b":")
                if len(fields) >= 3 and fields[2].strip().isdigit():
                    ids.setdefault(fields[0].decode("utf-8", "replace"), int(fields[2]))
    except FileNotFoundError:
        pass
    return ids


class _Accounts:
    def __init__(self, settings):
        self.users = _ids(settings.passwd_file)
        self.groups = _ids(settings.group_file)
        self.user_names = {v: k for k, v in sorted(self.users.items(), reverse=True)}
        self.group_names = {v: k for k, v in sorted(self.groups.items(), reverse=True)}

    @staticmethod
    def _resolve(table, name, fallback):
        # dpkg-statoverride writes "#ID" for an id without a name.
        if name.startswith("#") and name[1:].isdigit():
            return int(name[1:])
        return table.get(name, fallback)

    def uid(self, name, fallback=-1):
        return self._resolve(self.users, name, fallback)

    def gid(self, name, fallback=-1):
        return self._resolve(self.groups, name, fallback)

    def user(self, uid):
        return self.user_names.get(uid, str(uid))

    def group(self, gid):
        return self.group_names.get(gid, str(gid))


# --- the check ------------------------------------------------------------------------

def _expectations(settings, database, packages, stored, result):
    """``[(package, logical path, path to open, member, conffile)]`` and
    the manifests' header per package key."""
    expect = []
    for package in packages:
        names = stored.get(manifest.key(package))
        if not names:
            result.without_manifest.append(package.key)
            continue
        found = manifest.load(settings, names)
        if found.from_dpkg:
            result.from_dpkg.append(package.key)
        files = database.files(package) or set()
        conffiles = package.conffiles
        for path, member in found.entries.items():
            if path not in files:
                # Taken over by another package (its .list lost it), or a
                # remove-on-upgrade conffile dpkg never unpacked.
                continue
            if path in conffiles:
                continue
            expect.append((package, path, database.divert(path, package), member))
    return expect


def check(settings, database, packages, stored=None, workers=None):
    """Check ``packages`` against their stored manifests: a Result."""
    result = Result()
    result.packages = len(packages)
    stored = manifest.index(settings) if stored is None else stored
    expect = _expectations(settings, database, packages, stored, result)
    accounts = _Accounts(settings)
    by_sha = [e[2] for e in expect if e[3][manifest.KIND] == "f" and
              not (e[3][manifest.VALUE] and len(e[3][manifest.VALUE]) == 32)]
    by_md5 = [e[2] for e in expect if e[3][manifest.KIND] == "f" and
              e[3][manifest.VALUE] and len(e[3][manifest.VALUE]) == 32]
    others = [e[2] for e in expect if e[3][manifest.KIND] != "f"]
    found = Scanner(settings, "sha256", workers=workers).records(by_sha + others)
    if by_md5:
        found.update(Scanner(settings, "md5", workers=workers).records(by_md5))
    result.files = len(expect)
    findings = {}
    overrides = database.statoverrides
    for package, listed, path, member in expect:
        record = found.get(path)
        if record is None:
            if database.excluded(listed):
                continue
            findings[path] = Finding(MISSING, path, package.key, package.version,
                                     f"{_KIND_WORDS.get(member[manifest.KIND], 'a file')} "
                                     "is missing")
            continue
        entry = scan.decode(record)
        if entry.note == "not readable":
            result.unreadable += 1
            continue
        problems = _compare(member, entry, overrides.get(path) or overrides.get(listed),
                            accounts)
        if problems:
            if path in findings and findings[path].detail:
                # The same path in two packages (Multi-Arch: same):
                # both say the same, once is enough.
                continue
            findings[path] = Finding(MISMATCH, path, package.key, package.version,
                                     "; ".join(problems))
    result.findings = sorted(findings.values(), key=lambda f: f.path)
    return result


def _compare(member, entry, override, accounts):
    """What differs between a manifest member and the file's scan entry."""
    kind = member[manifest.KIND]
    if kind == "d" and entry.kind == "l":
        # dpkg keeps a symlink where a package ships a directory and
        # unpacks through it (dpkg(1), --force-unsafe-io aside): /bin ->
        # usr/bin on a merged-/usr system, /var/run -> /run.
        return []
    if entry.kind != kind:
        what = _KIND_WORDS.get(entry.kind, "something else")
        if entry.kind == "l":
            what += " to " + escape(entry.target)
        return [f"{what} instead of {_KIND_WORDS.get(kind, kind)}"]
    if kind == "l":
        if entry.target != member[manifest.VALUE]:
            return [f"links to {escape(entry.target)}, not "
                    f"{escape(member[manifest.VALUE])}"]
        return []
    if kind != "f":
        return []
    problems = []
    value = member[manifest.VALUE]
    if value and entry.digest and entry.digest != value:
        problems.append("content differs (sha256)" if len(value) == 64
                        else "content differs (md5 of dpkg's sums)")
    if member[manifest.UID] < 0:
        # From dpkg's md5sums: no metadata to compare.
        return problems
    if override is not None:
        mode = override.mode
        uid = accounts.uid(override.owner)
        gid = accounts.gid(override.group)
    else:
        mode = member[manifest.MODE]
        uid = accounts.uid(member[manifest.OWNER], member[manifest.UID])
        gid = accounts.gid(member[manifest.GROUP], member[manifest.GID])
    if entry.perm != mode:
        words = []
        gained = (entry.perm & ~mode) & 0o7000
        if gained & 0o4000:
            words.append("setuid")
        if gained & 0o2000:
            words.append("setgid")
        problems.append(f"mode {entry.perm:04o}, not {mode:04o}"
                        + (f" ({' and '.join(words)} added)" if words else ""))
    if uid >= 0 and entry.uid != uid:
        problems.append(f"owner {accounts.user(entry.uid)}, not {accounts.user(uid)}")
    if gid >= 0 and entry.gid != gid:
        problems.append(f"group {accounts.group(entry.gid)}, not {accounts.group(gid)}")
    return problems


# --- the daily run's state and records ------------------------------------------------

def run(settings, names=(), offline=False, fetch_limit=0, spool_group=None, now=None):
    """``systraq packages --from-archive``: the manifests the packages
    need (built from the archive's .debs), the check, and, over every
    installed package, the findings kept and queued; one run at a time.
    Returns the Result (its ``build``: the manifest.BuildResult)."""
    os.makedirs(settings.root_state_dir, mode=0o700, exist_ok=True)
    with _transaction(settings, spool_group, now) as transaction:
        database = dpkgdb.load(settings)
        packages = database.find(names) if names else database.installed()
        build = manifest.ensure(settings, database, packages, offline=offline,
                                fetch_limit=fetch_limit, prune=not names)
        result = check(settings, database, packages)
        result.build = build
        if not names:
            _save(result, transaction)
    return result


def _transaction(settings, spool_group=None, now=None):
    return runner.Run(settings, state_path(settings), STATE_FORMAT,
                      command="systraq packages --from-archive",
                      lock=os.path.join(settings.root_state_dir, b"archive.lock"),
                      spool_group=spool_group, now=now)


def save(settings, result, now=None, spool_group=None):
    """Keep each finding's first day; queue new and fixed findings.
    Returns the records queued."""
    os.makedirs(settings.root_state_dir, mode=0o700, exist_ok=True)
    with _transaction(settings, spool_group, now) as transaction:
        return _save(result, transaction)


def _save(result, transaction):
    now = transaction.now
    today = time.strftime("%Y-%m-%d", time.localtime(now))
    header, _entries = transaction.load()
    earlier = (header or {}).get("findings", {})
    current = {}
    queued = []
    when = transaction.stamp
    for finding in result.findings:
        if not finding.warning:
            continue
        name = escape(finding.path)
        before = earlier.get(name)
        finding.first_seen = before["first_seen"] if before else today
        current[name] = {"first_seen": finding.first_seen, "package": finding.package,
                         "detail": finding.detail}
        if before is None or before.get("detail") != finding.detail:
            queued.append(records.load(dict(finding.as_dict(), source="packages",
                                            change=finding.kind, time=when)))
    for name, before in sorted(earlier.items()):
        if name not in current:
            queued.append(records.make("packages", FIXED, name,
                                       package=before.get("package", "?"), time=when,
                                       detail="matches its package in the archive again"))
    # The findings go into the state and the queue together: a crash
    # between the two neither loses one nor queues it twice.
    transaction.commit({"time": now, "findings": current}, {}, queued, source="archive",
                       mode=0o600)
    return queued


# --- the apt hook ---------------------------------------------------------------------

def parse_hook_input(stream):
    """``[(name, arch, old version, new version or None, action)]`` for the
    packages apt is about to replace or remove, from the Pre-Install-Pkgs
    protocol (apt.conf(5)), versions 2 and 3.  Version 1 (file names
    only) says nothing of the installed versions: an empty list."""
    first = stream.readline().strip()
    if first not in (b"VERSION 2", b"VERSION 3"):
        for _ in stream:      # apt must be able to write everything
            pass
        return []
    three = first == b"VERSION 3"
    for line in stream:       # the configuration, up to an empty line
        if not line.strip():
            break
    out = []
    for line in stream:
        fields = line.split()
        if three and len(fields) == 9:
            name, old, old_arch, _, _, new, _, _, action = fields
        elif not three and len(fields) == 5:
            name, old, _, new, action = fields
            old_arch = b"-"
        else:
            continue
        if old == b"-" or action == b"**CONFIGURE**":
            continue     # nothing installed yet, or nothing unpacked now
        out.append((name.decode("utf-8", "replace"), old_arch.decode("ascii", "replace"),
                    old.decode("utf-8", "replace"),
                    None if new == b"-" else new.decode("utf-8", "replace"),
                    "remove" if action == b"**REMOVE**" else "unpack"))
    return out


def pre_install_hook(settings, stream, now=None, spool_group=None):
    """Check the installed files of the packages apt is about to replace
    or remove, against the manifests already built; queue mismatches.

    Returns the records queued.  Offline and quick: only those packages'
    files are read, and nothing is fetched.
    """
    actions = parse_hook_input(stream)
    if not actions:
        return []
    database = dpkgdb.load(settings)
    installed = {}
    for package in database.installed():
        installed.setdefault((package.name, package.version), []).append(package)
    wanted = {}
    for name, arch, old, new, action in actions:
        for package in installed.get((name, old), ()):
            if arch in ("-", package.arch):
                wanted[package.key] = (package, new, action)
    if not wanted:
        return []
    packages = [p for p, _, _ in wanted.values()]
    result = check(settings, database, packages)
    now = time.time() if now is None else now
    when = record_stamp(now)
    records = []
    for finding in result.warnings:
        _, new, action = wanted[finding.package]
        then = ("before its removal" if action == "remove" or new is None
                else f"before the upgrade to {new}")
        kind = BEFORE_UPGRADE if finding.kind == MISMATCH else (
            "was missing, shipped by its package in the archive, before an upgrade")
        records.append({"source": "packages", "change": kind, "path": escape(finding.path),
                        "package": finding.package, "version": finding.version,
                        "detail": f"{finding.detail} ({finding.version}, {then})",
                        "time": when, "warning": True})
    if records:
        Spool(settings).add("archive_hook", records, now=now, group=spool_group)
    return records


def hook_main(settings, spool_group=None):
    """The hook as apt runs it: never a failure, never a word on the
    terminal.  A failure of the check itself is queued, so it is seen."""
    stream = sys.stdin.buffer
    try:
        pre_install_hook(settings, stream, spool_group=spool_group)
    except Exception as exc:     # never break an upgrade: say it in the report
        for _ in stream:
            pass
        try:
            Spool(settings).add("archive_hook", [{
                "source": "packages", "change": "pre-install check failed",
                "detail": f"{type(exc).__name__}: {exc}", "time": record_stamp(time.time()),
                "package": "?"}], group=spool_group)
        except Exception:
            pass
    return 0
