# SPDX-License-Identifier: GPL-2.0-or-later
"""What the benchmarks in bench/ share: running a contender and measuring it.

Each contender runs as a child process under GNU time(1), which gives its
CPU time and the peak RSS of it and the descendants it waited for; the
wall time is taken here.  HostRoot is the host's own system as a
throwaway chroot (an overlay of its /), to install packages in and run
them without changing the host.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests import chroot as chroots  # noqa: E402

ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
MB = 1024 * 1024
TIME = "/usr/bin/time"
# policy-rc.d that lets systraq's first baseline start (a job that ends
# by itself), as on a real system, and nothing else; and the file that
# exists while that baseline runs.
POLICY = "#!/bin/sh\ncase \"$1\" in systraq-baseline.service) exit 0 ;; esac\nexit 101\n"
MARKER = "/var/lib/systraq/first-baseline"
# Runs in a mount namespace of its own: mounts what a command expects,
# then enters the chroot ($1) with a clean environment.
_ENTER = r"""
set -e
root=$1; shift
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
    HOME=/root "$@"
"""


class Failed(Exception):
    """A contender did not run."""


class Measure:
    """One run of one contender: exit code, wall and CPU seconds, peak RSS."""

    def __init__(self, code, wall, cpu, rss_kb):
        self.code = code
        self.wall = wall
        self.cpu = cpu
        self.rss_kb = rss_kb


def run_measured(argv, stdin=None, stdout=subprocess.DEVNULL, stderr=None, cwd=None):
    """Run ``argv`` (in directory ``cwd`` if given) and measure it (a Measure).

    The peak RSS and CPU times are those GNU time(1) reads for its child.
    wait4() on a child of this process would not do for the RSS: Linux
    counts the memory of the process a child was forked from until the
    child calls exec, so every contender would seem as large as the
    benchmark itself.
    """
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        try:
            proc = subprocess.Popen([TIME, "-f", "%U %S %M", "-o", report.name, *argv],
                                    stdin=stdin, stdout=stdout, stderr=stderr, env=ENV,
                                    cwd=cwd)
        except OSError as exc:
            raise Failed(f"{TIME}: {exc.strerror} (apt-get install time)") from None
        proc.wait()
        wall = time.perf_counter() - start
        lines = report.read().splitlines()
    try:
        user, system, rss_kb = lines[-1].split()
    except (IndexError, ValueError):
        raise Failed(f"{argv[0]} did not run: {' '.join(lines) or 'no report from time'}") \
            from None
    # time(1) reports the child's exit status as its own.
    return Measure(proc.returncode, wall, float(user) + float(system), int(rss_kb))


class HostRoot(chroots.Chroot):
    """The host's root as a throwaway chroot: an overlay of / with its
    upper layer in ``parent``.

    The lower layer is the host's / (not the file systems mounted below
    it), so nothing is written to the host; /sys is mounted in it, and
    /proc and /dev for each command.
    """

    def __init__(self, parent):
        self.release, self.parent = "host", parent
        self.path = os.path.join(parent, "root")
        self.archives = os.path.join(chroots.CACHE, "apt-archives")
        for name in ("root", "upper", "work"):
            os.mkdir(os.path.join(parent, name))
        try:
            subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir=/,upperdir="
                            f"{parent}/upper,workdir={parent}/work", self.path], check=True)
            # run() mounts /proc and /dev for each command.
            subprocess.run(["mount", "-t", "sysfs", "sysfs", self.host("/sys")], check=True)
            self.write("/etc/apt/apt.conf.d/00systraq-tests", chroots.APT_CONF)
            self.write("/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", mode=0o755)
        except BaseException:
            self.destroy()
            raise

    def argv(self, *command):
        """An argv that runs ``command`` in the overlay as root, for
        run_measured: what it measures is the command (the few mounts
        before it cost milliseconds)."""
        return ["unshare", "--mount", "--propagation", "private", "--",
                "/bin/sh", "-c", _ENTER, "enter", self.path, *command]

    def destroy(self, timeout=60):
        """Unmount, then remove the layers: never through the mount (the
        rmdir of a mount point fails)."""
        try:
            self.stop(timeout)
        finally:
            subprocess.run(["umount", "-R", self.path], check=False)
            os.rmdir(self.path)
            shutil.rmtree(os.path.join(self.parent, "upper"))
            shutil.rmtree(os.path.join(self.parent, "work"))
            os.rmdir(self.parent)


def warm(file_list):
    """Read every file named in the NUL-separated ``file_list`` once."""
    with open(file_list, "rb") as names:
        return run_measured(["xargs", "-0", "-P2", "cat"], stdin=names)


def verdict(ok):
    return "PASS" if ok else "FAIL"
