# SPDX-License-Identifier: GPL-2.0-or-later
"""The report's "System state, for reference" section: what the running system looks like.

This module owns the probes the old package ran as shell parts from
/etc/systraq/systraq.d/ (lsb_release, uname, uptime, free, df, mdstat,
last, netstat, ps), now read directly from /proc and the login records,
and the running of the administrator's own local parts in that
directory.  It reads; it never writes: what it wants to remember until
the next report it hands back as ``state``, which the report keeps.

API::

    result = collect(settings, config, previous, now=None, run_part=None,
                     statvfs=os.statvfs)

``previous``: the ``state`` of the last *delivered* report, or None/{}
the first time.  ``now``: the report's time (seconds since the epoch).
``run_part(path, timeout, env) -> PartRun`` runs one local part
(default ``run_local_part`` below); ``statvfs(host_path)`` is asked about each
mount point.  Every path comes from ``settings``, so a test points the
whole thing at a fake tree with a fake /proc.

``Result``: ``sections`` (list of ``(title, lines)``, in this order:
Release, Kernel, Uptime and load, Memory, Filesystems, RAID (only when
there are md arrays), Recent logins, Listening sockets, Processes, then
"Local parts" (old stock parts left out, one line each) and one "Local
part NAME" per part that printed something or failed); ``warnings``;
``state``; ``data``.  A probe that cannot read its source says so in one
line of its section and sets its ``data`` key to None; only a
programming error raises.

Warnings (dicts with ``source`` "probes", ``change``, ``text``):

filesystem full       a local, writable, non-tmpfs filesystem has more
                      than [report] fill_warning percent of its blocks or
                      inodes in use; keys ``path``, ``percent``,
                      ``inodes_percent`` (None when the filesystem has no
                      inode count).
raid degraded         an md array is inactive, misses a member
                      (``[2/1]``, ``[U_]``) or has a failed one (``(F)``);
                      key ``array``.
new listening socket  a listening socket (see below) not seen at any
                      delivered report in the 30 days before the last
                      delivered one; keys
                      ``proto``, ``address``, ``port``.  The first report
                      (no previous state) warns about none.
part failed           a local part exited non-zero, was killed by a
                      signal, ran past [report] part_timeout, or could not
                      be run (a dangling symlink that is not an old stock
                      part, a file the kernel cannot execute); keys
                      ``part``, ``status`` (exit status; negative: killed
                      by that signal; None: not run or timed out).

``data`` (for ``systraq report --format json``; keys always present,
None when the probe could not read its source):

release      {pretty_name, debian_version}  (each None when unreadable)
kernel       {ostype, osrelease, version}
uptime       {seconds, boot_time, load: [1 min, 5 min, 15 min]}
memory       {total_mib, available_mib, swap_total_mib, swap_free_mib}
filesystems  [{mountpoint, device, fstype, readonly, size_bytes,
               used_bytes, available_bytes, percent, inodes, inodes_used,
               inodes_percent, error}]   (mount point and device escaped
               with systraq.pathcodec; error None or why statvfs failed)
raid         [{name, header, state, personality, members, status,
               progress, degraded, problems}]  (header: the text after
               "md0 :"; status: the "blocks" line; [] without md arrays)
logins       {since, sources, logins: [{time, user, tty, host}], more}
               (since: None on the first report; logins newest first)
sockets      [{proto, address, port, user, processes, listed, watched}]
processes    {processes, threads, kernel_threads, zombies, by_user,
              largest: [{pid, name, user, rss_kib}]}
parts        [{name, outcome, status, lines, more_lines, reason}]
               outcome: ok, failed, timeout, not run, replaced
               (an old stock part), disabled (linked to true), skipped
               (not an executable regular file, as run-parts skips it)
errors       {probe key: the one line its section shows}

What the probes leave out, so that a quiet machine gives a quiet mail:

- Filesystems: kernel and virtual ones (proc, sysfs, cgroup, devtmpfs...),
  squashfs (snaps: always 100 %), overlays but an overlay root, tmpfs but
  /tmp, /var/tmp, /dev/shm and /run, and a bind mount of a filesystem
  already shown.  Read-only, tmpfs and network filesystems are shown but
  never "filesystem full".  A mount whose statvfs gives no answer within
  STATVFS_TIMEOUT (a dead NFS server) is named as such.
- RAID: no section without md arrays (the old ck-mdstat printed nothing
  then either).
- Recent logins: at most 20, newest first, then how many more; the first
  report shows the last 10.  lastlog's "Never logged in" lines are gone.
- Listening sockets: TCP in LISTEN state and UDP sockets bound but not
  connected.  UDP sockets on the kernel's ephemeral ports
  (ip_local_port_range) are client sockets (DHCP, NTP, mDNS, resolvers)
  whose port changes at every start: counted, not listed, never a
  warning.  A TCP listener on a loopback address and an ephemeral port
  (ssh -R, test servers) is listed but never a warning.  Every other
  listener is watched.

``state``: ``logins_until`` (the time up to which logins were shown) and
``sockets`` ({"tcp 0.0.0.0:22": last time seen}).  A probe that could not
read its source carries the previous value forward, so that a bad day
neither hides logins nor makes every socket new.

Old local parts.  systraq 20201231-1 ran ``run-parts
/etc/systraq/systraq.d``, where its postinst (not dpkg: they were never
conffiles, see #408359) kept symlinks to its own scripts in
/usr/share/systraq/ (/usr/lib/systraq/ before 2007), and the admin added
parts (``AA-local``) or disabled a stock one by linking it to /bin/true
(its README.Debian).  This package ships none of those scripts, so after
an upgrade the stock links dangle, and each job is done here now or
elsewhere in systraq.  The parts are handled like this:

- A symlink to one of the old stock scripts (ae-release ... ww-signature,
  in either directory, dangling or not) is not run: one line in the
  "Local parts" section names it and what does its job now.  Running it
  would give either an error every day (the target is gone) or the same
  facts twice.  The postinst should remove the links it finds unchanged.
- A symlink to /bin/true or /usr/bin/true is a disabled part: nothing.
- Everything else named by run-parts' rule (``^[A-Za-z0-9_-]+$``, C
  locale order) that is an executable regular file, through symlinks, is
  the admin's own part and runs, as the systraq user, with the old
  script's environment variables (``SYSCONF_PATH``, ``ST_LDIGESTS``...)
  besides PATH, LC_ALL=C.UTF-8 and HOME, stdin /dev/null, stdout and
  stderr together, at most 200 lines kept.  A part that is not
  executable, or a directory, is skipped silently, as run-parts does.
- A dangling symlink that is not an old stock link is a "part failed":
  the admin's part no longer runs and should hear of it.
"""

