# SPDX-License-Identifier: GPL-2.0-or-later
"""Reading /etc/systraq/systraq.conf: keys, defaults, checks, and where each value came from.

The file is INI syntax read with configparser (no interpolation, so a '%'
in a value is just a '%').  Every key systraq knows is listed in ``SCHEMA``
with its default and how to check it; the shipped file has each of them
commented out with that default, and systraq.conf(5) documents them.
An unknown section or key is a warning, not an error, so that a file
written for a newer systraq still works.  A value that does not parse is
an error naming the file and line.
"""

import configparser
import os
import re

from systraq.errors import ConfigError
from systraq.mail import recipients
from systraq.pathcodec import escape
from systraq.scan import DIGESTS


def _items(value):
    """The non-blank lines of a multi-line value, stripped."""
    return [item.strip() for item in value.splitlines() if item.strip()]


def _absolute_paths(value):
    """One absolute path per line; returns a tuple of bytes."""
    paths = []
    for item in _items(value):
        if not item.startswith("/"):
            raise ValueError(f"not an absolute path: {item!r}")
        paths.append(os.fsencode(item.rstrip("/") or "/"))
    return tuple(paths)


def _show_paths(paths):
    return " ".join(os.fsdecode(p) for p in paths) if paths else "(none)"


def _patterns(value):
    """One shell pattern per line (absolute, or starting with '*'); a tuple of bytes."""
    patterns = []
    for item in _items(value):
        if not item.startswith(("/", "*")):
            raise ValueError(f"a pattern must start with '/' or '*': {item!r}")
        patterns.append(os.fsencode(item))
    return tuple(patterns)


def _count(value):
    """A whole number, 0 or more."""
    value = value.strip()
    if not value.isdigit():
        raise ValueError(f"not a whole number: {value!r}")
    return int(value)


_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}


