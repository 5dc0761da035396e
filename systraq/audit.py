# SPDX-License-Identifier: GPL-2.0-or-later
"""``systraq audit``: the daily security checks that need root.

What the old package's report parts and BSD's daily security script
looked at, run as root before the report, and quiet where they were noisy.
This module owns:

Conditions, reported every day while they last (*findings*, kept in
``/var/lib/systraq/audit.current`` for the report, never spooled):

- accounts with uid 0 besides root (the passwd file);
- accounts with an empty password (the shadow file, or the passwd file
  itself: pam_unix uses the passwd field unless it is "x"); a locked
  account ("!", "*") is fine;
- shell startup files, system-wide and in every home directory (closed
  ones too), whose umask lets group or others write, or whose PATH
  searches the current directory (``shellrc`` reads them), or that
  someone other than their account or root owns, or everybody may write.

An *inventory* of the file system, compared with the previous run, whose
differences are spooled as change records (source "audit"):

- setuid and setgid regular files, and runnable ones with file
  capabilities (``security.capability``: ``setcap cap_setuid+ep`` on a
  copy of python3 makes a root shell as surely as a setuid bit), on
  every local file system;
- world-writable files, and world-writable directories without the
  sticky bit, below ``[audit] system_dirs``;
- files whose owner or group has no account, below ``system_dirs``;
- files and directories below ``system_dirs`` with the immutable or
  append-only flag or a security attribute Debian does not set, or with
  an ACL that names accounts or groups and is not the default ACL of
  their directory handed down; such an ACL that changed (fileattrs.py);
- files (and symlinks) below ``[audit] package_trees`` (/usr and the
  top-level library and program directories, never /usr/local) that no
  installed package's list names, no diversion put there and
  update-alternatives did not make, unless ``[audit] generated`` names
  them (byte code, caches that triggers rebuild): a .pth start-up hook
  dropped into dist-packages, a library added to /usr/lib, a module to
  /lib/modules.  dpkg's database is the allowlist.

The first run records a baseline (one record); after that each item that
appears is reported once, a setuid, setgid or capable file that goes away
too, and a change of mode, owner or capabilities of an item.  A state
written before capabilities were read (no "capabilities" in its header)
gets them recorded without a record each, once.  The inventory is kept in
``/var/lib/systraq/root/audit.state``, a statefile only root can read.

The walk is its own, not ``scan.Scanner``'s: it visits every local file
system, reads no content and keeps only the few hundred items, where the
scanner hashes listed paths and keeps a record for each.  It looks with
lstat only, opens each directory relative to its parent with O_NOFOLLOW
(a symlink swapped in for a directory in /tmp is never entered), never
enters /proc, /sys, /dev, /run, ``[audit] exclude``, or a network, FUSE
or pseudo file system (told by the mount table, checked again against
``st_dev`` when the walk meets a device it was not told of), and each
directory once (a bind mount shows the same files twice).

Privacy: findings and records name accounts, files, modes, owners and
line numbers; never a password hash, never a line of a startup file.
"""

import errno
import fnmatch
import os
import re
import stat
import struct
import sys

from systraq import accounts, capabilities, fileattrs, records, runner, scan, shellrc, standing
from systraq.errors import RunError
from systraq.fsutil import mode_directory, read_untrusted
from systraq.pathcodec import escape
from systraq.settings import NEVER_WALK

# The report warns when the daily audit has not run for this long.
LATE = 2 * 86400
STATE_FORMAT = 1
# A daily job: a second one started while the first still walks has
# nothing to add, and says so at once rather than waiting.
LOCK_WAIT = 0.0
# The most of one startup file that is read: a .bashrc is a few KiB.
READ_MAX = 256 * 1024

# Startup files read by login and interactive shells of the shells
# Debian ships (sh/dash, bash, zsh, csh/tcsh, ksh/mksh), system-wide ...
SYSTEM_STARTUP = (
    b"/etc/profile", b"/etc/bash.bashrc", b"/etc/environment",
    b"/etc/csh.cshrc", b"/etc/csh.login",
    b"/etc/zsh/zshenv", b"/etc/zsh/zprofile", b"/etc/zsh/zshrc", b"/etc/zsh/zlogin",
    b"/etc/mkshrc",
)
PROFILE_D = b"/etc/profile.d"
LOGIN_DEFS = b"/etc/login.defs"
SKEL = b"/etc/skel"
# ... and in each home directory (and /etc/skel, their model).
HOME_STARTUP = (
    b".profile", b".bashrc", b".bash_profile", b".bash_login", b".bash_logout",
    b".zshenv", b".zprofile", b".zshrc", b".zlogin",
    b".cshrc", b".tcshrc", b".login", b".kshrc", b".mkshrc",
)

# File systems the inventory does not walk.  Network ones: their files
# are the server's to audit, root may be squashed there, and a dead
# server would hang the walk.  FUSE ones (but fuseblk, a local disk) are
# served by a process that may belong to a user and may block.  Pseudo
# ones hold no files an administrator installs.  tmpfs, ramfs, overlay,
# squashfs and every other type are walked: a setuid file in /tmp counts.
NETWORK_FS = frozenset((
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "9p", "virtiofs", "ceph",
    "glusterfs", "afs", "coda", "lustre", "gpfs", "beegfs", "orangefs", "pvfs2",
    "davfs", "sshfs",
))
PSEUDO_FS = frozenset((
    "proc", "sysfs", "devtmpfs", "devpts", "securityfs", "cgroup", "cgroup2",
    "pstore", "bpf", "debugfs", "tracefs", "configfs", "fusectl", "hugetlbfs",
    "mqueue", "autofs", "binfmt_misc", "efivarfs", "rpc_pipefs", "nfsd",
    "selinuxfs", "nsfs", "xenfs", "usbfs", "devfs",
))