import dataclasses
import heapq
import ipaddress
import math
import os
import posixpath
import re
import selectors
import shlex
import signal
import sqlite3
import stat
import struct
import subprocess
import threading
import time
import urllib.parse
from collections import namedtuple

from systraq import __version__
from systraq.accounts import Names
from systraq.pathcodec import escape

WARNING_KINDS = ("filesystem full", "raid degraded", "new listening socket", "part failed")


@dataclasses.dataclass
class Result:
    """What ``collect`` found; the module docstring describes each field."""

    sections: list
    warnings: list
    state: dict
    data: dict


class _Unreadable(Exception):
    """A probe's source is missing, closed or not in the expected format;
    the message is the one line its section shows."""


def _read(settings, logical):
    """The bytes of the logical path ``logical`` (bytes)."""
    try:
        with open(settings.host(logical), "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise _Unreadable(f"cannot read {os.fsdecode(logical)}: "
                          f"{exc.strerror or exc}") from None


def _text(data):
    """Text for the report from bytes a file or a program gave: invalid
    UTF-8 and control characters (but tab) shown as escapes, so that
    nothing read can forge report lines or drive a terminal."""
    text = data.decode("utf-8", "surrogateescape")
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif (code < 0x20 and ch != "\t") or 0x7F <= code < 0xA0 or code in (0x2028, 0x2029):
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _when(epoch):
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


def _human(size):
    """Bytes as ``df -h`` shows them: powers of 1024, rounded up, one
    decimal below 10."""
    if size < 1024:
        return str(size)
    value = float(size)
    units = "KMGTPE"
    for index, unit in enumerate(units):
        value /= 1024
        if value < 1024 or unit == units[-1]:
            break
    if value < 10:
        rounded = math.ceil(value * 10) / 10
        if rounded < 10:
            return f"{rounded:.1f}{unit}"
    rounded = math.ceil(value)
    if rounded >= 1024 and unit != units[-1]:
        return f"1.0{units[index + 1]}"
    return f"{rounded}{unit}"


class _Context:
    """What every probe may look at, and what they hand back."""

    def __init__(self, settings, config, previous, now, statvfs, run_part):
        self.settings = settings
        self.config = config
        self.previous = previous if isinstance(previous, dict) else {}
        self.now = now
        self.statvfs = statvfs
        self.run_part = run_part
        self.sections = []
        self.warnings = []
        self.state = {}
        self.data = {}
        self.errors = {}

    def warn(self, change, text, **fields):
        self.warnings.append({"source": "probes", "change": change, "text": text, **fields})

    def run(self, key, title, probe):
        """Run ``probe`` and add its section; None lines: no section."""
        try:
            lines = probe(self)
        except _Unreadable as exc:
            self.data[key] = None
            self.errors[key] = str(exc)
            lines = [str(exc)]
        if lines is not None:
            self.sections.append((title, lines))


def collect(settings, config, previous, now=None, run_part=None, statvfs=os.statvfs):
    """Probe the system below ``settings.root``; returns a Result."""
    ctx = _Context(settings, config, previous, time.time() if now is None else now,
                   statvfs, run_part or run_local_part)
    ctx.run("release", "Release", _release)
    ctx.run("kernel", "Kernel", _kernel)
    ctx.run("uptime", "Uptime and load", _uptime)
    ctx.run("memory", "Memory", _memory)
    ctx.run("filesystems", "Filesystems", _filesystems)
    ctx.run("raid", "RAID", _raid)
    ctx.run("logins", "Recent logins", _logins)
    ctx.run("sockets", "Listening sockets", _sockets)
    ctx.run("processes", "Processes", _processes)
    _parts(ctx)
    ctx.data["errors"] = ctx.errors
    return Result(ctx.sections, ctx.warnings, ctx.state, ctx.data)


# -- Release and kernel ---------------------------------------------------

def _os_release(settings):
    """PRETTY_NAME from os-release(5): /etc/os-release, or
    /usr/lib/os-release when the former does not exist."""
    try:
        data = _read(settings, b"/etc/os-release")
    except _Unreadable as first:
        if os.path.exists(settings.host(b"/etc/os-release")):
            raise
        try:
            data = _read(settings, b"/usr/lib/os-release")
        except _Unreadable:
            raise first from None
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key == "PRETTY_NAME":
            # The values are shell assignments: quotes and backslash
            # escapes as sh reads them (os-release(5)).
            try:
                return _text(" ".join(shlex.split(value)).encode())
            except ValueError:
                return _text(value.encode())
    raise _Unreadable("/etc/os-release has no PRETTY_NAME")


def _release(ctx):
    lines = []
    values = {"pretty_name": None, "debian_version": None}
    try:
        values["pretty_name"] = _os_release(ctx.settings)
        lines.append(values["pretty_name"])
    except _Unreadable as exc:
        lines.append(str(exc))
    try:
        first = _read(ctx.settings, b"/etc/debian_version").splitlines()
        values["debian_version"] = _text(first[0].strip()) if first else ""
        lines.append(f"Debian version {values['debian_version']}")
    except _Unreadable as exc:
        lines.append(str(exc))
    if values["pretty_name"] is None and values["debian_version"] is None:
        ctx.errors["release"] = "; ".join(lines)
    ctx.data["release"] = values
    return lines


def _kernel(ctx):
    values = {}
    for key in ("ostype", "osrelease", "version"):
        raw = _read(ctx.settings, b"/proc/sys/kernel/" + key.encode())
        values[key] = _text(raw.strip())
    ctx.data["kernel"] = values
    return [" ".join(v for v in values.values() if v)]


# -- Uptime, load, memory -------------------------------------------------

def _format_uptime(seconds):
    minutes = int(seconds) // 60
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    clock = f"{hours}:{minutes:02d}"
    if not days:
        return clock
    return f"{days} day{'s' if days != 1 else ''}, {clock}"


