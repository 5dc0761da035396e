# SPDX-License-Identifier: GPL-2.0-or-later
"""The Debian archive: the .deb of exactly an installed version, fetched with apt's chain of trust.

The one module that talks to apt.  python-apt fetches the file the way
``apt-get download`` does: the package index it comes from was verified
against the archive's signed Release file when the lists were updated,
and the download is checked against the index's hashes; an origin apt
does not trust is refused (unless apt itself is configured to allow
it).  python-debian then reads the archive's own ``md5sums`` member, or,
when the archive has none, computes the sums from its ``data.tar``.

Sums are never computed from the installed files: that would declare
whatever is on the disk now, tampering included, to be right.
"""

import contextlib
import hashlib
import os
import pwd
import tempfile

from systraq.errors import RunError
from systraq.fsutil import NotRegular, atomic_write, open_untrusted


class Unavailable(RunError):
    """The version cannot be fetched from any archive apt knows.

    ``absent`` is True when no archive apt knows has this version at all
    (a local package, or a version the archive dropped): fetching again
    later will not help.  False for a failed download.
    """

    def __init__(self, message, absent=False):
        super().__init__(message)
        self.absent = absent


def _cache(settings):
    # python3-apt: imported here, as only root's repair and the check
    # against the archive need it.  apt's configuration is read now, not
    # left to "import apt": that reads it only while nothing has set a key
    # under APT, and reading dpkg's status with TagFile (dpkgdb) already
    # has, with python-apt 3 -- the cache then knew no archive at all.
    import apt_pkg
    apt_pkg.init_config()
    apt_pkg.init_system()
    import apt
    if settings.is_host_root:
        return apt.Cache()
    return apt.Cache(rootdir=os.fsdecode(settings.root))


class DownloadArea:
    """Where .debs are downloaded (``incoming``) and kept once taken from
    there (``top``), for one run.

    As root, apt downloads as its sandbox user (APT::Sandbox::User,
    ``_apt``), who must be able to write where the file goes; otherwise
    apt downloads as root and warns "Download is performed unsandboxed as
    root", which python-apt 3 passes on to stderr, and cron mails it.  The
    area is what apt keeps for itself in /var/cache/apt/archives: a
    directory of root's that the sandbox user may only pass through
    (0711), holding one of the sandbox user's own (0700).  Each .deb is
    copied out of it into root's directory before anything reads it
    (``take``), so what the sandbox user could still touch is never what
    is hashed and parsed.  Not root, or with no sandbox user, apt
    downloads as the running user into ``incoming`` directly.
    """

    def __init__(self, top):
        self.top = top
        self.incoming = top
        if os.geteuid() != 0:
            return
        import apt_pkg
        name = apt_pkg.config.find("APT::Sandbox::User", "_apt")
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            return
        if user.pw_uid == 0:
            return
        os.chmod(top, 0o711)
        self.incoming = os.path.join(top, "incoming")
        os.mkdir(self.incoming, 0o700)
        os.chown(self.incoming, user.pw_uid, user.pw_gid)

    def take(self, path):
        """``path``, downloaded into ``incoming``, copied into root's own
        directory (not following a link, only a regular file): the path
        of the copy.  The download is removed."""
        if self.incoming == self.top:
            return path
        target = os.path.join(self.top, os.path.basename(path))
        try:
            source, _info = open_untrusted(path)
        except NotRegular:
            raise Unavailable(f"{os.path.basename(path)}: the download is not a file") from None
        except OSError as exc:
            raise Unavailable(f"{os.path.basename(path)}: cannot read the download: "
                              f"{exc.strerror}") from None
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with open(os.open(target, flags, 0o600), "wb") as out:
                while chunk := os.read(source, 1 << 20):
                    out.write(chunk)
        finally:
            os.close(source)
            with contextlib.suppress(OSError):
                os.unlink(path)
        return target


@contextlib.contextmanager
def download_area(prefix):
    """A DownloadArea in a new temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as top:
        yield DownloadArea(top)


def fetch(cache, package, area):
    """Download the .deb of installed ``package`` (a dpkgdb.Package) into
    the DownloadArea ``area``: the path of root's copy."""
    return area.take(_fetch(_version(cache, package), package, area.incoming))


def _version(cache, package):
    """python-apt's Version of exactly the installed ``package``."""
    name = package.name if not package.arch or package.arch == "all" else \
        f"{package.name}:{package.arch}"
    try:
        candidates = cache[name]
    except KeyError:
        try:
            candidates = cache[package.name]
        except KeyError:
            raise Unavailable(f"{package.key} {package.version}: not in any package "
                              "list apt knows (a local package?)", absent=True) from None
    version = candidates.versions.get(package.version)
    if version is None or not version.downloadable:
        raise Unavailable(f"{package.key} {package.version}: this version is not in "
                          "any archive apt knows (run 'apt-get update'?)", absent=True)
    return version