# Inventory categories: bit, spool name, counts key.
SETUID, SETGID, WORLD_WRITABLE, UNOWNED, CAPABILITY, UNPACKAGED = 1, 2, 4, 8, 16, 32
FLAGGED, ACL = 64, 128
CATEGORIES = ((SETUID, "setuid", "setuid"), (SETGID, "setgid", "setgid"),
              (CAPABILITY, "capabilities", "capabilities"),
              (WORLD_WRITABLE, "world-writable", "world_writable"),
              (UNOWNED, "unowned", "unowned"), (UNPACKAGED, "unpackaged", "unpackaged"),
              (FLAGGED, "flags", "flags"), (ACL, "acl", "acl"))
# One inventory item in the state: categories, type, permission bits
# with setuid/setgid/sticky, owner, group; then the raw file capabilities
# (security.capability), if any; then, for an item with an ACL, the ACL's
# named entries and their length in bytes (_ACL_LENGTH).
_RECORD = struct.Struct("<BcHII")
_ACL_LENGTH = struct.Struct("<H")
# The state header's mark of an inventory that holds file capabilities:
# a state without it (written before they were) knows none, and its
# first comparison must not call every capable file new.
WITH_CAPABILITIES = "capabilities"
# The same for files no package ships (UNPACKAGED), and for the
# immutable/append-only flags and ACLs (FLAGGED, ACL).
WITH_UNPACKAGED = "unpackaged"
WITH_ATTRIBUTES = "attributes"
# And for the ACL's entries kept with an item that has one.
WITH_ACL_ENTRIES = "acl entries"
# The top-level directories that merged /usr makes links to usr/...:
# a package listing /bin/ls ships what the walk finds at /usr/bin/ls.
_MERGED = (b"/bin", b"/sbin", b"/lib", b"/lib32", b"/lib64", b"/libx32")
_KIND = {stat.S_IFREG: b"f", stat.S_IFDIR: b"d", stat.S_IFLNK: b"l",
         stat.S_IFIFO: b"p", stat.S_IFSOCK: b"s", stat.S_IFCHR: b"c",
         stat.S_IFBLK: b"b"}
TYPES = {"f": "file", "d": "directory", "l": "symlink", "p": "fifo", "s": "socket",
         "c": "character device", "b": "block device", "?": "special file"}

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_OPEN_WALK = _OPEN_DIR | os.O_NOFOLLOW
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)


class Result:
    """What one audit found.

    ``findings``: condition dicts (see the module docstring), ``records``:
    the change records spooled, ``counts``: items per category,
    ``baseline``: this run started the inventory, ``damaged``: why the
    previous state could not be read (None when it could), ``walked``:
    entries looked at, ``unreadable``: directories that could not be
    listed, ``skipped``: [(logical mount point, type)] not walked.
    """

    def __init__(self, findings, records, counts, baseline, damaged=None, walked=0,
                 unreadable=0, skipped=()):
        self.findings = findings
        self.records = records
        self.counts = counts
        self.baseline = baseline
        self.damaged = damaged
        self.walked = walked
        self.unreadable = unreadable
        self.skipped = list(skipped)


def state_path(settings):
    return os.path.join(settings.root_state_dir, b"audit.state")


def current_path(settings):
    return standing.path_of(settings, "audit")


def run(settings, config, now=None, spool_group=None):
    """One audit, as root; returns a Result.

    ``spool_group``: the gid that may read the spooled records and the
    findings file (the systraq group); None leaves the files' group as
    it is created.
    """
    directory = mode_directory(settings, "root")
    with runner.Run(settings, state_path(settings), STATE_FORMAT, command="systraq audit",
                    lock=os.path.join(directory, b"audit.lock"), lock_wait=LOCK_WAIT,
                    spool_group=spool_group, now=now) as transaction:
        return _Run(settings, config, transaction, spool_group).run()


def current(settings):
    """The findings of the last audit, for the report (run as the systraq
    user): None when no audit ran yet, else a dict with "time" (epoch),
    "findings", "counts", and "skipped", "walked", "unreadable".  RunError,
    naming the file, when it is damaged."""
    found = standing.load(settings, "audit")
    if found is None:
        return None
    value = dict(found.data)
    value.setdefault("counts", {})
    value.setdefault("skipped", [])
    return value


def save_current(settings, when, findings, counts, walked=0, unreadable=0, skipped=(),
                 group=None):
    """The audit's standing findings for the report (standing.py): its
    findings, what it counted and did not walk as notes, and a warning
    when it stops running."""
    notes = []
    if skipped:
        notes.append("root audit did not walk: " + ", ".join(
            f"{item.get('path')} ({item.get('type')})" for item in skipped))
    if counts:
        notes.append("root audit {time}: " + ", ".join(
            f"{n} {k.replace('_', '-')}" for k, n in sorted(counts.items())))
    standing.save(settings, "audit", findings, time=when, notes=notes,
                  late={"after": LATE,
                        "text": "the root audit (systraq audit) has not run since {time}"},
                  group=group, counts=counts, walked=walked, unreadable=unreadable,
                  skipped=list(skipped))