def _uptime(ctx):
    try:
        seconds = float(_read(ctx.settings, b"/proc/uptime").split()[0])
        load = [float(v) for v in _read(ctx.settings, b"/proc/loadavg").split()[:3]]
        if len(load) != 3:
            raise ValueError
    except (ValueError, IndexError):
        raise _Unreadable("unexpected content in /proc/uptime or /proc/loadavg") from None
    boot = ctx.now - seconds
    ctx.data["uptime"] = {"seconds": seconds, "boot_time": boot, "load": load}
    return [f"up {_format_uptime(seconds)}, since {_when(boot)}",
            "load average: " + ", ".join(f"{v:.2f}" for v in load)]


def _meminfo(settings):
    values = {}
    for line in _read(settings, b"/proc/meminfo").decode("ascii", "replace").splitlines():
        key, sep, rest = line.partition(":")
        fields = rest.split()
        if sep and fields and fields[0].isdigit():
            values[key.strip()] = int(fields[0])   # kB
    return values


def _memory(ctx):
    info = _meminfo(ctx.settings)
    if "MemTotal" not in info:
        raise _Unreadable("unexpected content in /proc/meminfo (no MemTotal)")
    mib = {key: (info[key] // 1024 if key in info else None)
           for key in ("MemTotal", "MemAvailable", "SwapTotal", "SwapFree")}
    ctx.data["memory"] = {"total_mib": mib["MemTotal"], "available_mib": mib["MemAvailable"],
                          "swap_total_mib": mib["SwapTotal"] or 0,
                          "swap_free_mib": mib["SwapFree"] or 0}
    line = f"total {mib['MemTotal']} MiB"
    if mib["MemAvailable"] is not None:
        share = round(100 * info["MemAvailable"] / info["MemTotal"]) if info["MemTotal"] else 0
        line += f", available {mib['MemAvailable']} MiB ({share}%)"
    lines = [line]
    if info.get("SwapTotal"):
        used = round(100 * (info["SwapTotal"] - info.get("SwapFree", 0)) / info["SwapTotal"])
        lines.append(f"swap {mib['SwapTotal']} MiB, free {mib['SwapFree'] or 0} MiB ({used}% used)")
    else:
        lines.append("no swap")
    return lines


# -- Filesystems ----------------------------------------------------------

# Kernel and virtual filesystems: no space an administrator manages, and
# df leaves most of them out too.  squashfs and iso9660-like images are
# read-only and always 100 % full (snaps mount dozens of them).  overlay
# mounts are containers' roots stacked on a filesystem already listed;
# only an overlay root (a live system, a container) is shown.
_PSEUDO_FS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "mqueue",
    "debugfs", "tracefs", "securityfs", "pstore", "bpf", "autofs",
    "binfmt_misc", "fusectl", "configfs", "hugetlbfs", "ramfs", "nsfs",
    "efivarfs", "rpc_pipefs", "nfsd", "selinuxfs", "squashfs",
    "fuse.lxcfs", "fuse.gvfsd-fuse", "fuse.portal", "fuse.snapfuse",
})
# tmpfs is memory, and its size a ceiling, not space set aside: shown
# where it matters to an admin (a full /tmp or /dev/shm breaks programs),
# never a warning; /run/user/N, /run/credentials/... and friends come and
# go with sessions and services.
_TMPFS_SHOWN = frozenset({b"/tmp", b"/var/tmp", b"/dev/shm", b"/run"})
# Filesystems of another machine: listed, but a full one is its server's
# warning, not one for every client every day.
_NETWORK_FS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs",
                         "fuse.sshfs", "fuse.glusterfs", "9p", "afs", "lustre"})
# statvfs on a dead NFS server blocks for as long as the server is away.
STATVFS_TIMEOUT = 10.0

_DF_HEADER = " Size  Used Avail Use% IUse%  Mounted on"
_OCTAL = re.compile(rb"\\([0-7]{3})")

Mount = namedtuple("Mount", "device mountpoint fstype readonly")


def _unmangle(field):
    """A /proc/mounts field: the kernel writes space, tab, newline and
    backslash as three-digit octal escapes (\\040)."""
    return _OCTAL.sub(lambda m: bytes([int(m.group(1), 8) & 0xFF]), field)


def _mounts(settings):
    try:
        data = _read(settings, b"/proc/self/mounts")
    except _Unreadable as first:
        try:
            data = _read(settings, b"/proc/mounts")
        except _Unreadable:
            raise first from None
    mounts = {}
    for line in data.splitlines():
        fields = line.split()
        if len(fields) < 4 or not fields[1].startswith(b"/"):
            continue
        mount = Mount(_unmangle(fields[0]), _unmangle(fields[1]),
                      fields[2].decode("ascii", "replace"), b"ro" in fields[3].split(b","))
        # A later mount on the same point hides the earlier one.
        mounts.pop(mount.mountpoint, None)
        mounts[mount.mountpoint] = mount
    return list(mounts.values())


def _shown(mount):
    if mount.fstype in _PSEUDO_FS:
        return False
    if mount.fstype == "overlay":
        return mount.mountpoint == b"/"
    if mount.fstype == "tmpfs":
        return mount.mountpoint in _TMPFS_SHOWN
    return True


def _statvfs_all(statvfs, paths, timeout):
    """``statvfs(path)`` for every path, in threads, so that a hung
    network filesystem costs ``timeout`` seconds at most, not the report.
    Returns {path: os.statvfs_result or error text}; a path still
    waiting is missing."""
    results = {}

    def ask(path):
        try:
            results[path] = statvfs(path)
        except OSError as exc:
            results[path] = exc.strerror or str(exc)
        except BaseException as exc:    # a bug: raised again below
            results[path] = exc

    threads = []
    for path in paths:
        # Daemon threads: one stuck in the kernel does not keep systraq
        # from exiting.
        thread = threading.Thread(target=ask, args=(path,), daemon=True)
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for value in list(results.values()):
        if isinstance(value, BaseException):
            raise value
    return results


def _percent(used, total):
    """df's Use%: rounded up, so that 90.1 % is over a 90 % limit."""
    return math.ceil(used * 100 / total) if total > 0 else None