def _size(value):
    """Bytes, with an optional K, M or G suffix (powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", value, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a size: {value!r} (say 1048576, 1024K or 1M)")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


parse_size = _size


# section -> key -> (default text, parse function, show function)
def _digest(value):
    value = value.strip()
    if value not in DIGESTS:
        raise ValueError(f"unknown digest {value!r} (one of: {', '.join(DIGESTS)})")
    return value


# Private keys and password hashes by their usual names.  '*' matches '/'
# too, so "*/private/*" is any file below a directory named private.
DEFAULT_SECRET = """
/etc/shadow*
/etc/gshadow*
/etc/security/opasswd*
*/private/*
*/ssh_host_*_key
*.key
*/id_rsa
*/id_dsa
*/id_ecdsa
*/id_ecdsa_sk
*/id_ed25519
*/id_ed25519_sk
"""

# Written by the system itself, not by an administrator: a diff of them
# each half hour says nothing.
DEFAULT_IGNORE = """
/etc/mtab
/etc/adjtime
/etc/ld.so.cache
/etc/fake-hwclock.data
/etc/blkid.tab*
/etc/prelink.cache
/etc/lvm/archive/*
/etc/lvm/backup/*
/etc/lvm/cache/*
/etc/apparmor.d/cache/*
/etc/cups/subscriptions.conf*
/etc/.pwd.lock
/etc/passwd-
/etc/group-
/etc/subuid-
/etc/subgid-
/etc/systraq/filetraq.conf
/etc/systraq/filetraq.main.conf
"""

def _choice(*choices):
    def parse(value):
        value = value.strip()
        if value not in choices:
            raise ValueError(f"{value!r} is not one of: {', '.join(choices)}")
        return value
    return parse


def _seconds(value):
    """A whole number of seconds, 1 or more (0 would stop every part at once)."""
    count = _count(value)
    if count < 1:
        raise ValueError(f"must be at least 1 second: {value.strip()!r}")
    return count


def _at_least_one(value):
    """A whole number, 1 or more."""
    count = _count(value)
    if count < 1:
        raise ValueError(f"must be at least 1: {value.strip()!r}")
    return count


_BOOLEANS = {"yes": True, "true": True, "on": True, "1": True,
             "no": False, "false": False, "off": False, "0": False}


def _boolean(value):
    """yes/no, true/false, on/off or 1/0, as configparser spells them."""
    word = value.strip().lower()
    if word not in _BOOLEANS:
        raise ValueError(f"not yes or no: {value.strip()!r}")
    return _BOOLEANS[word]


def _show_boolean(value):
    return "yes" if value else "no"


def _percent(value):
    value = value.strip().rstrip("%").strip()
    if not value.isdigit() or not 1 <= int(value) <= 100:
        raise ValueError(f"not a percentage from 1 to 100: {value!r}")
    return int(value)


def _show_list(items):
    return ", ".join(items) if items else "(none: mail is off)"


def _optional_path(value):
    value = value.strip()
    if value and not value.startswith("/"):
        raise ValueError(f"not an absolute path: {value!r}")
    return os.fsencode(value) if value else None


def _show_optional(path):
    return os.fsdecode(path) if path else "(none)"


# Paths whose change "systraq check" mails at once, hourly, instead of
# waiting for the daily report: who may log in and as whom, what runs by
# itself (ATT&CK's Linux persistence locations: schedulers, units and
# generators, init scripts, shell start-up files, login and session
# hooks, udev, motd, network hooks, apt and dpkg hooks), what every
# program loads (loader, kernel modules, PAM modules, Python start-up
# hooks), where packages come from, and systraq's own settings.  '*' matches '/' too.
DEFAULT_CRITICAL = """
/etc/passwd
/etc/shadow
/etc/group
/etc/gshadow
/etc/sudoers
/etc/sudoers.d/*
/etc/polkit-1/*
/etc/ssh/*
*/.ssh/authorized_keys*
/etc/crontab
/etc/anacrontab
/etc/cron.d/*
/etc/cron.hourly/*
/etc/cron.daily/*
/etc/cron.weekly/*
/etc/cron.monthly/*
/var/spool/cron/crontabs/*
/var/spool/cron/atjobs/*
/etc/systemd/system/*
/etc/systemd/user/*
/etc/systemd/*-generators/*
/lib/systemd/system/*
/usr/lib/systemd/system/*
/usr/lib/systemd/user/*
/usr/lib/systemd/*-generators/*
*/.config/systemd/user/*
*/.local/share/systemd/user/*
/etc/init.d/*
/etc/rc?.d/*
/etc/rc.local
/etc/tmpfiles.d/*
/etc/udev/rules.d/*
/etc/update-motd.d/*
/etc/xdg/autostart/*
*/.config/autostart/*
/etc/X11/Xsession.d/*
/etc/NetworkManager/dispatcher.d/*
/etc/network/if-*.d/*
/etc/dhcp/dhclient-*-hooks.d/*
/etc/logrotate.d/*
/etc/profile
/etc/profile.d/*
/etc/bash.bashrc
/etc/environment
/etc/environment.d/*
*/.profile
*/.bash_profile
*/.bashrc
*/.bash_login
*/.bash_logout
*/.bash_aliases
*/.zshenv
*/.zprofile
*/.zshrc
*/.zlogin
*/.cshrc
*/.tcshrc
*/.login
*/.pam_environment
*/.xprofile
*/.xsession
*/.xsessionrc
*/.xinitrc
/etc/pam.d/*
/etc/pam.conf
/etc/security/*
/etc/ld.so.preload
/etc/ld.so.conf
/etc/ld.so.conf.d/*
/etc/modules
/etc/modules-load.d/*
/etc/modprobe.d/*
/usr/lib/modules/*.ko*
/lib/modules/*.ko*
/usr/lib/*/security/*
/lib/*/security/*
/usr/lib/python3*.pth
/usr/local/lib/python3*.pth
*/site-packages/*.pth
*/sitecustomize.py
*/usercustomize.py
/etc/apt/apt.conf
/etc/apt/apt.conf.d/*
/etc/apt/sources.list
/etc/apt/sources.list.d/*
/etc/apt/trusted.gpg
/etc/apt/trusted.gpg.d/*
/etc/apt/keyrings/*
/etc/dpkg/dpkg.cfg
/etc/dpkg/dpkg.cfg.d/*
/etc/systraq/*
/var/lib/systraq/systraq.sums
/var/lib/systraq/packages.accepted
/var/lib/systraq/.forward
"""

# Logs an intruder edits to hide (ATT&CK T1070.002): what rsyslog, the
# login records, dpkg, apt and exim write, in Debian's default places.
DEFAULT_GROWING = """
/var/log/auth.log
/var/log/syslog
/var/log/messages
/var/log/kern.log
/var/log/daemon.log
/var/log/user.log
/var/log/cron.log
/var/log/mail.log
/var/log/mail.err
/var/log/wtmp
/var/log/btmp
/var/log/faillog
/var/log/dpkg.log
/var/log/alternatives.log
/var/log/apt/history.log
/var/log/apt/term.log
/var/log/exim4/mainlog
"""

# Where dpkg keeps what packages ship: a file there that no package's
# list names is a warning of the root audit.  /usr/local is the admin's.
DEFAULT_PACKAGE_TREES = """
/usr
/bin
/sbin
/lib
/lib32
/lib64
/libx32
"""

# Files Debian's own tools make below the package trees, that no package
# ships: byte code, caches that triggers rebuild, depmod's indexes, the
# locale archive.  '*' matches '/' too.
DEFAULT_GENERATED = """
*/__pycache__
*/__pycache__/*.pyc
/usr/lib/modules/*/modules.*
/lib/modules/*/modules.*
/usr/lib/locale/locale-archive
/usr/lib/udev/hwdb.bin
/usr/share/mime/*
/usr/share/icons/*/icon-theme.cache
/usr/share/glib-2.0/schemas/gschemas.compiled
/usr/share/applications/mimeinfo.cache
/usr/share/info/dir
/usr/share/info/dir.old
/usr/lib/*/gio/modules/giomodule.cache
/usr/lib/*/gdk-pixbuf-2.0/*/loaders.cache
/usr/lib/*/gtk-*/*/immodules.cache
/usr/share/fonts/*/fonts.dir
/usr/share/fonts/*/fonts.scale
/usr/share/fonts/*/encodings.dir
/usr/lib/jvm/*/classes.jsa
"""

# What the root half of the hourly check walks by metadata (trees.py):
# dpkg's trees, the kernels and boot loader, and the admin's /opt and /srv.
DEFAULT_TREES = DEFAULT_PACKAGE_TREES + """/boot
/opt
/srv
"""

# Directories whose world-writable and unowned files the root audit
# reports; /tmp and /var/tmp are meant to be world-writable.
DEFAULT_SYSTEM_DIRS = "\n/etc" + DEFAULT_PACKAGE_TREES + """/boot
/opt
/srv
/var/lib
/var/spool
/var/log
/var/cache
/var/backups
/var/mail
/root
"""

SCHEMA = {
    "snapshot": {
        # The digest recorded for each regular file.
        "digest": ("sha256", _digest, str),
        # Paths (directories or files) never listed or walked into when a
        # list names a directory above them; /proc, /sys, /dev and /run are
        # always left out.
        "exclude": ("", _absolute_paths, _show_paths),
        # Directories below which the root snapshot also watches every file
        # and directory others may not read, whatever the lists name.
        "private_under": ("/etc", _absolute_paths, _show_paths),
    },
    "packages": {
        # Conffiles whose change is a warning rather than a normal admin
        # edit: absolute paths, shell wildcards allowed.
        "critical": ("", _absolute_paths, _show_paths),
        # "systraq packages --from-archive": bytes downloaded at most in one
        # run to build manifests (0: no limit); the rest waits for the next.
        "archive_fetch_limit": ("0", _size, str),
        "from_archive": ("no", _boolean, _show_boolean),
    },
    "contents": {
        # Lines of diff a change record carries per file; the rest is
        # counted, not shown.
        "max_diff_lines": ("200", _count, str),
        # Files larger than this get a notice when they change, no backup
        # and no diff.
        "max_size": ("1M", _size, str),
        # Dated backups older than this many days are removed.
        "retention_days": ("60", _count, str),
        # Files whose content is never backed up or shown, even when
        # world-readable: that they are world-readable is the warning.
        "secret": (DEFAULT_SECRET, _patterns, _show_paths),
        # Files under /etc that change by themselves: left out of the
        # generated list and of the search for new files under /etc.
        "ignore": (DEFAULT_IGNORE, _patterns, _show_paths),
    },
    "report": {
        # Where reports and alerts go: comma-separated addresses; empty
        # turns mail off (the report is then kept under
        # /var/lib/systraq/reports/).
        "mailto": ("root", recipients, _show_list),
        # When the daily report is mailed: "warnings" (only when it has
        # some) or "always".
        "mail_when": ("warnings", _choice("warnings", "always"), str),
        # A full report is mailed at least this often (days), warnings or
        # not, so that silence is never taken for a dead monitor; 0: never.
        "full_report_days": ("7", _count, str),
        # A filesystem fuller than this (percent of blocks or inodes) is a
        # warning.
        "fill_warning": ("90", _percent, str),
        # Seconds each local part in /etc/systraq/systraq.d/ may run.
        "part_timeout": ("60", _seconds, str),
        # A node_exporter textfile collector file to write after each
        # report; empty: none.
        "textfile": ("", _optional_path, _show_optional),
    },
    "check": {
        # Paths whose change "systraq check" mails at once.  Shell
        # patterns, one per line; '*' also matches '/'.  Giving the key
        # replaces this whole list.
        "critical": (DEFAULT_CRITICAL, _patterns, _show_paths),
        # Logs that may only grow: cut, emptied, replaced or removed other
        # than by their rotation is a warning (growing.py).
        "growing": (DEFAULT_GROWING, _absolute_paths, _show_paths),
        # Directories walked every hour by metadata: what appeared, vanished
        # or changed below them is a warning unless a package operation
        # made it (trees.py).  Empty: none.
        "trees": (DEFAULT_TREES, _absolute_paths, _show_paths),
    },
    "audit": {
        # Directories where world-writable files and files without a known
        # owner are warnings (setuid and setgid files are looked for on
        # every local filesystem).
        "system_dirs": (DEFAULT_SYSTEM_DIRS, _absolute_paths, _show_paths),
        # Paths the audit never walks into.
        "exclude": ("", _absolute_paths, _show_paths),
        # Where a file no package ships is a warning (/usr/local never),
        # and what Debian's tools generate there.
        "package_trees": (DEFAULT_PACKAGE_TREES, _absolute_paths, _show_paths),
        "generated": (DEFAULT_GENERATED, _patterns, _show_paths),
    },
    "watch": {
        # Whether the realtime watcher (systraq-watch.service) runs.  The
        # debconf question systraq/watch sets it.
        "enabled": ("no", _boolean, _show_boolean),
        # Seconds without events before the watcher looks at what changed:
        # an editor's save, or a package's run of changes, is one look and
        # one mail.  0: look at once.
        "quiet_window": ("5", _count, str),
        # Alert mails the watcher sends in any hour, at most; what is held
        # back goes in the next one.
        "mails_per_hour": ("6", _at_least_one, str),
        # Seconds between two looks at directories left without an inotify
        # watch (fs.inotify.max_user_watches reached).
        "poll_interval": ("60", _seconds, str),
    },
}


class Config:
    """The effective configuration: every key, from the file or its default."""

    def __init__(self, source, values, origins, warnings):
        self.source = source          # bytes path, or None when no file was read
        self._values = values         # (section, key) -> parsed value
        self._origins = origins       # (section, key) -> line number in source
        self.warnings = warnings      # list of "FILE:LINE: text" strings

    def get(self, section, key):
        return self._values[(section, key)]

    @property
    def exclude(self):
        return self.get("snapshot", "exclude")

    def effective(self):
        """``(section, key, shown value, origin)`` for every known key."""
        rows = []
        for section, keys in SCHEMA.items():
            for key, (_default, _parse, show) in keys.items():
                line = self._origins.get((section, key))
                origin = ("default" if line is None
                          else f"{os.fsdecode(self.source)}:{line}")
                rows.append((section, key, show(self.get(section, key)), origin))
        return rows


_SECTION_RE = re.compile(r"\s*\[([^\]]+)\]")
_KEY_RE = re.compile(r"([^\s=:#;\[][^=:]*?)\s*[=:]")


def _shown(name):
    """A section name from the file, fit for a message: it may hold
    control characters (an ESC sequence would reach the terminal)."""
    return escape(name.encode("utf-8"))


def _key_lines(text):
    """Map (section, key) and (section, None) to the line they are on.

    configparser keeps no line numbers; this scan follows its syntax
    closely enough for the headers and keys it accepted.
    """
    lines = {}
    section = None
    # Lines as configparser reads them (it splits at "\n" only, where
    # str.splitlines() would split at "\r", "\v" and more as well).
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line.lstrip()[:1] in ("#", ";"):
            continue
        match = _SECTION_RE.match(line)
        if match:
            section = match.group(1)
            lines.setdefault((section, None), number)
            continue
        if line[:1].isspace():  # continuation of a multi-line value
            continue
        match = _KEY_RE.match(line)
        if match and section is not None:
            lines.setdefault((section, match.group(1).strip().lower()), number)
    return lines


def _parse_errors(name, text, exc):
    """configparser's exception as a ConfigError with line numbers."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return ConfigError.single(name, exc.lineno,
                                  "a [section] header must come before any key")
    if isinstance(exc, configparser.ParsingError):
        # exc.errors holds repr()s of the lines; show the lines themselves.
        source = text.split("\n")
        return ConfigError([(name, lineno, f"cannot parse {source[lineno - 1].strip()!r}"
                             " (expected 'key = value')")
                            for lineno, _line in exc.errors])
    if isinstance(exc, configparser.DuplicateSectionError):
        return ConfigError.single(name, exc.lineno,
                                  f"section [{_shown(exc.section)}] given twice")
    if isinstance(exc, configparser.DuplicateOptionError):
        return ConfigError.single(name, exc.lineno,
                                  f"key {exc.option!r} given twice in [{_shown(exc.section)}]")
    return ConfigError.single(name, None, str(exc))


def load(path, required=False):
    """Read the configuration at ``path`` (bytes).

    A missing file gives the defaults, unless ``required`` (the admin named
    it with --config), which makes it an error.
    """
    name = os.fsdecode(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        if required:
            raise ConfigError.single(name, None, "no such file") from None
        return _build(None, None, {}, {}, [])
    except OSError as exc:
        raise ConfigError.single(name, None, f"cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError.single(name, line, "not valid UTF-8") from None

    # default_section is set to a name no file can contain, so that a
    # [DEFAULT] section is reported as unknown instead of silently
    # applying to every section.
    parser = configparser.ConfigParser(interpolation=None, strict=True,
                                       default_section="\0")
    try:
        parser.read_string(text, source=name)
    except configparser.Error as exc:
        raise _parse_errors(name, text, exc) from None
    return _build(path, name, parser, _key_lines(text), [])


def _build(path, name, parser, lines, warnings):
    values = {}
    origins = {}
    problems = []
    for section in (parser.sections() if parser else []):
        if section not in SCHEMA:
            warnings.append(f"{name}:{lines.get((section, None), '?')}: "
                            f"unknown section [{_shown(section)}], ignored")
            continue
        for key in parser[section]:
            if key not in SCHEMA[section]:
                warnings.append(f"{name}:{lines.get((section, key), '?')}: "
                                f"unknown key {key!r} in [{section}], ignored")
    for section, keys in SCHEMA.items():
        for key, (default, parse, _show) in keys.items():
            text = default
            if parser and parser.has_option(section, key):
                text = parser.get(section, key)
                origins[(section, key)] = lines.get((section, key), "?")
            try:
                values[(section, key)] = parse(text)
            except ValueError as exc:
                problems.append((name, origins.get((section, key)),
                                 f"[{section}] {key}: {exc}"))
    if problems:
        raise ConfigError(problems)
    return Config(path, values, origins, warnings)