def describe(item):
    """One line for a person, of a finding or a spooled audit record
    (records.AuditFinding says it)."""
    return records.load(item, "audit").line()


# --- the mount table -------------------------------------------------------------

def walked_type(fstype):
    """Whether the inventory walks a file system of type ``fstype``."""
    if fstype in NETWORK_FS or fstype in PSEUDO_FS:
        return False
    return not (fstype == "fuse" or fstype.startswith("fuse."))


def _unoctal(field):
    # The kernel writes space, tab, newline and backslash as \ooo.
    return re.sub(rb"\\([0-7]{3})", lambda m: bytes((int(m.group(1), 8) & 0xFF,)), field)


class Mounts:
    """Mount points (logical) and their types, from /proc/self/mounts
    below the settings' root.  Without a table (another root without
    /proc) every directory is taken as local."""

    def __init__(self, settings):
        self.path = settings.host(b"/proc/self/mounts")
        self.read()

    def read(self):
        table = {}
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except OSError:
            data = b""
        for line in data.splitlines():
            fields = line.split()
            if len(fields) < 3:
                continue
            point = _unoctal(fields[1])
            # A later line is mounted on top of an earlier one at the same
            # point (an autofs point and what it mounted): it is what a
            # path lookup reaches.
            table.pop(point, None)
            table[point] = fields[2].decode("ascii", "replace")
        self.table = table

    def not_walked(self):
        return {point: fstype for point, fstype in self.table.items()
                if not walked_type(fstype)}

    def holding(self, logical):
        """The type of the file system ``logical`` lies on, as far as the
        table says (None when it says nothing)."""
        best = None
        for point, fstype in self.table.items():
            if (logical == point or logical.startswith(point.rstrip(b"/") + b"/")) \
                    and (best is None or len(point) > len(best[0])):
                best = (point, fstype)
        return best[1] if best else None


# --- the inventory walk ----------------------------------------------------------

def _under(path, tops):
    """Whether ``path`` is one of ``tops`` or below one."""
    return any(path == top or path.startswith(top.rstrip(b"/") + b"/") for top in tops)


