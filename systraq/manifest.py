# SPDX-License-Identifier: GPL-2.0-or-later
"""Manifests: what each installed package version shipped, from its signed .deb.

dpkg's md5sums are local files that whoever changes a binary can change
too, they use a broken hash, and they say nothing of permissions or
owners (dpkg(1) says they are not meant for security).  A manifest is
what the ``.deb`` of exactly the installed version holds in its
``data.tar``, one entry per member: path, type, mode, owner and group
(names and ids), and the sha256 of a file or the target of a symlink.
The ``.deb`` comes through python-apt (``archive.fetch_verified``): its
sha256 is the one apt's index gives, and that index was verified
against the archive's signed Release file, the chain of trust ``apt``
itself uses.  python-debian's DebFile reads it.

This module owns building, storing and loading manifests.

Storage.  ``/var/lib/systraq/root/manifests/`` (mode 0700, root's, like
the rest of the root job's state), one file per package version, named
``NAME_VERSION_ARCH_SHA256.manifest`` (``_`` is in no package name,
version or architecture), so a manifest is keyed by package, version
and the ``.deb``'s sha256, and built once per version: a run builds only
those installed versions that have none yet, that is, once after each
installation or upgrade, and removes those of versions no longer
installed.  A package no archive apt knows has (a local package, a
version the archive dropped) gets a manifest made from dpkg's md5sums
when it is first seen, named ``..._dpkg.manifest``: content only, md5,
and listed as such.

Format: zlib-compressed text.  A JSON header line, then one line per
member, fields separated by tabs: type letter, mode (octal), owner
name, group name, uid, gid, value (sha256 hex, symlink target, or
``-``), path; the target and the path escaped with pathcodec (no tab or
newline survives).  Measured on a set shaped like this development
machine's (907 packages, 132,264 members, from their .list files, with
random sha256s, which compress as badly as real ones): 5.2 MB on disk,
17.4 MB uncompressed; every manifest loaded in 0.42 s (best of five,
/usr/bin/python3 3.11), coreutils' (454 members) in 1.1 ms.  Hashing
the files is the cost of a check, by far; a binary format would save
perhaps a third of the disk space and make the files unreadable with
zlib-flate and a pager.
"""

import hashlib
import json
import os
import re
import stat
import time
import zlib

from systraq import archive
from systraq.errors import RunError
from systraq.fsutil import atomic_write
from systraq.pathcodec import escape, unescape

FORMAT = 1
SUFFIX = b".manifest"
# The sha256 word of a manifest made from dpkg's md5sums.
FROM_DPKG = "dpkg"
_NAME = re.compile(rb"^([a-z0-9][a-z0-9+.-]*)_([^_/]+)_([a-z0-9-]*)_([0-9a-f]{64}|dpkg)"
                   + re.escape(SUFFIX) + rb"$")

# A member of a manifest.  kind: f (file; a hard link is the file it
# links to), l, d, c, b, p; mode: permission bits with setuid, setgid,
# sticky; value: sha256 hex (md5 hex in a manifest from dpkg), symlink
# target (bytes), or None.
# Kept as plain tuples: (kind, mode, owner, group, uid, gid, value).
KIND, MODE, OWNER, GROUP, UID, GID, VALUE = range(7)


def directory(settings):
    return os.path.join(settings.root_state_dir, b"manifests")