def _filesystems(ctx):
    limit = ctx.config.get("report", "fill_warning")
    mounts = [m for m in _mounts(ctx.settings) if _shown(m)]
    hosts = {m.mountpoint: ctx.settings.host(m.mountpoint) for m in mounts}
    answers = _statvfs_all(ctx.statvfs, list(hosts.values()), STATVFS_TIMEOUT)
    rows = []
    seen = {}
    for mount in mounts:
        answer = answers.get(hosts[mount.mountpoint])
        row = {"mountpoint": escape(mount.mountpoint), "device": escape(mount.device),
               "fstype": mount.fstype, "readonly": mount.readonly,
               "size_bytes": None, "used_bytes": None, "available_bytes": None,
               "percent": None, "inodes": None, "inodes_used": None,
               "inodes_percent": None, "error": None}
        if answer is None:
            row["error"] = f"no answer within {STATVFS_TIMEOUT:g} s"
        elif isinstance(answer, str):
            row["error"] = answer
        else:
            # A bind mount shows the same filesystem again: same device,
            # same filesystem id.  btrfs subvolumes differ in f_fsid and
            # stay apart, as df shows them.
            key = (mount.device, getattr(answer, "f_fsid", None))
            if mount.device.startswith(b"/") and key in seen:
                continue
            seen[key] = True
            used = (answer.f_blocks - answer.f_bfree) * answer.f_frsize
            avail = answer.f_bavail * answer.f_frsize
            inodes_used = answer.f_files - answer.f_ffree
            row.update(size_bytes=answer.f_blocks * answer.f_frsize, used_bytes=used,
                       available_bytes=avail, percent=_percent(used, used + avail),
                       inodes=answer.f_files or None,
                       inodes_used=inodes_used if answer.f_files else None,
                       # btrfs and others report no inode count: 0 total.
                       inodes_percent=_percent(inodes_used, answer.f_files))
        rows.append((mount, row))
    ctx.data["filesystems"] = [row for _mount, row in rows]
    if not rows:
        return ["no filesystems to show"]
    lines = [_DF_HEADER]
    for mount, row in rows:
        where = f"{row['mountpoint']} ({row['fstype']}, {row['device']})"
        if row["error"]:
            lines.append(" " * _DF_HEADER.index("Mounted") + f"{where}: {row['error']}")
            continue
        pct = f"{row['percent']}%" if row["percent"] is not None else "-"
        ipct = f"{row['inodes_percent']}%" if row["inodes_percent"] is not None else "-"
        lines.append(f"{_human(row['size_bytes']):>5} {_human(row['used_bytes']):>5} "
                     f"{_human(row['available_bytes']):>5} {pct:>4} {ipct:>5}  {where}")
        _check_full(ctx, mount, row, limit)
    return lines


def _check_full(ctx, mount, row, limit):
    # A read-only filesystem does not fill up; tmpfs and network
    # filesystems are left out for the reasons given above their lists.
    if mount.readonly or mount.fstype == "tmpfs" or mount.fstype in _NETWORK_FS:
        return
    blocks = row["percent"] is not None and row["percent"] > limit
    inodes = row["inodes_percent"] is not None and row["inodes_percent"] > limit
    if not (blocks or inodes):
        return
    what = []
    if blocks:
        what.append(f"{row['percent']}% of its space")
    if inodes:
        what.append(f"{row['inodes_percent']}% of its inodes")
    ctx.warn("filesystem full",
             f"filesystem {row['mountpoint']} has {' and '.join(what)} in use "
             f"(warning above {limit}%)",
             path=row["mountpoint"], percent=row["percent"],
             inodes_percent=row["inodes_percent"])


# -- RAID -----------------------------------------------------------------

_ARRAY = re.compile(r"^(md\S*)\s+:\s+(.*)$")
_MEMBER = re.compile(r"^(\S+?)\[(\d+)\]((?:\([A-Z]\))*)$")
_COUNTS = re.compile(r"\[(\d+)/(\d+)\]")
_MAP = re.compile(r"\[([U_]+)\]")
_PROGRESS = re.compile(r"\b(recovery|resync|reshape|check|repair)\s*=")


def _parse_mdstat(text):
    arrays = []
    current = None
    for line in text.splitlines():
        match = _ARRAY.match(line)
        if match:
            words = match.group(2).split()
            current = {"name": match.group(1), "header": match.group(2).strip(),
                       "state": words[0] if words else "",
                       "personality": None, "members": [], "status": None,
                       "progress": None, "degraded": False, "problems": []}
            arrays.append(current)
            for word in words[1:]:
                member = _MEMBER.match(word)
                if member:
                    current["members"].append(word)
                elif not word.startswith("(") and current["personality"] is None:
                    current["personality"] = word
            continue
        if not line[:1].isspace():
            # "Personalities", "unused devices" or an empty line: the
            # array's block is over.  (Its own empty line is often spaces.)
            current = None
            continue
        if current is None:
            continue
        line = line.strip()
        if current["status"] is None and "blocks" in line:
            current["status"] = line
        elif _PROGRESS.search(line):
            current["progress"] = line
    for array in arrays:
        problems = array["problems"]
        if array["state"] == "inactive":
            problems.append("inactive")
        status = array["status"] or ""
        counts = _COUNTS.search(status)
        if counts and int(counts.group(2)) < int(counts.group(1)):
            problems.append(f"{counts.group(2)} of {counts.group(1)} members working")
        elif "_" in "".join(_MAP.findall(status)):
            problems.append("a member is missing")
        failed = [_MEMBER.match(m).group(1) for m in array["members"] if "(F)" in m]
        if failed:
            problems.append("failed: " + ", ".join(failed))
        array["degraded"] = bool(problems)
    return arrays


def _raid(ctx):
    path = ctx.settings.host(b"/proc/mdstat")
    if not os.path.lexists(path):
        # No md driver loaded: a machine without software RAID.  The old
        # ck-mdstat part printed nothing then, and a line saying so on
        # every such machine would be noise.
        ctx.data["raid"] = []
        return None
    arrays = _parse_mdstat(_read(ctx.settings, b"/proc/mdstat").decode("utf-8", "replace"))
    ctx.data["raid"] = arrays
    if not arrays:
        return None
    lines = []
    for array in arrays:
        lines.append(_text(f"{array['name']}: {array['header']}".encode()))
        if array["status"]:
            lines.append("  " + _text(array["status"].encode()))
        if array["progress"]:
            lines.append("  " + _text(array["progress"].encode()))
        if array["degraded"]:
            text = f"RAID array {array['name']} is degraded: {'; '.join(array['problems'])}"
            lines.append("  " + text)
            ctx.warn("raid degraded", _text(text.encode()), array=array["name"])
    return lines