class _Inventory:
    def __init__(self, settings, config, mounts, names, packaged=None):
        self.settings = settings
        self.mounts = mounts
        self.names = names
        self.packaged = packaged
        self.exclude = config.get("audit", "exclude")
        self.prune = (frozenset(NEVER_WALK) | frozenset(self.exclude)
                      | frozenset(mounts.not_walked()))
        self.system = frozenset(config.get("audit", "system_dirs"))
        self.items = {}
        self.walked = 0
        self.unreadable = 0
        self._directories = set()     # (st_dev, st_ino) of each directory listed
        self._crossed = set()         # devices met that the table did not announce
        self._encoding = sys.getfilesystemencoding()

    def skipped(self):
        """Mount points of file systems not walked that would otherwise
        have been: network and FUSE ones, not pseudo ones, nor those
        below a path never walked anyway."""
        never = tuple(NEVER_WALK) + tuple(self.exclude)
        return sorted((point, fstype) for point, fstype in self.mounts.not_walked().items()
                      if fstype not in PSEUDO_FS and not _under(point, never))

    def run(self):
        if b"/" in self.prune:
            return self.items
        fd = os.open(self.settings.root, _OPEN_DIR)
        stack = []
        self._list(fd, os.fstat(fd), b"/", b"/" in self.system, stack)
        while stack:
            holder, name, path, parent_dev, in_system = stack.pop()
            try:
                fd = os.open(name, _OPEN_WALK, dir_fd=holder.fd)
            except OSError as exc:
                # Replaced by something else meanwhile (ELOOP: a symlink
                # now stands there, never followed), or not listable.
                if exc.errno not in _GONE:
                    self.unreadable += 1
                continue
            finally:
                holder.release()
            info = os.fstat(fd)
            if info.st_dev != parent_dev and not self._may_cross(path, info.st_dev):
                os.close(fd)
                continue
            self._list(fd, info, path, in_system, stack)
        return self.items

    def _may_cross(self, path, device):
        """The walk met another device at ``path``: a mount point, or a
        btrfs subvolume (its own st_dev, no mount).  A mount the table
        names was decided on before the walk; one it does not name may
        have been mounted since: the table is read again, once for each
        such device."""
        fstype = self.mounts.table.get(path)
        if fstype is None and device not in self._crossed:
            self._crossed.add(device)
            self.mounts.read()
            fstype = self.mounts.table.get(path)
        return fstype is None or walked_type(fstype)

    def _list(self, fd, info, path, in_system, stack):
        """Look at the open directory ``fd`` (``path``) and its entries;
        push its subdirectories.  Takes ownership of ``fd``."""
        key = (info.st_dev, info.st_ino)
        if key in self._directories:
            os.close(fd)    # seen under another path (a bind mount)
            return
        self._directories.add(key)
        self.walked += 1
        packaged = self.packaged if self.packaged is not None and \
            self.packaged.holds(path) else None
        # A directory no package lists, below the trees: its own item, with
        # what it holds counted below it.
        extra = UNPACKAGED if (self.packaged is not None and path != b"/"
                               and self.packaged.holds(os.path.dirname(path))
                               and not self.packaged.expected(fd, ".", path, info)) else 0
        acl = b""
        if in_system:
            found, acl = self._attributes(fd, None, path, info, parent_default=False)
            extra |= found
        if in_system or extra:
            self._item(path, info, in_system, categories=extra, acl=acl)
        # New entries take a directory's default ACL: theirs is expected.
        inherits = in_system and fileattrs.read_acl(fd, None, fileattrs.DEFAULT) is not None
        base = path if path.endswith(b"/") else path + b"/"
        prune = self.prune
        system = self.system
        encoding = self._encoding
        children = []
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    self.walked += 1
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            child = base + entry.name.encode(encoding, "surrogateescape")
                            if child not in prune:
                                children.append((entry.name, child,
                                                 in_system or child in system))
                            continue
                        if not in_system and packaged is None:
                            # Outside the system directories only setuid,
                            # setgid and capable regular files count:
                            # d_type says which entries to lstat at all.
                            if not entry.is_file(follow_symlinks=False):
                                continue
                            found = entry.stat(follow_symlinks=False)
                            caps = self._capabilities(fd, entry.name, found)
                            if not (found.st_mode & (stat.S_ISUID | stat.S_ISGID) or caps):
                                continue
                        else:
                            found = entry.stat(follow_symlinks=False)
                            caps = self._capabilities(fd, entry.name, found)
                        child = base + entry.name.encode(encoding, "surrogateescape")
                        if child not in prune:
                            extra = UNPACKAGED if packaged is not None and not \
                                packaged.expected(fd, entry.name, child, found) else 0
                            acl = b""
                            if in_system:
                                bits, acl = self._attributes(fd, entry.name, child, found,
                                                             inherits)
                                extra |= bits
                            self._item(child, found, in_system, caps, extra, acl)
                    except OSError as exc:
                        if exc.errno not in _GONE:
                            self.unreadable += 1
        except OSError as exc:
            if exc.errno not in _GONE:
                self.unreadable += 1
        if children:
            # In name order, so that which of two paths to the same
            # directory (a bind mount) is walked stays the same from one
            # run to the next, and with it the paths the state holds.
            children.sort()
            holder = scan.HeldDirectory(fd, len(children))
            stack.extend((holder, name, child, info.st_dev, child_system)
                         for name, child, child_system in reversed(children))
        else:
            os.close(fd)

    @staticmethod
    def _attributes(dir_fd, name, path, info, parent_default):
        """``(FLAGGED | ACL bits, the ACL's named entries)`` for entry
        ``name`` of ``dir_fd`` (``dir_fd`` itself when ``name`` is None):
        the immutable or append-only flag or a security attribute Debian
        does not set, and an ACL naming accounts or groups that is not
        the parent's default one handed down.  One statx and one
        listxattr an entry, and a getxattr for the few with an ACL (over
        the 147,068 entries of /usr, /etc and /var/lib of a bookworm
        host, a getxattr of each took 0.72 s)."""
        form = stat.S_IFMT(info.st_mode)
        if form not in (stat.S_IFREG, stat.S_IFDIR):
            return 0, b""
        found = FLAGGED if fileattrs.flags(dir_fd, b"" if name is None else
                                           os.fsencode(name)) else 0
        attributes = fileattrs.attribute_names(dir_fd, name)
        if not attributes:
            return found, b""
        if fileattrs.unusual(attributes):
            found |= FLAGGED
        entries = b""
        if not parent_default and fileattrs.ACCESS in attributes:
            raw = fileattrs.read_acl(dir_fd, name)
            entries = fileattrs.named_raw(raw) if raw is not None else b""
            if entries:
                found |= ACL
        return found, entries

    @staticmethod
    def _capabilities(dir_fd, name, info):
        """The file capabilities of regular file ``name``, if it may be
        run (the kernel grants them only on exec; a chmod +x later shows
        in the next run): raw bytes, or b"".  Only executables are asked,
        one getxattr each."""
        if not stat.S_ISREG(info.st_mode) or not info.st_mode & 0o111:
            return b""
        return capabilities.read(dir_fd, name) or b""

    def _item(self, path, info, in_system, caps=b"", categories=0, acl=b""):
        mode = info.st_mode
        form = stat.S_IFMT(mode)
        if form == stat.S_IFREG:
            if mode & stat.S_ISUID:
                categories |= SETUID
            if mode & stat.S_ISGID:
                categories |= SETGID
            if caps:
                categories |= CAPABILITY
        if in_system:
            # A symlink's own mode is always 0777 and means nothing; a
            # sticky directory (/var/tmp-like) lets nobody remove
            # another's files.
            if (mode & stat.S_IWOTH and form != stat.S_IFLNK
                    and not (form == stat.S_IFDIR and mode & stat.S_ISVTX)):
                categories |= WORLD_WRITABLE
            if not self.names.has_user(info.st_uid) or not self.names.has_group(info.st_gid):
                categories |= UNOWNED
        if categories:
            tail = acl + _ACL_LENGTH.pack(len(acl)) if categories & ACL else b""
            self.items[path] = _RECORD.pack(categories, _KIND.get(form, b"?"),
                                            stat.S_IMODE(mode), info.st_uid,
                                            info.st_gid) + caps + tail