def _fetch(version, package, destdir):
    import apt.progress.base
    try:
        # A silent progress: a scheduled or scripted run prints nothing.
        return version.fetch_binary(destdir, progress=apt.progress.base.AcquireProgress())
    except Exception as exc:   # apt raises FetchFailedException and others
        raise Unavailable(f"{package.key} {package.version}: download failed: {exc}") from None


class Fetched:
    """A verified .deb: where it is, its sha256 as apt's index gives it,
    its size, and whether it was downloaded (False: found, with the
    right hash, in apt's own download cache)."""

    __slots__ = ("path", "sha256", "size", "downloaded")

    def __init__(self, path, sha256, size, downloaded):
        self.path = path
        self.sha256 = sha256
        self.size = size
        self.downloaded = downloaded


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_verified(cache, package, area):
    """The .deb of exactly installed ``package``, checked against apt's
    signed index: a Fetched.

    apt's own download cache (``Dir::Cache::Archives``) is looked in
    first: a .deb apt kept after installing it is taken when its size and
    sha256 are the index's and the index is a trusted one, exactly what
    python-apt's fetch_binary checks before reusing a file.  Otherwise
    the .deb is downloaded into ``destdir`` by fetch_binary, which
    refuses an untrusted origin and checks the index's hashes.  The
    sha256 is checked here again in both cases, on root's copy of the
    download (``area``, a DownloadArea): the manifest is keyed by it.
    """
    import apt_pkg
    version = _version(cache, package)
    expected = version.sha256
    if not expected:
        # Every Debian archive's Packages index has SHA256 since 2017;
        # without it the .deb cannot be tied to the signed index.
        raise Unavailable(f"{package.key} {package.version}: the archive's index "
                          "gives no SHA256 for it")
    # apt's name for it: the version's epoch colon quoted as %3a.
    apt_name = (f"{version.package.shortname}_{version.version.replace(':', '%3a')}_"
                f"{version.architecture}.deb")
    kept = os.path.join(apt_pkg.config.find_dir("Dir::Cache::Archives"), apt_name)
    trusted = any(origin.trusted for origin in version.origins)
    try:
        if trusted and os.path.getsize(kept) == version.size and sha256_of(kept) == expected:
            return Fetched(kept, expected, version.size, False)
    except OSError:
        pass
    path = area.take(_fetch(version, package, area.incoming))
    if sha256_of(path) != expected:     # fetch_binary checked it; never trust twice-removed
        os.unlink(path)
        raise Unavailable(f"{package.key} {package.version}: the downloaded .deb does not "
                          "have the index's sha256")
    return Fetched(path, expected, version.size, True)


def sums_of(deb, conffiles):
    """``[(path without leading '/', md5 hex)]`` of the .deb at ``deb``.

    The archive's md5sums member when there is one; otherwise computed
    from data.tar, leaving out the conffiles as dh_md5sums does (dpkg
    checks those against the status file, not against md5sums).
    """
    from debian import debfile
    try:
        archive = debfile.DebFile(deb)
    except Exception as exc:   # python-debian raises DebError, tarfile and OS errors
        raise Unavailable(f"{os.path.basename(deb)}: not a readable .deb: {exc}") from None
    try:
        if archive.control.has_file("md5sums"):
            return [(path, digest.decode("ascii") if isinstance(digest, bytes) else digest)
                    for path, digest in archive.md5sums().items()]
        out = []
        tar = archive.data.tgz()
        for member in tar:
            if not member.isfile():
                continue
            path = os.fsencode(member.name)
            path = path[2:] if path.startswith(b"./") else path.lstrip(b"/")
            if b"/" + path in conffiles:
                continue
            digest = hashlib.md5()
            with tar.extractfile(member) as handle:
                while chunk := handle.read(1 << 18):
                    digest.update(chunk)
            out.append((path, digest.hexdigest()))
        return out
    finally:
        archive.close()


def repair_missing(settings, database, packages):
    """Write the missing md5sums files of ``packages`` from the archive.

    Returns ``(repaired, failed)``: the packages whose sums file was
    written, and ``(package, reason)`` for those that could not be
    fetched or read, for which nothing was written.
    """
    cache = _cache(settings)
    repaired, failed = [], []
    with download_area("systraq-repair-") as area:
        for package in packages:
            try:
                deb = fetch(cache, package, area)
                sums = sums_of(deb, set(package.conffiles))
            except Unavailable as exc:
                failed.append((package, str(exc)))
                continue
            data = b"".join(f"{digest}  ".encode("ascii") + path + b"\n"
                            for path, digest in sums)
            atomic_write(database.info_path(package, b"md5sums"), data, mode=0o644)
            os.unlink(deb)
            repaired.append(package)
    return repaired, failed