# -- Logins ---------------------------------------------------------------

# struct utmp as glibc lays it out on every Debian architecture (see
# bits/utmp.h: ut_session and ut_tv are 32-bit words even on 64-bit
# systems, so that 32- and 64-bit programs share the file), 384 bytes, in
# the machine's byte order.  tv_sec is read unsigned: wtmp never holds a
# time before 1970, and so it reads right until 2106.
_UTMP = struct.Struct("=h2xi32s4s32s256shhiIi16s20x")
assert _UTMP.size == 384
UTMP_USER_PROCESS = 7
# wtmpdb's own numbering (wtmpdb.h), not utmp's.
WTMPDB_USER_PROCESS = 3
FIRST_LOGINS = 10
MAX_LOGINS = 20
WTMP_FILES = (b"/var/log/wtmp", b"/var/log/wtmp.1")   # the second: logrotate's monthly copy
# wtmpdb's database (trixie and later): Debian keeps it in /var/log and
# links upstream's place to it; the link dangles until the first login.
WTMPDB_FILES = (b"/var/log/wtmp.db", b"/var/lib/wtmpdb/wtmp.db")

Login = namedtuple("Login", "time user tty host")


def _cstring(raw):
    return raw.split(b"\0", 1)[0]


def _wtmp_logins(path):
    with open(path, "rb") as handle:
        while chunk := handle.read(_UTMP.size * 1024):
            # A record being appended right now may be cut short: skip it.
            chunk = chunk[:len(chunk) - len(chunk) % _UTMP.size]
            for (kind, _pid, line, _id, user, host, _term, _exit, _session,
                 sec, usec, _addr) in _UTMP.iter_unpack(chunk):
                if kind == UTMP_USER_PROCESS and _cstring(user):
                    yield Login(sec + usec / 1e6, _cstring(user), _cstring(line), _cstring(host))


def _wtmpdb_logins(path, since, limit):
    # Read-only, through a URI so that the file is never created nor
    # written: the systraq user only reads.
    uri = "file:" + urllib.parse.quote(os.fsdecode(path)) + "?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    try:
        db.text_factory = bytes
        query = ("SELECT Login, User, TTY, Service, RemoteHost FROM wtmp "
                 "WHERE Type = ? AND Login > ? ORDER BY Login DESC")
        args = [WTMPDB_USER_PROCESS, -1 if since is None else int(since * 1_000_000)]
        if limit is not None:
            query += " LIMIT ?"
            args.append(limit)
        rows = db.execute(query, args).fetchall()
    finally:
        db.close()
    for login, user, tty, service, host in rows:
        if isinstance(login, int) and user:
            yield Login(login / 1e6, user, tty or service or b"", host or b"")


def _logins(ctx):
    previous = ctx.previous.get("logins_until")
    since = previous if isinstance(previous, (int, float)) else None
    logins = []
    errors = []
    sources = []
    seen = set()
    wtmpdb_waiting = False
    for logical in WTMP_FILES + WTMPDB_FILES:
        if not os.path.lexists(ctx.settings.host(logical)):
            continue
        try:
            real = ctx.settings.follow(logical)
        except OSError as exc:
            errors.append(f"cannot read {os.fsdecode(logical)}: {exc.strerror}")
            continue
        if real in seen:
            continue
        seen.add(real)
        path = ctx.settings.host(real)
        if not os.path.exists(path):
            # wtmpdb makes its database at the first login it records.
            wtmpdb_waiting = wtmpdb_waiting or logical in WTMPDB_FILES
            continue
        try:
            if logical in WTMPDB_FILES:
                found = list(_wtmpdb_logins(path, since, FIRST_LOGINS * 2 if since is None else None))
            else:
                records = (r for r in _wtmp_logins(path) if since is None or r.time > since)
                found = (heapq.nlargest(FIRST_LOGINS * 2, records, key=lambda r: r.time)
                         if since is None else list(records))
        except (OSError, sqlite3.Error) as exc:
            errors.append(f"cannot read {os.fsdecode(logical)}: "
                          f"{getattr(exc, 'strerror', None) or exc}")
            continue
        sources.append(os.fsdecode(logical))
        logins.extend(r for r in found if r.time <= ctx.now)
    # A machine upgraded to trixie may have the same login in both wtmp
    # and wtmpdb.
    unique = {}
    for login in logins:
        unique.setdefault((login.user, login.tty, login.host, int(login.time)), login)
    logins = sorted(unique.values(), key=lambda r: r.time, reverse=True)
    if since is None:
        logins = logins[:FIRST_LOGINS]
    shown, more = logins[:MAX_LOGINS], len(logins) - MAX_LOGINS
    if not errors:
        ctx.state["logins_until"] = ctx.now
    elif since is not None:
        # Shown again next time rather than never.
        ctx.state["logins_until"] = since
    ctx.data["logins"] = {
        "since": since, "sources": sources, "more": max(0, more),
        "logins": [{"time": r.time, "user": escape(r.user), "tty": escape(r.tty),
                    "host": escape(r.host)} for r in shown]}
    lines = list(errors)
    if wtmpdb_waiting and not logins and not errors:
        # wtmpdb is where logins go now (an old, empty wtmp may be there
        # beside it): none was ever recorded.
        lines.append("no logins recorded yet (wtmpdb makes its database at the first one)")
        return lines
    if not sources and not errors:
        lines.append("no login records: neither /var/log/wtmp nor wtmpdb's database exists")
        return lines
    if errors and not sources:
        ctx.data["logins"] = None
        ctx.errors["logins"] = "; ".join(errors)
        return lines
    if since is None:
        lines.append(f"the last {len(shown)} logins:" if shown else "no logins recorded")
    elif shown:
        lines.append(f"since {_when(since)}:")
    else:
        lines.append(f"no logins since {_when(since)}")
    for login in shown:
        lines.append(f"{_when(login.time)}  {escape(login.user):<10} "
                     f"{escape(login.tty) or '-':<8} {escape(login.host)}".rstrip())
    if more > 0:
        lines.append(f"... and {more} earlier login{'s' if more != 1 else ''}")
    return lines


# -- Listening sockets ----------------------------------------------------