class Packaged:
    """What dpkg's database lets stand below ``[audit] package_trees``:
    every path an installed package's list names (also at its /usr path,
    where the top-level directory is merged /usr's link), where a
    diversion sends a file, a link update-alternatives made, and what
    ``[audit] generated`` names."""

    def __init__(self, settings, config):
        from systraq import dpkgdb
        self.settings = settings
        self.trees = tuple(config.get("audit", "package_trees"))
        self.generated = config.get("audit", "generated")
        database = dpkgdb.load(settings)
        owned = set()
        for package in database.installed():
            owned.update(database.files(package) or ())
        owned.update(d.target for d in dpkgdb.read_diversions(settings).values())
        merged = [top for top in _MERGED if os.path.islink(settings.host(top))]
        self.merged = merged
        owned.update([moved for moved in map(self.in_usr, owned) if moved not in owned])
        self.owned = owned
        self.alternatives = os.path.join(settings.dpkg_admindir, b"alternatives")
        self._links = None

    def in_usr(self, path):
        """Where merged /usr puts ``path`` (/bin/ls: /usr/bin/ls)."""
        if any(path == top or path.startswith(top + b"/") for top in self.merged):
            return b"/usr" + path
        return path

    def holds(self, directory):
        """Whether entries of ``directory`` (logical) are dpkg's to name."""
        return (_under(directory, self.trees) and not _under(directory, (b"/usr/local",)))

    def expected(self, dir_fd, name, path, info):
        """Whether the entry ``name`` (``path``, lstat ``info``) of the
        open directory ``dir_fd`` may stand there without a package."""
        form = stat.S_IFMT(info.st_mode)
        if path in self.owned or _under(path, (b"/usr/local",)):
            return True
        if form not in (stat.S_IFREG, stat.S_IFLNK, stat.S_IFDIR):
            return False
        if any(fnmatch.fnmatchcase(path, pattern) for pattern in self.generated):
            return True
        if form == stat.S_IFLNK:
            try:
                target = os.fsencode(os.readlink(name, dir_fd=dir_fd))
            except OSError:
                return False
            return self._alternative(path, target)
        return False

    def _alternative(self, path, target):
        """Whether the link ``path`` -> ``target`` is one update-alternatives
        made: it points into /etc/alternatives, and an alternative of the
        database names ``path`` as its master or a slave link."""
        name = target[len(b"/etc/alternatives/"):]
        if not target.startswith(b"/etc/alternatives/") or not name or b"/" in name:
            return False
        if self._links is None:
            self._links = self._alternative_links()
        return self._links.get(path) == name

    def _alternative_links(self):
        """{link: name} of every alternative: each database file holds its
        mode, its master link, then name and link of each slave, up to an
        empty line (update-alternatives(1), FILES)."""
        links = {}
        try:
            names = os.listdir(self.alternatives)
        except OSError:
            return links
        for master in names:
            try:
                with open(os.path.join(self.alternatives, master), "rb") as handle:
                    head = handle.read(1 << 16).split(b"\n\n", 1)[0].split(b"\n")
            except OSError:
                continue
            if len(head) >= 2:
                links[self.in_usr(head[1])] = os.fsencode(master)
                for slave, link in zip(head[2::2], head[3::2]):
                    links[self.in_usr(link)] = slave
        return links


# What intruders drop below the package trees, by name: named as such in
# the report, and never a package operation's, even made while dpkg ran
# (NEVER_EXPLAINED, attribution.Judge's critical patterns).
_DROPPED = (("a Python start-up hook", (b"*.pth", b"*/sitecustomize.py", b"*/usercustomize.py")),
            ("a kernel module", (b"*.ko", b"*.ko.*")),
            ("a shared library", (b"*.so", b"*.so.*")),
            ("a program", (b"*/bin/*", b"*/sbin/*")))
NEVER_EXPLAINED = tuple(pattern for _kind, patterns in _DROPPED for pattern in patterns)


def kind_of_unpackaged(path):
    """What a file no package ships is, when that is what attackers drop;
    None otherwise."""
    for kind, patterns in _DROPPED:
        if any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns):
            return kind
    return None


# A new file no package ships is shown with its content when it is text,
# this short, and others may read it (a .pth hook is one line).
CONTENT_LIMIT = 4096
# What text has not: control bytes other than tab, newline and return.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def with_content(settings, changes):
    """``changes`` (record dicts), each new regular file no package ships
    that others may read (the file and every directory above it) and that
    is short text given its ``content``: what the report shows below it."""
    from systraq.fsutil import NotRegular, read_untrusted
    from systraq.pathcodec import escape_text, unescape as unescape_path
    for change in changes:
        if change.get("change") != "unpackaged added" or change.get("type") != "file" \
                or not int(change.get("mode", "0"), 8) & stat.S_IROTH:
            continue
        path = unescape_path(change["path"])
        if not _open_to_others(settings, os.path.dirname(path)):
            continue
        try:
            data, info = read_untrusted(settings.host(path), limit=CONTENT_LIMIT + 1)
        except (OSError, NotRegular):
            continue
        if (not info.st_mode & stat.S_IROTH or len(data) > CONTENT_LIMIT
                or _CONTROL.search(data)):
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        change["content"] = escape_text(text)
    return changes


