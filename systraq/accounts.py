# SPDX-License-Identifier: GPL-2.0-or-later
"""The passwd database: which accounts exist and where their homes are.

On the real system the NSS database is asked (``pwd``), so accounts from
LDAP or systemd-homed count too.  Below another root (tests, --root) the
root's own ``/etc/passwd`` is read, since NSS would answer for the host.
"""

import grp
import os
import pwd
import stat
from collections import namedtuple

from systraq.errors import ConfigError
from systraq.settings import SYSTEM_USER

Account = namedtuple("Account", "name uid gid home shell")


def _parse_passwd(path):
    accounts = []
    try:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                line = line.rstrip(b"\n")
                if not line or line.startswith((b"#", b"+", b"-")):
                    continue
                fields = line.split(b":")
                if len(fields) != 7:
                    raise ConfigError.single(path.decode(errors="replace"), number,
                                             "not a passwd line (7 fields expected)")
                try:
                    uid, gid = int(fields[2]), int(fields[3])
                except ValueError:
                    raise ConfigError.single(path.decode(errors="replace"), number,
                                             "uid and gid must be numbers") from None
                accounts.append(Account(fields[0].decode("utf-8", "replace"),
                                        uid, gid, fields[5], fields[6]))
    except FileNotFoundError:
        return []
    return accounts


def accounts(settings):
    """Every account, in database order; home and shell are bytes."""
    if settings.is_host_root:
        return [Account(entry.pw_name, entry.pw_uid, entry.pw_gid,
                        entry.pw_dir.encode("utf-8", "surrogateescape"),
                        entry.pw_shell.encode("utf-8", "surrogateescape"))
                for entry in pwd.getpwall()]
    return _parse_passwd(settings.passwd_file)


def home_directories(settings):
    """Logical paths of the distinct home directories, ``/`` and empty ones left out.

    Several system accounts share a home (/nonexistent, /var/lib/...);
    each directory is listed once, in the order first seen.
    """
    seen = []
    for account in accounts(settings):
        home = account.home.rstrip(b"/")
        if not home or not home.startswith(b"/") or home in seen:
            continue
        seen.append(home)
    return seen


def _ids_of(settings, name):
    """(uid, {gids}) of account ``name``: its group and those that list
    it as a member; None when it has no account."""
    found = [a for a in accounts(settings) if a.name == name]
    if not found:
        return None
    gids = {found[0].gid}
    if settings.is_host_root:
        gids.update(g.gr_gid for g in grp.getgrall() if name in g.gr_mem)
    else:
        try:
            with open(settings.group_file, "rb") as handle:
                for line in handle:
                    fields = line.rstrip(b"\n").split(b":")
                    if len(fields) >= 4 and fields[2].isdigit() and \
                            name.encode() in fields[3].split(b","):
                        gids.add(int(fields[2]))
        except FileNotFoundError:
            pass
    return found[0].uid, gids


def _has_acl(host_path):
    """Whether the directory ``host_path`` carries an access ACL, which
    may deny what its permission bits allow."""
    try:
        os.getxattr(host_path, "system.posix_acl_access")
    except OSError:
        return False
    return True


def _may_enter(settings, logical, uid, gids):
    """Whether ``uid`` (with groups ``gids``) may pass through every
    directory from / down to ``logical``, by their permission bits.  A
    directory with an access ACL counts as closed: an account could deny
    the systraq user by an ACL (setfacl -m u:debian-systraq:- ~) what the
    bits allow, and then neither job would look; the root job looking
    too costs at most a file told twice."""
    parts = [p for p in logical.split(b"/") if p]
    for depth in range(len(parts) + 1):
        path = b"/" + b"/".join(parts[:depth])
        try:
            info = os.stat(settings.host(path))
        except OSError:
            return False
        if _has_acl(settings.host(path)):
            return False
        if info.st_uid == uid:
            bit = stat.S_IXUSR
        elif info.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def closed_homes(settings, user=SYSTEM_USER):
    """The home directories (logical, as home_directories gives them)
    that ``user``, who runs the pub jobs, cannot enter: 0700 homes,
    /root.  The root job looks at their shell start-up files.  Every home
    when ``user`` has no account."""
    homes = [h for h in home_directories(settings) if os.path.isdir(settings.host(h))]
    ids = _ids_of(settings, user)
    if ids is None:
        return homes
    return [h for h in homes if not _may_enter(settings, h, *ids)]


class Names:
    """User and group names for ids, looked up once each.

    On the real system NSS answers; below another root, that root's
    /etc/passwd and /etc/group.  An id without a name is shown as its
    number.
    """

    def __init__(self, settings):
        if settings.is_host_root:
            users = lambda uid: pwd.getpwuid(uid).pw_name      # noqa: E731
            groups = lambda gid: grp.getgrgid(gid).gr_name     # noqa: E731
        else:
            users = {a.uid: a.name for a in reversed(_parse_passwd(settings.passwd_file))}.__getitem__
            groups = _parse_group(settings.group_file).__getitem__
        self._lookups = {"user": (users, {}), "group": (groups, {})}

    def _lookup(self, kind, number):
        """The name of ``number``, or None when it has none."""
        lookup, cache = self._lookups[kind]
        if number not in cache:
            try:
                cache[number] = lookup(number)
            except KeyError:
                cache[number] = None
        return cache[number]

    def user(self, uid):
        name = self._lookup("user", uid)
        return str(uid) if name is None else name

    def group(self, gid):
        name = self._lookup("group", gid)
        return str(gid) if name is None else name

    def has_user(self, uid):
        """Whether ``uid`` has an account (the audit's "unowned" test:
        a name made of digits is still a name)."""
        return self._lookup("user", uid) is not None

    def has_group(self, gid):
        return self._lookup("group", gid) is not None


def _parse_group(path):
    groups = {}
    try:
        with open(path, "rb") as handle:
            for line in handle:
                fields = line.rstrip(b"\n").split(b":")
                if len(fields) >= 3 and fields[2].isdigit():
                    groups.setdefault(int(fields[2]), fields[0].decode("utf-8", "replace"))
    except FileNotFoundError:
        pass
    return groups
