# SPDX-License-Identifier: GPL-2.0-or-later
"""Throwaway Debian chroots for package tests and the demo.

A minbase debootstrap of bookworm is made once and kept as a tarball in
the cache directory (``$SYSTRAQ_TEST_CACHE``, default
/var/cache/systraq-tests, outside the repository); each chroot is unpacked
from it in seconds.  Commands run in a private mount namespace
(``unshare --mount``) where /proc and /dev are mounted and the host's apt
download cache is shared: the mounts vanish with the command, so nothing
stays mounted on the host and removing the tree is always safe.

Needs root (debootstrap, chroot, mount namespaces).
"""

import fcntl
import os
import shlex
import shutil
import subprocess
import tempfile
import time

SUITE = os.environ.get("SYSTRAQ_TEST_SUITE", "bookworm")
MIRROR = os.environ.get("SYSTRAQ_TEST_MIRROR", "http://deb.debian.org/debian")
CACHE = os.environ.get("SYSTRAQ_TEST_CACHE", "/var/cache/systraq-tests")
# A base older than this is made anew, so that its apt lists and packages
# do not drift too far from the archive.
MAX_AGE = 7 * 24 * 3600

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

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


def _base_tarball():
    """The cached base system, made by debootstrap when missing or stale."""
    os.makedirs(CACHE, exist_ok=True)
    tarball = os.path.join(CACHE, f"{SUITE}-minbase.tar")
    with open(os.path.join(CACHE, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if time.time() - os.stat(tarball).st_mtime < MAX_AGE:
                return tarball
        except FileNotFoundError:
            pass
        work = tempfile.mkdtemp(prefix="debootstrap-", dir=CACHE)
        try:
            subprocess.run(["debootstrap", "--variant=minbase", SUITE,
                            os.path.join(work, "root"), MIRROR],
                           check=True, stdout=subprocess.DEVNULL)
            subprocess.run(["tar", "-C", os.path.join(work, "root"),
                            "--numeric-owner", "-cf", tarball + ".new", "."], check=True)
            os.rename(tarball + ".new", tarball)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return tarball


class Chroot:
    """A Debian system in a directory, to install and run packages in."""

    def __init__(self, parent):
        self.path = os.path.join(parent, "root")
        self.archives = os.path.join(CACHE, "apt-archives")
        os.makedirs(os.path.join(self.archives, "partial"), exist_ok=True)
        os.makedirs(self.path)
        subprocess.run(["tar", "-C", self.path, "--numeric-owner", "-xf",
                        _base_tarball()], check=True)
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
        stderr.
        """
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
                f"in chroot: {command!r}{' as ' + user if user else ''} exited "
                f"{result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def apt_install(self, *packages, options=""):
        """apt-get install, resolving dependencies from the archive.

        The download cache is shared with every other chroot of the host:
        while another one's apt-get holds its lock, wait for it."""
        self.run("apt-get update -qq")
        names = " ".join(shlex.quote(p) for p in packages)
        command = f"apt-get install -y -q --no-install-recommends {options} {names}"
        for _ in range(120):
            result = self.run(command, check=False)
            if "Could not get lock /var/cache/apt/archives/lock" not in result.stderr:
                break
            time.sleep(5)
        return self.run(command) if result.returncode else result

    def destroy(self):
        shutil.rmtree(self.path)