def with_attributes(settings, changes, names):
    """``changes`` with what a new flag is, read again now: the flags'
    names (``flags``) and the security attributes Debian does not set
    (``attributes``); and a new ACL's named entries (``acl``), when the
    inventory did not keep them."""
    from systraq.pathcodec import unescape as unescape_path
    for change in changes:
        if change.get("change") not in ("flags added", "acl added"):
            continue
        host = settings.host(unescape_path(change["path"]))
        if change["change"] == "flags added":
            change["flags"] = " and ".join(fileattrs.flag_words(fileattrs.flags(None, host)))
            unusual = fileattrs.unusual(fileattrs.attribute_names(None, host))
            if unusual:
                change["attributes"] = unusual
        elif "acl" not in change:
            raw = fileattrs.read_acl(None, host)
            change["acl"] = fileattrs.acl_text(raw, names) if raw else "?"
    return changes


def _open_to_others(settings, directory):
    """Whether others may enter ``directory`` and every one above it."""
    while True:
        try:
            if not os.lstat(settings.host(directory)).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
        if directory in (b"/", b""):
            return True
        directory = os.path.dirname(directory)


def without(bit, items):
    """The inventory ``items`` as a state that did not yet know category
    ``bit`` would hold it: for comparing with such a state once."""
    out = {}
    for path, record in items.items():
        categories = record[0] & ~bit
        if categories:
            rest = record[1:_RECORD.size] if bit == CAPABILITY else record[1:]
            out[path] = bytes((categories,)) + bytes(rest)
    return out


def counts_of(items):
    counts = {key: 0 for _bit, _name, key in CATEGORIES}
    for record in items.values():
        categories = record[0]
        for bit, _name, key in CATEGORIES:
            if categories & bit:
                counts[key] += 1
    return counts


# --- comparing two inventories ----------------------------------------------------

def _order(path):
    # By component, so that a directory's entries follow it directly
    # ("/a", "/a/b", "/a-b"; a plain sort puts "/a-b" between them).
    return path.split(b"/")


def _unpack(record, entries=True):
    """(categories, kind, permissions, uid, gid, raw capabilities, the
    ACL's named entries or None).  ``entries``: whether the record keeps
    them (a state without WITH_ACL_ENTRIES does not)."""
    categories, kind, perm, uid, gid = _RECORD.unpack_from(record)
    rest = bytes(record[_RECORD.size:])
    acl = None
    if entries and categories & ACL and len(rest) >= _ACL_LENGTH.size:
        (length,) = _ACL_LENGTH.unpack_from(rest, len(rest) - _ACL_LENGTH.size)
        end = len(rest) - _ACL_LENGTH.size
        acl, rest = rest[end - length:end], rest[:end - length]
    return categories, kind, perm, uid, gid, rest, acl


def without_acl_entries(items):
    """The inventory ``items`` as a state that kept no ACL entries would
    hold it: for comparing with such a state once."""
    out = {}
    for path, record in items.items():
        if record[0] & ACL:
            categories, kind, perm, uid, gid, caps, _acl = _unpack(record)
            record = _RECORD.pack(categories, kind, perm, uid, gid) + caps
        out[path] = record
    return out


def without_capabilities(items):
    """The inventory ``items`` as a state that knew no file capabilities
    would hold it: for comparing with such a state once."""
    return without(CAPABILITY, items)


def compare(old, new, names, entries=True):
    """Change records (without time) between two inventories, {path:
    record}; ``entries``: whether their records keep ACL entries."""
    def who(uid, gid):
        return (names.user(uid) if names.has_user(uid) else uid,
                names.group(gid) if names.has_group(gid) else gid)

    def fields(unpacked, suffix=""):
        _categories, kind, perm, uid, gid, caps, acl = unpacked
        owner, group = who(uid, gid)
        out = {"mode" + suffix: f"{perm:04o}", "owner" + suffix: owner,
               "group" + suffix: group}
        if caps:
            out["capabilities" + suffix] = capabilities.text(caps)
        if acl:
            # acl_text reads an ACL: its version word first.
            out["acl" + suffix] = fileattrs.acl_text(b"\x02\0\0\0" + acl, names)
        return out

    records = []
    added = {bit: [] for bit, _name, _key in CATEGORIES}
    for path in sorted(set(old) | set(new), key=_order):
        before, after = old.get(path), new.get(path)
        if before == after:
            continue
        was = _unpack(before, entries) if before is not None else None
        now = _unpack(after, entries) if after is not None else None
        had = was[0] if was else 0
        has = now[0] if now else 0
        said = False
        for bit, name, _key in CATEGORIES:
            if has & bit and not had & bit:
                added[bit].append((path, now))
                said = True
            elif had & bit and not has & bit and bit in (SETUID, SETGID, CAPABILITY):
                records.append({"change": f"{name} removed", "path": escape(path),
                                "type": TYPES[was[1].decode()], **fields(was)})
                said = True
        common = had & has
        if not said and common and was[1:] != now[1:]:
            if common & ACL and was[1:6] == now[1:6]:
                name = "acl"        # only the ACL's entries changed
            else:
                name = next(name for bit, name, _key in CATEGORIES if common & bit)
            records.append({"change": f"{name} changed", "path": escape(path),
                            "type": TYPES[now[1].decode()], **fields(now),
                            **fields(was, "_before")})
    for bit, name, _key in CATEGORIES:
        top = None
        for path, now in added[bit]:
            # A tree that became world-writable or lost its owner in one
            # go (chmod -R, a deleted account) is one record, with how
            # many more entries below it did the same.
            if bit in (WORLD_WRITABLE, UNOWNED, UNPACKAGED) and top is not None \
                    and path.startswith(top[0].rstrip(b"/") + b"/") \
                    and not (bit == UNPACKAGED and kind_of_unpackaged(path)):
                top[1]["below"] = top[1].get("below", 0) + 1
                continue
            record = {"change": f"{name} added", "path": escape(path),
                      "type": TYPES[now[1].decode()], **fields(now)}
            named = kind_of_unpackaged(path) if bit == UNPACKAGED else None
            if named:
                # What intruders drop is named on its own line, wherever.
                record["named"] = named
                records.append(record)
                continue
            records.append(record)
            top = (path, record)
    return records


