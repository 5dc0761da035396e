# SPDX-License-Identifier: GPL-2.0-or-later
"""Attributes beyond the mode that an intruder uses: the immutable and
append-only flags, POSIX ACLs, and security attributes a Debian system
does not set.

``chattr +i`` on a planted file keeps even root from removing it until
the flag is cleared, and hides the file from tools that only read the
mode (ATT&CK T1222.002); ``setfacl -m u:mallory:rw /etc/shadow`` gives an
account access that ``ls -l`` shows only as a '+'.  The flags come from
statx(2)'s ``stx_attributes``, which needs no open file (lsattr opens
each one); Python has no statx before 3.15, so it is called through
ctypes.  The ACL is the ``system.posix_acl_access`` attribute
(linux/posix_acl_xattr.h): a version word, then entries of tag,
permissions and id.  Of the ``security.*`` extended attributes,
``capability`` is the audit's inventory's (capabilities.py); the labels
an enabled LSM or IMA keeps on every file (``selinux``, ``SMACK64``,
``ima``, ``evm``) are left alone; any other, such as SMACK's
``SMACK64EXEC`` (a label a program runs with, as setuid gives a user),
is unusual on Debian and told.
"""

import ctypes
import errno
import os
import struct

IMMUTABLE = 0x10        # STATX_ATTR_IMMUTABLE
APPEND = 0x20           # STATX_ATTR_APPEND
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_STATX_DONT_SYNC = 0x4000
_STATX_SIZE = 256       # struct statx, padded as the kernel defines it
_ATTRIBUTES_AT = 8      # __u64 stx_attributes, after stx_mask and stx_blksize

ACCESS = "system.posix_acl_access"
DEFAULT = "system.posix_acl_default"
# linux/posix_acl.h
_USER, _GROUP = 0x02, 0x08
_NAMED = {_USER: "user", _GROUP: "group"}
_NONE = (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT, errno.ENOTDIR)
# security.* attributes that say nothing unusual (see the docstring).
_USUAL_SECURITY = frozenset(("security.capability", "security.selinux", "security.SMACK64",
                             "security.ima", "security.evm"))

# The C library this process already runs with: find_library("c") would
# start ldconfig -p to find its name.
_libc = ctypes.CDLL(None, use_errno=True)
_statx = getattr(_libc, "statx", None)
if _statx is not None:
    _statx.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint,
                       ctypes.c_void_p)
    _statx.restype = ctypes.c_int


_AT_EMPTY_PATH = 0x1000
_AT_FDCWD = -100


def flags(dir_fd, name):
    """The immutable and append-only bits (IMMUTABLE | APPEND) of entry
    ``name`` (bytes) of the open directory ``dir_fd`` (of ``dir_fd``
    itself when ``name`` is empty; of the path ``name`` when ``dir_fd``
    is None), not following a link; 0 when it has neither, is gone, or
    statx is not there."""
    if _statx is None:
        return 0
    how = _AT_SYMLINK_NOFOLLOW | _AT_STATX_DONT_SYNC | (0 if name else _AT_EMPTY_PATH)
    buffer = ctypes.create_string_buffer(_STATX_SIZE)
    if _statx(_AT_FDCWD if dir_fd is None else dir_fd, name, how, 0, buffer) != 0:
        return 0
    (attributes,) = struct.unpack_from("<Q", buffer.raw, _ATTRIBUTES_AT)
    return attributes & (IMMUTABLE | APPEND)


def flag_words(bits):
    """The flags as chattr(1) names them."""
    return [word for bit, word in ((IMMUTABLE, "immutable"), (APPEND, "append-only"))
            if bits & bit]


def _where(dir_fd, name):
    return name if dir_fd is None else f"/proc/self/fd/{dir_fd}/{os.fsdecode(name)}"


def attribute_names(dir_fd, name):
    """The names of the extended attributes of entry ``name`` of the open
    directory ``dir_fd`` (of ``dir_fd`` itself when ``name`` is None; of
    the path ``name`` when ``dir_fd`` is None), not following a link:
    one call, where asking for each attribute is one call each."""
    try:
        if name is None:
            return os.listxattr(dir_fd)
        return os.listxattr(_where(dir_fd, name), follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _NONE:
            return []
        raise


def unusual(attribute_names_):
    """The security attributes among ``attribute_names_`` that a Debian
    system does not set by itself."""
    return sorted(n for n in attribute_names_
                  if n.startswith("security.") and n not in _USUAL_SECURITY)


def read_acl(dir_fd, name, attribute=ACCESS):
    """The raw ACL ``attribute`` of entry ``name`` of the open directory
    ``dir_fd`` (of ``dir_fd`` itself when ``name`` is None; of the path
    ``name`` when ``dir_fd`` is None), not following a link; None when
    there is none."""
    try:
        if name is None:
            return os.getxattr(dir_fd, attribute)
        return os.getxattr(_where(dir_fd, name), attribute, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _NONE:
            return None
        raise


def named_entries(raw):
    """``[(kind, id, perms)]`` of the entries of ``raw`` that name an
    account or a group: what makes an ACL more than the mode bits."""
    out = []
    for offset in range(4, len(raw) - 7, 8):
        tag, perm, ident = struct.unpack_from("<HHI", raw, offset)
        if tag in _NAMED:
            perms = "".join(c if perm & b else "-" for c, b in (("r", 4), ("w", 2), ("x", 1)))
            out.append((_NAMED[tag], ident, perms))
    return out


def named_raw(raw):
    """The entries of ``raw`` that name an account or a group, as the
    ACL's own bytes (8 each): what the audit keeps to tell a changed ACL."""
    return b"".join(raw[offset:offset + 8] for offset in range(4, len(raw) - 7, 8)
                    if struct.unpack_from("<H", raw, offset)[0] in _NAMED)


def acl_text(raw, names):
    """The named entries of ``raw`` as getfacl writes them
    ("user:mallory:rw-"), ``names`` (accounts.Names) giving the names.
    ``raw`` may also be what ``named_raw`` kept, with the ACL's version
    word before it."""
    shown = []
    for kind, ident, perms in named_entries(raw):
        has = names.has_user if kind == "user" else names.has_group
        name = (names.user if kind == "user" else names.group)(ident) if has(ident) else ident
        shown.append(f"{kind}:{name}:{perms}")
    return ",".join(shown)
