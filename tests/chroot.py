# SPDX-License-Identifier: GPL-2.0-or-later
"""Throwaway Debian chroots of each supported release, for building and
testing the package.

A minbase debootstrap of each release is made once and kept as a tarball
in the cache directory (``$SYSTRAQ_TEST_CACHE``, default
/var/cache/systraq-tests, outside the repository); a *layer* is that base
with more packages installed (the build essentials, the test tools),
cached the same way.  Each chroot is unpacked from one of them in
seconds.  Commands run in a private mount namespace (``unshare --mount``)
where /proc and /dev are mounted and the host's apt download cache is
shared: the mounts vanish with the command, so nothing stays mounted on
the host and removing the tree is always safe.

The release is ``$SYSTRAQ_TEST_SUITE`` (trixie, the stable release, when
unset).  The mirror is the host's own Debian mirror, as its apt sources
name it (a local mirror or a caching proxy is then used, as the admin's
other tools use it), or ``$SYSTRAQ_TEST_MIRROR``.

Needs root (debootstrap, chroot, mount namespaces).
"""

import fcntl
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# The releases systraq supports, the stable one first, and the systraq
# each of them ships: the old shell-script package, which an upgrade
# replaces.
RELEASES = ("trixie", "sid", "bookworm")
OLD_SYSTRAQ = {"bookworm": "20201231-1", "trixie": "20201231-5", "sid": "20260328-1"}
# Where each old version linked its report parts from (its postinst).
OLD_PARTS_DIR = {"20201231-1": "/usr/share/systraq", "20201231-5": "/usr/libexec/systraq",
                 "20260328-1": "/usr/libexec/systraq"}

SUITE = os.environ.get("SYSTRAQ_TEST_SUITE", "trixie")
CACHE = os.environ.get("SYSTRAQ_TEST_CACHE", "/var/cache/systraq-tests")
# A base older than this is made anew, so that its apt lists and packages
# do not drift too far from the archive.
MAX_AGE = 7 * 24 * 3600

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# A command line that runs apt, which takes the shared download cache's lock.
_APT = re.compile(r"\bapt(?:-get)?\s")

# apt settings of every test chroot.  The mirror may be a dated one (a
# local mirror synced now and then, snapshot.debian.org) whose Release
# files carry a Valid-Until that has passed: sid's is a week after its
# date.  A test wants the packages of that mirror, not a refusal.
APT_CONF = """\
// systraq's test chroots (tests/chroot.py)
Acquire::Check-Valid-Until "false";
APT::Install-Recommends "false";
Acquire::Languages "none";
"""

# Runs inside the new mount namespace: mount what a Debian system expects,
# then enter the chroot with a clean environment.
_ENTER = r"""
set -e
root=$1; archives=$2; shift 2
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --bind "$archives" "$root/var/cache/apt/archives"
exec chroot "$root" /usr/bin/env -i "$@"
"""


class ChrootError(Exception):
    """A chroot could not be made (no mirror, debootstrap failed)."""


def _host_mirror():
    """The host's Debian mirror: the URI its apt sources fetch Debian's
    main archive from (Origin and Label "Debian", as in the Release
    file), read with apt's own parser."""
    found = subprocess.run(
        ["apt-get", "indextargets", "--format",
         "$(REPO_URI) $(ORIGIN) $(LABEL) $(TARGET_OF) $(RELEASE)"],
        capture_output=True, text=True, check=False).stdout.split("\n")
    for line in found:
        fields = line.split()
        if len(fields) == 5 and fields[1:4] == ["Debian", "Debian", "deb"] \
                and "-" not in fields[4]:
            return fields[0].rstrip("/")
    raise ChrootError("no Debian mirror in the host's apt sources (run 'apt-get update',"
                      " or set SYSTRAQ_TEST_MIRROR)")


def mirror():
    return os.environ.get("SYSTRAQ_TEST_MIRROR") or _host_mirror()


def _host_proxy():
    """The host's apt proxy for http, if it has one."""
    out = subprocess.run(["apt-config", "shell", "P", "Acquire::http::Proxy"],
                         capture_output=True, text=True, check=False).stdout
    value = shlex.split(out.partition("=")[2]) if out.startswith("P=") else []
    return value[0] if value and value[0] not in ("", "DIRECT", "false") else None