# /proc/net files and the states that mean "waiting for peers": TCP_LISTEN
# (0A) for TCP; for UDP, an unconnected socket (TCP_CLOSE, 07) with no
# remote address is one that receives from anybody.
_SOCKET_FILES = (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07"))
# How long a socket seen at a delivered report stays known, counted back
# from the last delivered report: a service that is only sometimes up at
# report time (ssh X11 forwarding on 6010, a backup agent) is not new
# again each time it comes back.
SOCKET_MEMORY = 30 * 86400
MAX_SOCKETS = 40
_DEFAULT_EPHEMERAL = (32768, 60999)

Socket = namedtuple("Socket", "proto address port uid inode")


def _decode_address(text):
    """``0100007F:0016`` -> (IPv4Address('127.0.0.1'), 22).

    The kernel prints each 32-bit word of the address as a number in the
    machine's byte order (%08X): read each word back as a number and pack
    it in native order to get the address bytes, on little- and big-endian
    machines alike.
    """
    host, port = text.split(":")
    words = [int(host[i:i + 8], 16) for i in range(0, len(host), 8)]
    return ipaddress.ip_address(struct.pack(f"={len(words)}I", *words)), int(port, 16)


def _listening(settings):
    sockets = []
    readable = 0
    for proto, state in _SOCKET_FILES:
        try:
            data = _read(settings, b"/proc/net/" + proto.encode())
        except _Unreadable:
            if proto in ("tcp", "udp"):
                raise
            continue    # no tcp6/udp6: IPv6 is disabled
        readable += 1
        for line in data.decode("ascii", "replace").splitlines()[1:]:
            fields = line.split()
            try:
                if fields[3] != state:
                    continue
                address, port = _decode_address(fields[1])
                remote, remote_port = _decode_address(fields[2])
                if proto.startswith("udp") and (int(remote) or remote_port):
                    continue
                sockets.append(Socket(proto, address, port, int(fields[7]), int(fields[9])))
            except (IndexError, ValueError):
                raise _Unreadable(f"unexpected content in /proc/net/{proto}") from None
    return sockets


def _ephemeral_range(settings):
    try:
        low, high = (int(v) for v in _read(
            settings, b"/proc/sys/net/ipv4/ip_local_port_range").split())
        return low, high
    except (_Unreadable, ValueError):
        return _DEFAULT_EPHEMERAL


def _socket_owners(settings, inodes):
    """{socket inode: {process names}} for the processes whose fds this
    user may read (the systraq user: its own); the others stay unknown."""
    owners = {}
    proc = settings.host(b"/proc")
    try:
        pids = [name for name in os.listdir(proc) if name.isdigit()]
    except OSError:
        return owners
    for pid in pids:
        fd_dir = posixpath.join(proc, pid, b"fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(posixpath.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith(b"socket:[") and target.endswith(b"]"):
                inode = int(target[8:-1]) if target[8:-1].isdigit() else None
                if inode in inodes:
                    try:
                        comm = _read(settings, b"/proc/" + pid + b"/comm").rstrip(b"\n")
                    except _Unreadable:
                        continue
                    owners.setdefault(inode, set()).add(escape(comm))
    return owners


def _sockets(ctx):
    previous = ctx.previous.get("sockets")
    known = previous if isinstance(previous, dict) else None
    try:
        found = _listening(ctx.settings)
    except _Unreadable:
        if known is not None:
            ctx.state["sockets"] = known
        raise
    low, high = _ephemeral_range(ctx.settings)
    owners = _socket_owners(ctx.settings, {s.inode for s in found})
    names = Names(ctx.settings)
    entries = {}
    for sock in found:
        shown = (f"[{sock.address}]" if sock.address.version == 6 else str(sock.address))
        key = f"{sock.proto} {shown}:{sock.port}"
        ephemeral = low <= sock.port <= high
        entry = entries.setdefault(key, {
            "proto": sock.proto, "address": str(sock.address), "port": sock.port,
            "user": names.user(sock.uid), "processes": set(),
            # Left out: UDP sockets on the kernel's ephemeral ports, which
            # are clients' (DHCP, NTP, mDNS, DNS resolvers) and change at
            # every start.  Not watched: TCP listeners on loopback
            # ephemeral ports, which a program asked the kernel to pick
            # (ssh -D/-R, test servers) and which only this machine
            # reaches.  Every other listener is watched, so that a new
            # server port, or a backdoor, is a warning the day it appears.
            "listed": not (sock.proto.startswith("udp") and ephemeral),
            "watched": not (ephemeral and (sock.proto.startswith("udp")
                                           or sock.address.is_loopback)),
        })
        entry["processes"] |= owners.get(sock.inode, set())
    state = {}
    if known is not None:
        times = {k: v for k, v in known.items() if isinstance(v, (int, float))}
        # Counted back from the last delivered report, not from now: the
        # state is only saved when a report is delivered, and a quiet
        # machine that mails nothing for a month must not then find
        # every socket new.
        newest = max(times.values(), default=ctx.now)
        state = {k: v for k, v in times.items() if v >= newest - SOCKET_MEMORY}
    lines = []
    ordered = sorted(entries.items(), key=lambda kv: (kv[1]["proto"], kv[1]["port"],
                                                       kv[1]["address"]))
    unlisted = 0
    for key, entry in ordered:
        entry["processes"] = sorted(entry["processes"])
        if not entry["listed"]:
            unlisted += 1
            continue
        who = ", ".join(entry["processes"]) if entry["processes"] else f"user {entry['user']}"
        lines.append(f"{key} ({who})")
        if entry["watched"] and known is not None and key not in state:
            ctx.warn("new listening socket", f"new listening socket {key} ({who})",
                     proto=entry["proto"], address=entry["address"], port=entry["port"])
    for key, entry in entries.items():
        if entry["listed"]:
            state[key] = ctx.now
    ctx.state["sockets"] = state
    ctx.data["sockets"] = [entry for _key, entry in ordered]
    if len(lines) > MAX_SOCKETS:
        extra = len(lines) - MAX_SOCKETS
        lines = lines[:MAX_SOCKETS] + [f"... and {extra} more"]
    if not lines:
        lines.append("no listening sockets")
    if unlisted:
        lines.append(f"and {unlisted} UDP client socket{'s' if unlisted != 1 else ''} on "
                     f"ephemeral ports ({low}-{high}), not listed")
    return lines


# -- Processes ------------------------------------------------------------

PF_KTHREAD = 0x00200000     # include/linux/sched.h
TOP_USERS = 5
TOP_MEMORY = 5

Process = namedtuple("Process", "pid name state kernel threads uid rss_kib")


def _process(settings, pid):
    """One /proc/PID, or None when it vanished or cannot be read."""
    base = b"/proc/" + pid
    try:
        stat_data = _read(settings, base + b"/stat")
        status = _read(settings, base + b"/status")
    except _Unreadable:
        return None
    # comm is in parentheses and may itself hold ')' and spaces: it ends
    # at the last ')'.
    open_at, close_at = stat_data.find(b"("), stat_data.rfind(b")")
    rest = stat_data[close_at + 2:].split()
    fields = {}
    for line in status.splitlines():
        key, sep, value = line.partition(b":")
        if sep:
            fields[key] = value.split()
    try:
        return Process(int(pid), stat_data[open_at + 1:close_at], rest[0].decode("ascii", "replace"),
                       bool(int(rest[6]) & PF_KTHREAD), int(rest[17]),
                       int(fields[b"Uid"][0]),
                       int(fields[b"VmRSS"][0]) if b"VmRSS" in fields else 0)
    except (IndexError, ValueError, KeyError):
        return None


def _processes(ctx):
    proc = ctx.settings.host(b"/proc")
    try:
        pids = [name for name in os.listdir(proc) if name.isdigit()]
    except OSError as exc:
        raise _Unreadable(f"cannot read /proc: {exc.strerror}") from None
    processes = [p for p in (_process(ctx.settings, pid) for pid in pids) if p is not None]
    if not processes:
        raise _Unreadable("no process could be read in /proc")
    names = Names(ctx.settings)
    by_user = {}
    for process in processes:
        if not process.kernel:
            user = names.user(process.uid)
            by_user[user] = by_user.get(user, 0) + 1
    kernel = sum(p.kernel for p in processes)
    zombies = [p for p in processes if p.state == "Z"]
    largest = heapq.nlargest(TOP_MEMORY, (p for p in processes if p.rss_kib),
                             key=lambda p: (p.rss_kib, -p.pid))
    users = sorted(by_user.items(), key=lambda kv: (-kv[1], kv[0]))
    ctx.data["processes"] = {
        "processes": len(processes), "threads": sum(p.threads for p in processes),
        "kernel_threads": kernel, "zombies": len(zombies), "by_user": dict(users),
        "largest": [{"pid": p.pid, "name": escape(p.name), "user": names.user(p.uid),
                     "rss_kib": p.rss_kib} for p in largest]}
    summary = (f"{len(processes)} processes ({kernel} kernel threads), "
               f"{ctx.data['processes']['threads']} threads, ")
    summary += (f"{len(zombies)} zombie{'s' if len(zombies) != 1 else ''}" if zombies
                 else "no zombies")
    lines = [summary]
    shown = ", ".join(f"{user} {count}" for user, count in users[:TOP_USERS])
    rest = users[TOP_USERS:]
    if rest:
        shown += f" (and {len(rest)} other users: {sum(c for _u, c in rest)})"
    if users:
        lines.append(f"by user: {shown}")
    if largest:
        lines.append("largest in memory:")
        for p in largest:
            lines.append(f"  {_human(p.rss_kib * 1024):>5}  {escape(p.name)} "
                         f"(pid {p.pid}, {names.user(p.uid)})")
    return lines


# -- Local parts ----------------------------------------------------------

# run-parts(8) without --lsbsysinit: the names it runs; "*.dpkg-old",
# editor backups and README are left alone.
_PART_NAME = re.compile(rb"[A-Za-z0-9_-]+")
# The old package's parts and what does their job now.
STOCK_PARTS = {
    b"ae-release": "the Release section does its job",
    b"ah-uname": "the Kernel section does its job",
    b"ak-uptime": "the Uptime and load section does its job",
    b"bb-free": "the Memory section does its job",
    b"cc-df": "the Filesystems section does its job",
    b"ck-mdstat": "the RAID section does its job",
    b"dd-last": "the Recent logins section does its job",
    b"ee-lastlog": "left out on purpose: its \"Never logged in\" lines were "
                   "noise; logins are under Recent logins",
    b"ff-netstat": "the Listening sockets section does its job",
    b"gg-ps": "the Processes section does its job",
    b"ii-shellrc": "shell startup files are watched by systraq snapshot and contents",
    b"nn-debsums": "systraq packages does its job",
    b"rr-localdigest": "systraq localsums does its job",
    b"ww-signature": "the report signs itself",
}
# Where the old package kept the parts it linked into systraq.d:
# /usr/libexec/systraq since 20201231-5 (trixie, sid), /usr/share/systraq
# in 20201231-1 (bookworm), /usr/lib/systraq before 2007.
_STOCK_DIRS = (b"/usr/libexec/systraq", b"/usr/share/systraq", b"/usr/lib/systraq")
# The old README.Debian's way to disable a stock part.
_DISABLED_TARGETS = (b"/bin/true", b"/usr/bin/true")
MAX_PART_LINES = 200
# Bytes kept of one output line: a part printing one endless line does
# not fill memory.
MAX_LINE_BYTES = 1000
# After the timeout: SIGTERM to the part's process group, then this long
# for it to go before SIGKILL.
KILL_GRACE = 2.0

PartRun = namedtuple("PartRun", "status timed_out lines more error")
PartRun.__doc__ = """What running a part gave: ``status`` the exit status
(negative: killed by that signal; None: not started or not reaped),
``timed_out``, ``lines`` the first output lines (printable text), ``more``
the number of lines not kept, ``error`` why it could not start (or None)."""


class _Output:
    """The first ``limit`` lines of a stream, and how many more there were."""

    def __init__(self, limit):
        self.limit = limit
        self.lines = []
        self.partial = b""
        self.more = 0

    def feed(self, chunk):
        if len(self.lines) >= self.limit:
            # Past the limit only lines are counted, quickly.
            self.more += chunk.count(b"\n")
            self.partial = b"x" if not chunk.endswith(b"\n") else b""
            return
        pieces = chunk.split(b"\n")
        for piece in pieces[:-1]:
            self._add(piece)
            self.finish_line()
        self._add(pieces[-1])

    def _add(self, piece):
        room = MAX_LINE_BYTES - len(self.partial)
        if room > 0:
            self.partial += piece[:room]

    def finish_line(self):
        if len(self.lines) < self.limit:
            self.lines.append(self.partial)
        else:
            self.more += 1
        self.partial = b""

    def close(self):
        if self.partial:
            self.finish_line()
        return [_text(line.rstrip(b"\r")) for line in self.lines], self.more


def _drain(fd, output, deadline):
    """Read ``fd`` into ``output`` until end of file (True) or the deadline (False)."""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                return False
            chunk = os.read(fd, 65536)
            if not chunk:
                return True
            output.feed(chunk)


def _signal_group(pgid, signum):
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def run_local_part(path, timeout, env):
    """Run the local part at ``path`` (bytes) for at most ``timeout``
    seconds; returns a PartRun.

    The part leads a new session, so that on timeout its whole process
    group is stopped, children included.  The group is signalled before
    the part is reaped, so that its id cannot have been reused.  Output
    is read as it comes (a part writing more than a pipe holds would
    otherwise block) and never more than MAX_PART_LINES lines are kept.
    """
    try:
        proc = subprocess.Popen([path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, cwd="/",
                                start_new_session=True)
    except OSError as exc:
        return PartRun(None, False, [], 0, f"cannot run it: {exc.strerror or exc}")
    output = _Output(MAX_PART_LINES)
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    finished = _drain(fd, output, deadline)
    if finished:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            finished = False
    if not finished:
        _signal_group(proc.pid, signal.SIGTERM)
        # What it prints while it goes is still shown; a child that left
        # the group and holds the pipe is not waited for.
        _drain(fd, output, time.monotonic() + KILL_GRACE)
        _signal_group(proc.pid, signal.SIGKILL)
    proc.stdout.close()
    try:
        status = proc.wait(KILL_GRACE)
    except subprocess.TimeoutExpired:   # stuck in the kernel: leave it
        status = None
    lines, more = output.close()
    return PartRun(status, not finished, lines, more, None)


def _part_environment(settings):
    home = os.fsdecode(settings.state_dir)
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LC_ALL": "C.UTF-8",
        "HOME": home,
        # What the old systraq script exported to its parts: an admin's
        # part written for it (a copy of rr-localdigest reads
        # ST_LDIGESTS) keeps working.
        "PACKAGE": "systraq",
        "VERSION": __version__,
        "SYSCONF_PATH": os.fsdecode(settings.conf_dir),
        "BIN_PATH": "/usr/bin",
        "LOCALSTATE_PATH": home,
        "HOME_PATH": home,
        "ST_LDIGESTS": os.fsdecode(posixpath.join(settings.state_dir, b"systraq.sums")),
    }


def _part_record(name, outcome, status=None, lines=(), more=0, reason=None):
    return {"name": name, "outcome": outcome, "status": status, "lines": list(lines),
            "more_lines": more, "reason": reason}


def _classify_part(settings, directory, name):
    """(outcome, reason) for a part that is not to be run, or None to run it."""
    path = posixpath.join(directory, name)
    try:
        info = os.lstat(path)
    except OSError:
        return "skipped", "vanished"
    if stat.S_ISLNK(info.st_mode):
        target = os.readlink(path)
        resolved = posixpath.normpath(posixpath.join(settings.logical(directory), target))
        if (posixpath.dirname(resolved) in _STOCK_DIRS
                and posixpath.basename(resolved) in STOCK_PARTS):
            return "replaced", STOCK_PARTS[posixpath.basename(resolved)]
        if resolved in _DISABLED_TARGETS:
            return "disabled", "linked to " + os.fsdecode(resolved)
        # The target as seen from inside the root (chroot semantics).
        if not os.path.exists(settings.host(resolved)):
            return "not run", f"it is a symlink to {escape(target)}, which does not exist"
        if not settings.contains(path):
            # Only below --root: an absolute link would run the host's file.
            return "not run", f"it points outside {os.fsdecode(settings.root)}"
    try:
        info = os.stat(path)
    except OSError as exc:
        return "not run", exc.strerror or str(exc)
    if not stat.S_ISREG(info.st_mode) or not os.access(path, os.X_OK):
        return "skipped", "not an executable regular file"
    return None


def _parts(ctx):
    directory = posixpath.join(ctx.settings.conf_dir, b"systraq.d")
    shown_dir = "/etc/systraq/systraq.d"
    records = []
    ctx.data["parts"] = records
    try:
        # Bytes sort: run-parts' order in the C locale, whatever ours is.
        names = sorted(n for n in os.listdir(directory) if _PART_NAME.fullmatch(n))
    except FileNotFoundError:
        return
    except OSError as exc:
        ctx.errors["parts"] = f"cannot read {shown_dir}: {exc.strerror}"
        ctx.sections.append(("Local parts", [ctx.errors["parts"]]))
        return
    timeout = ctx.config.get("report", "part_timeout")
    env = _part_environment(ctx.settings)
    replaced = []
    run_sections = []
    for raw_name in names:
        name = raw_name.decode("ascii")
        verdict = _classify_part(ctx.settings, directory, raw_name)
        if verdict is not None:
            outcome, reason = verdict
            records.append(_part_record(name, outcome, reason=reason))
            if outcome == "replaced":
                replaced.append(f"{name}: not run, {reason}")
            elif outcome == "not run":
                run_sections.append((f"Local part {name}", [f"not run: {reason}"]))
                ctx.warn("part failed", f"local part {name} was not run: {reason}",
                         part=name, status=None)
            continue
        run = ctx.run_part(posixpath.join(directory, raw_name), timeout, env)
        lines = list(run.lines)
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if run.more:
            lines.append(f"... and {run.more} more line{'s' if run.more != 1 else ''}")
        if run.error is not None:
            outcome, problem = "not run", run.error
        elif run.timed_out:
            outcome, problem = "timeout", (f"did not finish within {timeout} s "
                                           "and was stopped")
        elif run.status:
            outcome, problem = "failed", (f"killed by signal {-run.status}" if run.status < 0
                                          else f"exited with status {run.status}")
        else:
            outcome, problem = "ok", None
        records.append(_part_record(name, outcome, None if run.timed_out else run.status,
                                    run.lines, run.more, problem))
        if problem:
            lines.append(f"({problem})")
            ctx.warn("part failed", f"local part {name} {problem}", part=name,
                     status=None if run.timed_out else run.status)
        if lines:
            run_sections.append((f"Local part {name}", lines))
    if replaced:
        ctx.sections.append(("Local parts", replaced))
    ctx.sections.extend(run_sections)
