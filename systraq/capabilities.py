# SPDX-License-Identifier: GPL-2.0-or-later
"""File capabilities: the ``security.capability`` attribute of a file,
read without following a link, and told the way getcap(8) tells it.

A program with ``cap_setuid=ep`` becomes root as surely as a setuid one
(ATT&CK T1548.001), and neither ``ls -l`` nor a setuid inventory shows
it.  The attribute is ``struct vfs_cap_data`` (linux/capability.h): a
little-endian word of revision and flags, then the permitted and
inheritable sets as 32-bit halves (one half in revision 1, two in 2 and
3), and in revision 3 the user namespace's root uid the file is meant
for.  libcap's getcap is not Essential (libcap2-bin), so the names are
here; a capability newer than this table is shown as its number.
"""

import errno
import os
import struct

ATTRIBUTE = "security.capability"

# linux/capability.h, in the kernel's order.
NAMES = ("chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
         "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
         "net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio",
         "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
         "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write",
         "audit_control", "setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
         "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore")

_REVISION_MASK = 0xFF000000
_EFFECTIVE = 0x000001
# Revision: number of 32-bit halves of each set, and whether a root uid follows.
_REVISIONS = {0x01000000: (1, False), 0x02000000: (2, False), 0x03000000: (2, True)}
# Absent, or a file system without extended attributes.
_NONE = (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP)


def read(dir_fd, name):
    """The raw attribute of entry ``name`` of the open directory
    ``dir_fd``, not following it if it is a link; None when it has none
    (or the file went away)."""
    try:
        return os.getxattr(f"/proc/self/fd/{dir_fd}/{os.fsdecode(name)}", ATTRIBUTE,
                           follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _NONE or exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise


def text(raw):
    """``raw`` as getcap prints it ("cap_net_raw=ep"); a value the kernel
    would not take is shown as its bytes in hex, never hidden."""
    try:
        (magic,) = struct.unpack_from("<I", raw)
        halves, has_root = _REVISIONS[magic & _REVISION_MASK]
        words = struct.unpack_from(f"<{2 * halves}I", raw, 4)
        root = struct.unpack_from("<I", raw, 4 + 8 * halves)[0] if has_root else 0
    except (struct.error, KeyError):
        return f"unknown capability data {bytes(raw).hex()}"
    permitted = inheritable = 0
    for half in range(halves):
        permitted |= words[2 * half] << (32 * half)
        inheritable |= words[2 * half + 1] << (32 * half)
    effective = bool(magic & _EFFECTIVE)
    groups = {}
    for number in range(64):
        bit = 1 << number
        if not (permitted | inheritable) & bit:
            continue
        flags = ("e" if effective else "") + ("i" if inheritable & bit else "") + \
            ("p" if permitted & bit else "")
        name = "cap_" + (NAMES[number] if number < len(NAMES) else str(number))
        groups.setdefault(flags, []).append(name)
    shown = " ".join(f"{','.join(names)}={flags}" for flags, names in groups.items())
    if not shown:
        shown = "no capabilities" + (" (effective)" if effective else "")
    return shown + (f" [rootid={root}]" if root else "")
