# SPDX-License-Identifier: GPL-2.0-or-later
"""Every path systraq touches, derived from one root.

On a real system the root is ``/``.  Tests, the demo and ``--root`` point it
at another tree: then every file systraq reads or writes lies below that
root, as with debsums' ``--root``.  No other module builds a system path
from a literal; they ask this object.

Paths the admin writes (list entries, ``exclude``) are *logical*: absolute
paths as seen from inside the root.  ``host()`` maps them to where they
really are, with chroot semantics: ``..`` never climbs above the root.
"""

import glob
import errno
import os
import posixpath

# Pseudo file systems: never walked into, whatever a list says.  Their
# contents are not files an administrator configures, reading some of them
# blocks or has side effects, and /proc alone holds more entries than the
# rest of the system.
NEVER_WALK = (b"/proc", b"/sys", b"/dev", b"/run")

LIST_FILES = (
    # (name, kind) -- kind "system" holds absolute paths, "home" holds paths
    # relative to each home directory.  filetraq.conf is generated from
    # filetraq.main.conf and the admin's filetraq.tail.conf, whose entries
    # status counts apart.
    ("snapshot_pub.list", "system"),
    ("snapshot_root.list", "system"),
    ("snapshot_pub.homelist", "home"),
    ("snapshot_root.homelist", "home"),
    ("filetraq.conf", "system"),
    ("filetraq.tail.conf", "system"),
)

SYSTEM_USER = "debian-systraq"


class Settings:
    """Where everything is, below ``root``.

    ``config_file`` may be given separately (``--config``); it is taken as
    it is, not below the root, because the admin names it on the command
    line.
    """

    def __init__(self, root="/", config_file=None):
        root = os.fsencode(root)
        if not root.startswith(b"/"):
            root = os.fsencode(os.path.abspath(root))
        self.root = posixpath.normpath(root)
        self.conf_dir = self.host(b"/etc/systraq")
        self.config_file = (os.fsencode(config_file) if config_file
                            else posixpath.join(self.conf_dir, b"systraq.conf"))
        self.state_dir = self.host(b"/var/lib/systraq")
        self.spool_dir = posixpath.join(self.state_dir, b"spool")
        # The root job's own state: digests of files only root may read.
        self.root_state_dir = posixpath.join(self.state_dir, b"root")
        # Backups of world-readable configuration, in the old filetraq
        # layout: filetraq/<absolute path>/orig and dated copies beside it.
        self.backup_dir = posixpath.join(self.state_dir, b"filetraq")
        # The generated watch list and the admin's additions to it.
        self.filetraq_main = posixpath.join(self.conf_dir, b"filetraq.main.conf")
        self.filetraq_tail = posixpath.join(self.conf_dir, b"filetraq.tail.conf")
        self.filetraq_conf = posixpath.join(self.conf_dir, b"filetraq.conf")
        # Touched by the package's dpkg trigger (postinst "triggered")
        # whenever a package operation changed something under /etc.
        self.package_stamp = posixpath.join(self.state_dir, b"package-operation")
        self.passwd_file = self.host(b"/etc/passwd")
        self.group_file = self.host(b"/etc/group")
        # What dpkg and apt did, read by attribution.py (dpkg(1) --log;
        # apt's Dir::Log::History).
        self.dpkg_log = self.host(b"/var/log/dpkg.log")
        self.apt_history = self.host(b"/var/log/apt/history.log")
        # Which package installed a configuration file through ucf
        # (ucf(1), ucfr(1)): "PACKAGE PATH" lines.
        self.ucf_registry = self.host(b"/var/lib/ucf/registry")
        # Files the upgrade from the old shell-script package removes
        # (debian/systraq.maintscript and postinst), one path a line.
        self.obsolete_files = self.host(b"/usr/share/systraq/obsolete-files")
        # dpkg's database and configuration, read by systraq.dpkgdb only.
        self.dpkg_admindir = self.host(b"/var/lib/dpkg")
        self.dpkg_cfg_dir = self.host(b"/etc/dpkg")

    @property
    def is_host_root(self):
        return self.root == b"/"

    def host(self, logical):
        """Where the logical absolute path ``logical`` (bytes) lives on this host.

        ``..`` components are resolved first, as the kernel does at a
        chroot's root, so the result never lies outside ``self.root``.
        """
        if isinstance(logical, str):
            logical = os.fsencode(logical)
        if not logical.startswith(b"/"):
            raise ValueError(f"not an absolute path: {logical!r}")
        clean = posixpath.normpath(logical)
        # normpath keeps a leading '//' (POSIX allows it a meaning); fold it.
        clean = b"/" + clean.lstrip(b"/")
        if self.is_host_root:
            return clean
        return self.root + clean if clean != b"/" else self.root

    def follow(self, logical, limit=40):
        """The logical path that ``logical`` names once every symbolic link
        along it is followed inside the root, as a chroot's kernel would
        follow it (an absolute target starts again at the root).  The
        last part need not exist.  OSError ELOOP after ``limit`` links."""
        if isinstance(logical, str):
            logical = os.fsencode(logical)
        parts = [p for p in logical.split(b"/") if p]
        done = b"/"
        links = 0
        while parts:
            part = parts.pop(0)
            if part == b".":
                continue
            if part == b"..":
                done = posixpath.dirname(done)
                continue
            candidate = posixpath.join(done, part)
            try:
                target = os.readlink(self.host(candidate))
            except OSError:     # not a link, or not there: taken as it is
                done = candidate
                continue
            links += 1
            if links > limit:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), os.fsdecode(logical))
            if target.startswith(b"/"):
                done = b"/"
            parts = [p for p in target.split(b"/") if p] + parts
        return done

    def logical(self, host_path):
        """The logical path of ``host_path``, which must lie below the root."""
        if self.is_host_root:
            return host_path
        if host_path == self.root:
            return b"/"
        if not host_path.startswith(self.root + b"/"):
            raise ValueError(f"{host_path!r} is outside {self.root!r}")
        return host_path[len(self.root):]

    def contains(self, host_path):
        """True when ``host_path`` really lies below the root, symlinks resolved.

        Used where the kernel would follow a symlink (glob expands through
        directories): an absolute symlink inside a test tree points at the
        real system, which a run against that tree must not read.
        """
        if self.is_host_root:
            return True
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(host_path)
        return real == real_root or real.startswith(real_root + b"/")

    def mode_dir(self, mode):
        """Where the state of ``mode`` ("pub" or "root") is kept, for the
        snapshot and the contents job alike."""
        return self.state_dir if mode == "pub" else self.root_state_dir

    def list_file(self, name):
        return posixpath.join(self.conf_dir, os.fsencode(name))

    def list_files(self):
        """``(name, kind, host path)`` for each list file, in a fixed order."""
        return [(name, kind, self.list_file(name)) for name, kind in LIST_FILES]

    def host_glob(self, logical):
        """Like ``host()``, for a shell pattern: the root part is escaped,
        so that a '[' or '*' in the root's own name is taken literally."""
        clean = self.host(logical)
        if self.is_host_root:
            return clean
        return glob.escape(self.root) + clean[len(self.root):]