def _ensure_directory(settings):
    """The manifests' directory, created closed; refused when it is not."""
    path = directory(settings)
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError as exc:
        raise RunError(f"cannot create {os.fsdecode(path)}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode) or stat.S_IMODE(info.st_mode) & 0o077:
        raise RunError(f"{os.fsdecode(path)} must be a directory of mode 0700")
    return path


def file_name(package, sha256):
    return (f"{package.name}_{package.version}_{package.arch}_{sha256}").encode() + SUFFIX


class Manifest:
    """One package version's manifest: ``header`` (a dict: package,
    version, arch, source "archive" or "dpkg", sha256, size) and
    ``entries``, a dict logical path (bytes) -> member tuple."""

    __slots__ = ("header", "entries")

    def __init__(self, header, entries):
        self.header = header
        self.entries = entries

    @property
    def from_dpkg(self):
        return self.header.get("source") == FROM_DPKG


# --- building ---------------------------------------------------------------------

def _logical(name):
    """A tar member's name as a logical path; None for the top directory."""
    raw = os.fsencode(name)
    while raw.startswith(b"./"):
        raw = raw[2:]
    raw = raw.strip(b"/")
    if not raw or raw == b".":
        return None
    return b"/" + raw


def entries_of_deb(path):
    """The members of the .deb at ``path`` as manifest entries (a dict)."""
    from debian import debfile      # python3-debian: only root's build needs it
    try:
        deb = debfile.DebFile(path)
    except Exception as exc:   # python-debian raises DebError, tarfile and OS errors
        raise archive.Unavailable(f"{os.path.basename(path)}: not a readable .deb: "
                                  f"{exc}") from None
    entries = {}
    try:
        tar = deb.data.tgz()
        for member in tar:
            logical = _logical(member.name)
            if logical is None:
                continue
            owner = (member.uname or str(member.uid), member.gname or str(member.gid),
                     member.uid, member.gid)
            mode = member.mode & 0o7777
            if member.isfile():
                digest = hashlib.sha256()
                with tar.extractfile(member) as handle:
                    while chunk := handle.read(1 << 18):
                        digest.update(chunk)
                entries[logical] = ("f", mode, *owner, digest.hexdigest())
            elif member.islnk():
                # A hard link: the file it links to, which the tar holds
                # before it; dpkg makes it with that file's content.
                target = entries.get(_logical(member.linkname))
                value = target[VALUE] if target else None
                entries[logical] = ("f", mode, *owner, value)
            elif member.issym():
                entries[logical] = ("l", mode, *owner, os.fsencode(member.linkname))
            elif member.isdir():
                entries[logical] = ("d", mode, *owner, None)
            elif member.ischr() or member.isblk() or member.isfifo():
                kind = "c" if member.ischr() else "b" if member.isblk() else "p"
                entries[logical] = (kind, mode, *owner, None)
    except archive.Unavailable:
        raise
    except Exception as exc:
        raise archive.Unavailable(f"{os.path.basename(path)}: cannot read its data.tar: "
                                  f"{exc}") from None
    finally:
        deb.close()
    return entries


def encode(header, entries):
    lines = [json.dumps(header, sort_keys=True).encode("utf-8")]
    for path in sorted(entries):
        kind, mode, owner, group, uid, gid, value = entries[path]
        if value is None:
            shown = b"-"
        elif kind == "l":
            shown = escape(value).encode("utf-8")
        else:
            shown = value.encode("ascii")
        lines.append(b"\t".join((kind.encode(), b"%o" % mode,
                                 escape(owner.encode("utf-8", "surrogateescape")).encode(),
                                 escape(group.encode("utf-8", "surrogateescape")).encode(),
                                 b"%d" % uid, b"%d" % gid, shown,
                                 escape(path).encode("utf-8"))))
    return zlib.compress(b"\n".join(lines) + b"\n", 6)


def decode(data, name="manifest"):
    """A Manifest from the bytes ``encode`` wrote; RunError when damaged."""
    try:
        text = zlib.decompress(data)
        first, _, body = text.partition(b"\n")
        header = json.loads(first)
        if header.get("format") != FORMAT:
            raise ValueError(f"format {header.get('format')!r}, not {FORMAT}")
        entries = {}
        for line in body.split(b"\n"):
            if not line:
                continue
            kind, mode, owner, group, uid, gid, value, path = line.split(b"\t")
            kind = kind.decode()
            if value == b"-":
                value = None
            elif kind == "l":
                value = unescape(value.decode("utf-8"))
            else:
                value = value.decode("ascii")
            entries[unescape(path.decode("utf-8"))] = (
                kind, int(mode, 8), os.fsdecode(unescape(owner.decode("utf-8"))),
                os.fsdecode(unescape(group.decode("utf-8"))), int(uid), int(gid), value)
    except (zlib.error, ValueError, UnicodeDecodeError) as exc:
        raise RunError(f"{name}: damaged manifest ({exc})") from None
    return Manifest(header, entries)


def _write(settings, package, header, entries):
    path = os.path.join(_ensure_directory(settings), file_name(package, header["sha256"]))
    atomic_write(path, encode(header, entries), mode=0o600)
    return path


def _header(package, source, sha256, size):
    return {"format": FORMAT, "package": package.name, "version": package.version,
            "arch": package.arch, "source": source, "sha256": sha256, "size": size}


def build_from_deb(settings, package, deb_path, sha256, size):
    """Write the manifest of ``package`` from its verified .deb; returns it."""
    header = _header(package, "archive", sha256, size)
    entries = entries_of_deb(deb_path)
    _write(settings, package, header, entries)
    return Manifest(header, entries)


def build_from_dpkg(settings, database, package):
    """Write the fallback manifest of a package no archive has: dpkg's
    md5sums as they are now (at the first run after its installation).
    None when dpkg has no sums for it either."""
    sums = database.sums(package)
    if sums is None:
        return None
    header = _header(package, FROM_DPKG, FROM_DPKG, None)
    entries = {path: ("f", 0, "", "", -1, -1, md5) for path, md5 in sums.items()}
    _write(settings, package, header, entries)
    return Manifest(header, entries)


# --- finding and loading -------------------------------------------------------------

def index(settings):
    """``{(name, version, arch): [file name, ...]}`` of the stored manifests."""
    try:
        names = os.listdir(directory(settings))
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise RunError(f"{os.fsdecode(directory(settings))}: cannot list: "
                       f"{exc.strerror}") from None
    found = {}
    for name in names:
        match = _NAME.match(name)
        if match:
            key = tuple(part.decode() for part in match.groups()[:3])
            found.setdefault(key, []).append(name)
    return found


def key(package):
    return (package.name, package.version, package.arch)


def load(settings, names):
    """The Manifest in the first of ``names`` (file names in the store)
    that is from the archive, else the first one."""
    names = sorted(names, key=lambda n: n.endswith(b"_dpkg" + SUFFIX))
    path = os.path.join(directory(settings), names[0])
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise RunError(f"{os.fsdecode(path)}: cannot read: {exc.strerror}") from None
    return decode(data, os.fsdecode(path))


class BuildResult:
    """What ``ensure`` did: counts, bytes and seconds, and why some
    packages have no manifest (``failed``: (package, reason))."""

    def __init__(self):
        self.built = 0
        self.from_dpkg = []          # packages whose manifest dpkg's sums made
        self.fetched_bytes = 0       # downloaded
        self.reused_bytes = 0        # taken from apt's download cache
        self.deferred = []           # left for the next run (fetch limit, archive unreachable)
        self.failed = []
        self.removed = 0
        self.seconds = 0.0

    def as_dict(self):
        return {"built": self.built, "from_dpkg": [p.key for p in self.from_dpkg],
                "fetched_bytes": self.fetched_bytes, "reused_bytes": self.reused_bytes,
                "deferred": [p.key for p in self.deferred],
                "failed": [{"package": p.key, "reason": r} for p, r in self.failed],
                "removed": self.removed, "seconds": round(self.seconds, 2)}


# Downloads that fail one after the other before a run stops trying: the
# rest wait for the next run.
GIVE_UP_AFTER = 3


def ensure(settings, database, packages, offline=False, fetch_limit=0, fetcher=None,
           prune=True):
    """Build the manifests ``packages`` (installed dpkgdb.Packages) lack.

    Only versions without a manifest are looked at, so the apt cache is
    opened only after a package operation.  ``offline``: build nothing.
    ``fetch_limit``: bytes to download at most in this run (0: no limit);
    the rest waits for the next run.  ``fetcher``: a function
    (package, archive.DownloadArea) -> archive.Fetched (tests); by
    default apt's.
    ``prune``: remove the manifests of versions not installed.
    Returns a BuildResult.
    """
    result = BuildResult()
    start = time.monotonic()
    stored = index(settings)
    missing = [p for p in packages if key(p) not in stored]
    if prune:
        installed = {key(p) for p in database.installed()}
        for version_key, names in stored.items():
            if version_key not in installed:
                for name in names:
                    try:
                        os.unlink(os.path.join(directory(settings), name))
                        result.removed += 1
                    except FileNotFoundError:
                        pass
    if not missing or offline:
        result.seconds = time.monotonic() - start
        return result
    _ensure_directory(settings)
    if fetcher is None:
        cache = archive._cache(settings)

        def fetcher(package, area):
            return archive.fetch_verified(cache, package, area)

    failed_in_a_row = 0
    with archive.download_area("systraq-manifest-") as area:
        for package in missing:
            if fetch_limit and result.fetched_bytes >= fetch_limit:
                result.deferred.append(package)
                continue
            if failed_in_a_row >= GIVE_UP_AFTER:
                # The archive is out of reach (no network, no name
                # service): each download would wait for its own time-out,
                # and the daily report waits for this job.
                result.deferred.append(package)
                continue
            try:
                fetched = fetcher(package, area)
            except archive.Unavailable as exc:
                if exc.absent:
                    if build_from_dpkg(settings, database, package) is not None:
                        result.from_dpkg.append(package)
                        continue
                else:
                    failed_in_a_row += 1
                result.failed.append((package, str(exc)))
                continue
            failed_in_a_row = 0
            try:
                build_from_deb(settings, package, fetched.path, fetched.sha256, fetched.size)
            except archive.Unavailable as exc:
                result.failed.append((package, str(exc)))
                continue
            finally:
                if fetched.downloaded:
                    # Only one .deb at a time on the disk: the manifest
                    # is what is kept.
                    try:
                        os.unlink(fetched.path)
                    except FileNotFoundError:
                        pass
            result.built += 1
            if fetched.downloaded:
                result.fetched_bytes += fetched.size or 0
            else:
                result.reused_bytes += fetched.size or 0
    result.seconds = time.monotonic() - start
    return result