class _Locked:
    """A lock of the cache, held while one tarball is checked or made."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        os.makedirs(CACHE, exist_ok=True)
        self.handle = open(os.path.join(CACHE, f".lock-{self.name}"), "w")
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self.handle.close()


def _fresh(path, newer_than=None):
    try:
        made = os.stat(path).st_mtime
    except FileNotFoundError:
        return False
    if newer_than is not None and made < os.stat(newer_than).st_mtime:
        return False
    return time.time() - made < MAX_AGE


def _pack(root, tarball):
    subprocess.run(["tar", "-C", root, "--numeric-owner", "-cf", tarball + ".new", "."],
                   check=True)
    os.rename(tarball + ".new", tarball)


def base_tarball(release=None):
    """The cached base system of ``release``, made by debootstrap when
    missing or stale."""
    release = release or SUITE
    tarball = os.path.join(CACHE, f"{release}-minbase.tar")
    with _Locked(f"{release}-minbase"):
        if _fresh(tarball):
            return tarball
        work = tempfile.mkdtemp(prefix="debootstrap-", dir=CACHE)
        root = os.path.join(work, "root")
        env = dict(os.environ)
        proxy = _host_proxy()
        if proxy:
            env["http_proxy"] = proxy
        try:
            done = subprocess.run(["debootstrap", "--variant=minbase", release, root, mirror()],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, env=env, check=False)
            if done.returncode:
                raise ChrootError(f"debootstrap {release} failed:\n{done.stderr[-3000:]}")
            conf = os.path.join(root, "etc/apt/apt.conf.d/00systraq-tests")
            with open(conf, "w") as handle:
                handle.write(APT_CONF)
                if proxy:
                    handle.write(f'Acquire::http::Proxy "{proxy}";\n')
            # debootstrap leaves its downloads in the base; the chroots
            # share the host cache instead.
            subprocess.run(["find", os.path.join(root, "var/cache/apt/archives"),
                            "-name", "*.deb", "-delete"], check=True)
            _pack(root, tarball)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return tarball


def layer_tarball(release, name, packages):
    """The base of ``release`` with ``packages`` installed, cached as
    ``RELEASE-NAME-HASH.tar``: the hash follows the package list, and a
    new base makes the layer anew."""
    base = base_tarball(release)
    key = hashlib.sha256(" ".join(sorted(packages)).encode()).hexdigest()[:12]
    tarball = os.path.join(CACHE, f"{release}-{name}-{key}.tar")
    with _Locked(f"{release}-{name}"):
        if _fresh(tarball, newer_than=base):
            return tarball
        for old in os.listdir(CACHE):
            if old.startswith(f"{release}-{name}-") and old.endswith(".tar"):
                os.unlink(os.path.join(CACHE, old))
        work = tempfile.mkdtemp(prefix=f"layer-{name}-", dir=CACHE)
        try:
            box = Chroot(work, release=release, tarball=base)
            box.apt_install(*packages)
            box.run("apt-get clean")
            os.unlink(box.host("/usr/sbin/policy-rc.d"))
            _pack(box.path, tarball)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return tarball


class Chroot:
    """A Debian system in a directory, to install and run packages in."""

    def __init__(self, parent, release=None, tarball=None):
        self.release = release or SUITE
        self.path = os.path.join(parent, "root")
        self.archives = os.path.join(CACHE, "apt-archives")
        os.makedirs(os.path.join(self.archives, "partial"), exist_ok=True)
        os.makedirs(self.path)
        subprocess.run(["tar", "-C", self.path, "--numeric-owner", "-xf",
                        tarball or base_tarball(self.release)], check=True)
        shutil.copy("/etc/resolv.conf", self.host("/etc/resolv.conf"))
        # No daemon a package test installs may start in the chroot.
        self.write("/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", mode=0o755)

    def host(self, path):
        """Where the chroot's ``path`` is on the host."""
        return os.path.join(self.path, path.lstrip("/"))

    def write(self, path, data, mode=0o644):
        target = self.host(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb" if isinstance(data, bytes) else "w") as handle:
            handle.write(data)
        os.chmod(target, mode)

    def read(self, path):
        with open(self.host(path), "rb") as handle:
            return handle.read()

    def exists(self, path):
        return os.path.lexists(self.host(path))

    def copy_in(self, source, path):
        shutil.copy(source, self.host(path))

    def run(self, command, user=None, check=True, input=None, env=None, net=False):
        """Run ``command`` (a shell string) in the chroot, as ``user`` if given.

        ``net``: in a network namespace of its own (no interface up, no
        socket of the host's), so that what listens is only what the
        command starts.  Returns the CompletedProcess with text stdout and
        stderr.  A command that runs apt-get waits for the host's lock of
        the shared download cache (see ``apt``).
        """
        if _APT.search(command) and not getattr(self, "_apt_locked", False):
            return self.apt(command, check=check, user=user, input=input, env=env, net=net)
        variables = {"PATH": PATH, "LC_ALL": "C.UTF-8", "HOME": "/root",
                     "DEBIAN_FRONTEND": "noninteractive", **(env or {})}
        argv = [f"{k}={v}" for k, v in variables.items()]
        if user:
            argv += ["runuser", "-u", user, "--"]
        argv += ["/bin/sh", "-c", command]
        result = subprocess.run(
            ["unshare", "--mount", *(["--net"] if net else []), "--propagation", "private", "--",
             "/bin/sh", "-c", _ENTER, "enter", self.path, self.archives, *argv],
            input=input, capture_output=True, text=True, errors="backslashreplace")
        if check and result.returncode != 0:
            raise AssertionError(
                f"in {self.release} chroot: {command!r}{' as ' + user if user else ''} exited "
                f"{result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def apt(self, command, check=True, **options):
        """An apt-get (or apt) command line, run while this host's lock of
        the shared download cache is held: chroots of every release share
        it, and apt gives up at once on a held archives lock."""
        with open(os.path.join(self.archives, ".systraq-lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._apt_locked = True
            try:
                return self.run(command, check=check, **options)
            finally:
                self._apt_locked = False

    def apt_install(self, *packages, options=""):
        """apt-get install, resolving dependencies from the archive."""
        self.run("apt-get update -qq")
        names = " ".join(shlex.quote(p) for p in packages)
        return self.apt(f"apt-get install -y -q --no-install-recommends {options} {names}")

    def processes(self):
        """Pids of the processes whose root is this chroot: what a command
        left running in the background (a job the postinst detached, a
        test's gate that never opened)."""
        mine = os.path.realpath(self.path)
        found = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    if os.readlink(f"/proc/{pid}/root") == mine:
                        found.append(int(pid))
                except OSError:
                    pass    # gone, or a kernel thread
        return found

    def stop(self, timeout=60):
        """Kill what still runs in the chroot: no process of a test
        outlives it, whatever the test left behind."""
        deadline = time.monotonic() + timeout
        while (left := self.processes()):
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            assert time.monotonic() < deadline, f"processes in {self.path} survive SIGKILL: {left}"
            time.sleep(0.05)

    def destroy(self, timeout=60):
        """Stop what still runs in the chroot, then remove it."""
        self.stop(timeout)
        shutil.rmtree(self.path)


def _main(argv):
    """``python3 -m tests.chroot base RELEASE`` or ``layer RELEASE NAME
    PACKAGE...``: print the cached tarball's path, making it if needed;
    ``mirror``: print the mirror.  For the shell tools in tools/."""
    try:
        if argv[:1] == ["mirror"]:
            print(mirror())
        elif argv[:1] == ["base"] and len(argv) == 2:
            print(base_tarball(argv[1]))
        elif argv[:1] == ["layer"] and len(argv) >= 4:
            print(layer_tarball(argv[1], argv[2], argv[3:]))
        else:
            print("usage: python3 -m tests.chroot mirror | base RELEASE"
                  " | layer RELEASE NAME PACKAGE...", file=sys.stderr)
            return 2
    except (ChrootError, AssertionError, subprocess.CalledProcessError) as error:
        print(f"tests.chroot: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