# --- accounts ---------------------------------------------------------------------

def _lines(path, name):
    """The lines of a system file as bytes, numbered; [] when it is absent."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RunError(f"cannot read {name}: {exc.strerror} "
                       "(systraq audit must run as root)") from None
    return list(enumerate(data.splitlines(), 1))


def account_findings(settings):
    """uid 0 besides root, and empty passwords."""
    findings = []
    passwd = settings.passwd_file
    passwd_name = escape(settings.logical(passwd))
    shadow_logical = b"/etc/shadow"
    shadow = {}
    for number, line in _lines(settings.host(shadow_logical), "/etc/shadow"):
        fields = line.split(b":")
        if len(fields) >= 2 and fields[0] and not fields[0].startswith((b"+", b"-", b"#")):
            shadow.setdefault(fields[0], (number, fields[1]))
    for number, line in _lines(passwd, passwd_name):
        fields = line.split(b":")
        if len(fields) < 4 or not fields[0] or fields[0].startswith((b"+", b"-", b"#")):
            continue
        name = escape(fields[0])
        if fields[2].strip().isdigit() and int(fields[2]) == 0 and fields[0] != b"root":
            findings.append({"source": "audit", "change": "uid 0", "account": name,
                             "path": passwd_name, "line": number,
                             "text": f"account {name} has uid 0, as root "
                                     f"({passwd_name} line {number})"})
        # pam_unix looks in shadow only when the passwd field is "x"
        # (its is_pwd_shadowed()); an empty field there is an empty
        # password whatever shadow says.
        where = None
        if fields[1] == b"":
            where = (passwd_name, number)
        elif fields[1] == b"x" and fields[0] in shadow and shadow[fields[0]][1] == b"":
            where = (escape(shadow_logical), shadow[fields[0]][0])
        if where:
            findings.append({"source": "audit", "change": "empty password", "account": name,
                             "path": where[0], "line": where[1],
                             "text": f"account {name} has an empty password "
                                     f"({where[0]} line {where[1]})"})
    return findings


# --- shell startup files ----------------------------------------------------------

def _read_startup(dir_fd, name):
    """``(data, fstat)`` of the regular file ``name`` in directory
    ``dir_fd``, at most READ_MAX bytes; None when it is absent or is not
    a regular file.  A symlink is never followed (a user's .bashrc
    pointing at /etc/shadow is not read), a FIFO or device never opened;
    fstat must show the file lstat saw."""
    try:
        return read_untrusted(name, dir_fd=dir_fd, limit=READ_MAX)
    except OSError:
        return None


class _Startup:
    """The startup file findings of one run."""

    def __init__(self, settings, mounts, names):
        self.settings = settings
        self.mounts = mounts
        self.names = names
        self.findings = []

    def run(self):
        self.root_fd = os.open(self.settings.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        # Who may own system files: root, and below another root (--root,
        # tests) the owner of that tree, who stands for root there.
        top = os.fstat(self.root_fd)
        self.root_uids = {0, top.st_uid}
        self.root_gids = {0, top.st_gid}
        try:
            return self._run()
        finally:
            os.close(self.root_fd)

    def _run(self):
        for logical in SYSTEM_STARTUP:
            directory, name = logical.rsplit(b"/", 1)
            self.directory(directory, [name], self.root_uids, None)
        self.directory(LOGIN_DEFS.rsplit(b"/", 1)[0], [b"login.defs"], self.root_uids, None,
                       shellrc.check_login_defs)
        self.directory(PROFILE_D, None, self.root_uids, None)
        self.directory(SKEL, HOME_STARTUP, self.root_uids, None)
        for home, (names, uids) in self.homes().items():
            if 0 in uids:
                uids = uids | self.root_uids
            self.directory(home, HOME_STARTUP, uids | {0}, names)
        return self.findings

    def homes(self):
        """{home: (account names, uids)} of every home directory to read:
        not /, not below a path never walked, not on a file system the
        audit does not walk (an automounted or network home: reading it
        would mount it, or wait for its server)."""
        homes = {}
        for account in accounts.accounts(self.settings):
            home = account.home.rstrip(b"/")
            if not home.startswith(b"/") or _under(home, NEVER_WALK):
                continue
            fstype = self.mounts.holding(home)
            if fstype is not None and not walked_type(fstype):
                continue
            names, uids = homes.setdefault(home, ([], set()))
            names.append(escape(account.name.encode("utf-8", "surrogateescape")))
            uids.add(account.uid)
        return homes

    def directory(self, logical, names, owners, accounts_, check=shellrc.check_shell):
        """Check ``names`` in directory ``logical`` (None: its *.sh files).

        The directory is reached as scan reaches one: a symlink on the
        way is followed only where root alone could have made it, so
        that a user who owns the directory above a home cannot point the
        check at root's own files.
        """
        components = [c for c in logical.split(b"/") if c]
        try:
            fd = scan.open_directory(self.root_fd, True, components)
        except (OSError, scan._Gone):
            return
        try:
            if names is None:
                try:
                    listing = os.open(".", _OPEN_DIR, dir_fd=fd)
                    try:
                        names = sorted(os.fsencode(n) for n in os.listdir(listing)
                                       if n.endswith(".sh"))
                    finally:
                        os.close(listing)
                except OSError:
                    names = []
            for name in names:
                found = _read_startup(fd, name)
                if found is not None:
                    self.file(logical.rstrip(b"/") + b"/" + name, found[0], found[1],
                              owners, accounts_, check)
        finally:
            os.close(fd)

    def add(self, path, text, accounts_, line=None):
        finding = {"source": "audit", "change": "shell startup", "path": escape(path)}
        if line is not None:
            finding["line"] = line
        if accounts_:
            finding["account"] = accounts_[0]
        where = escape(path) + (f":{line}" if line is not None else "")
        finding["text"] = f"{where}: {text}"
        self.findings.append(finding)

    def file(self, path, data, info, owners, accounts_, check):
        if info.st_uid not in owners:
            allowed = list(accounts_ or [])
            if "root" not in allowed:
                allowed.append("root")
            allowed = " or ".join(allowed)
            self.add(path, f"owned by {self.names.user(info.st_uid)}, not by {allowed}",
                     accounts_)
        if info.st_mode & stat.S_IWOTH:
            self.add(path, "writable by everybody", accounts_)
        elif accounts_ is None and info.st_mode & stat.S_IWGRP and info.st_gid not in self.root_gids:
            # A system file: only root should change what every login runs.
            self.add(path, f"writable by group {self.names.group(info.st_gid)}", accounts_)
        for problem in check(data):
            self.add(path, problem.text, accounts_, problem.line)


# --- a run ---------------------------------------------------------------------------

class _Run:
    def __init__(self, settings, config, transaction, spool_group):
        self.settings = settings
        self.config = config
        self.transaction = transaction
        self.now = transaction.now
        self.spool_group = spool_group

    def run(self):
        settings = self.settings
        names = accounts.Names(settings)
        mounts = Mounts(settings)
        findings = account_findings(settings)
        findings += _Startup(settings, mounts, names).run()

        header, old = self.transaction.load()
        damaged = self.transaction.damaged
        status = os.path.join(settings.dpkg_admindir, b"status")
        try:
            # Not a dpkg system (no status file at all): nothing to look for.
            packaged = Packaged(settings, self.config) if os.path.exists(status) else None
        except RunError as exc:
            # dpkg's database is the packages check's to report on.
            packaged = None
            findings.append({"source": "audit", "change": "package database",
                             "text": f"files no package ships not looked for: {exc}"})
        inventory = _Inventory(settings, self.config, mounts, names, packaged)
        new = inventory.run()
        counts = counts_of(new)
        compared = new
        entries = old is None or bool(header.get(WITH_ACL_ENTRIES))
        if not entries:
            # The last state kept no ACL entries: changed ones count
            # from the next run.
            compared = without_acl_entries(compared)
        if old is not None and not header.get(WITH_CAPABILITIES):
            # The last state knew no file capabilities: this run records
            # them; their changes count from the next.
            compared = without_capabilities(compared)
        if old is not None and not header.get(WITH_UNPACKAGED):
            compared = without(UNPACKAGED, compared)
        if old is not None and not header.get(WITH_ATTRIBUTES):
            compared = without(FLAGGED, without(ACL, compared))

        if damaged is not None:
            changes = [{"change": "state damaged", "detail": damaged, "count": len(new),
                        "counts": counts}]
        elif old is None:
            changes = [{"change": "baseline", "count": len(new), "counts": counts}]
        else:
            changes = with_attributes(settings, with_content(settings, compare(
                old, compared, names, entries)), names)
        # The "since" of a run that compared with a state: the report
        # tells from it which package operation may have made a change.
        judge = self.transaction.judge(self.config.get("check", "critical") + NEVER_EXPLAINED)
        spooled = [judge.judge(record) for record in self.transaction.stamped(
            [records.load(change, "audit") for change in changes], since=old is not None)]
        self.transaction.commit({"time": self.transaction.stamp, "counts": counts,
                                 WITH_CAPABILITIES: True, WITH_UNPACKAGED: True,
                                 WITH_ATTRIBUTES: True, WITH_ACL_ENTRIES: True}, new,
                                spooled, source="audit", mode=0o600)

        skipped = inventory.skipped()
        save_current(settings, self.now, findings, counts, inventory.walked,
                     inventory.unreadable, [{"path": escape(point), "type": fstype}
                                            for point, fstype in skipped], self.spool_group)
        return Result(findings, spooled, counts, old is None and damaged is None, damaged,
                      inventory.walked, inventory.unreadable, skipped)
