# SPDX-License-Identifier: GPL-2.0-or-later
"""What the load tests share: a fake root for ``systraq --root``, fast
builders of big trees, and a measured run of the real program.

Every systraq run is a child process started through a small wrapper
that waits for it and prints the ``RUSAGE_CHILDREN`` of the wrapper
itself: its ``ru_maxrss`` is the peak RSS of the largest process of the
run (systraq or one of the scan workers it forked and waited for), and
a fresh wrapper per run keeps one run's peak from hiding the next one's
(this process's own RUSAGE_CHILDREN only ever grows).
"""

import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PYTHON = "/usr/bin/python3"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
       "PYTHONPATH": ROOT, "HOME": "/nonexistent"}

_WRAPPER = r"""
import json, resource, subprocess, sys, time
start = time.monotonic()
done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
seconds = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
json.dump({"rc": done.returncode, "seconds": seconds, "maxrss_kb": usage.ru_maxrss,
           "stdout": done.stdout.decode("utf-8", "replace")[-4000:],
           "stderr": done.stderr.decode("utf-8", "replace")[-4000:]}, sys.stdout)
"""


class Run:
    def __init__(self, data):
        self.rc = data["rc"]
        self.seconds = round(data["seconds"], 2)
        self.peak_mb = round(data["maxrss_kb"] / 1024, 1)
        self.stdout = data["stdout"]
        self.stderr = data["stderr"]

    def __repr__(self):
        return (f"Run(rc={self.rc}, {self.seconds} s, {self.peak_mb} MB, "
                f"stderr={self.stderr[-500:]!r})")


def measure(argv):
    """Run ``argv`` in a fresh wrapper; its exit status, time and peak RSS."""
    out = subprocess.run([PYTHON, "-c", _WRAPPER] + list(argv), env=ENV, check=True,
                         stdout=subprocess.PIPE).stdout
    return Run(json.loads(out))


def systraq(root, *args):
    """A measured ``systraq --root ROOT ARGS`` from this source tree."""
    return measure([PYTHON, "-m", "systraq", "--root", os.fspath(root)] + list(args))


def fake_root(path, watched=(), contents=()):
    """A root for ``systraq --root``: accounts, the snapshot lists naming
    ``watched`` (logical paths, both modes) and filetraq.tail.conf naming
    ``contents``."""
    path = os.fspath(path)
    for directory in ("etc/systraq", "var/lib/systraq", "root"):
        os.makedirs(os.path.join(path, directory), exist_ok=True)
    with open(os.path.join(path, "etc/passwd"), "w", encoding="ascii") as out:
        out.write("root:x:0:0:root:/root:/bin/bash\n"
                  "debian-systraq:x:999:999::/var/lib/systraq:/usr/sbin/nologin\n")
    with open(os.path.join(path, "etc/group"), "w", encoding="ascii") as out:
        out.write("root:x:0:\ndebian-systraq:x:999:\n")
    for name in ("snapshot_pub.list", "snapshot_root.list"):
        with open(os.path.join(path, "etc/systraq", name), "w", encoding="ascii") as out:
            out.write("".join(f"{p}\n" for p in watched))
    with open(os.path.join(path, "etc/systraq/filetraq.tail.conf"), "w",
              encoding="ascii") as out:
        out.write("".join(f"{p}\n" for p in contents))
    return path


def build_tree(top, files, per_directory=1000, content=b"line %d\n"):
    """``files`` small files below ``top``, ``per_directory`` in each of
    the numbered directories.  os.open/os.write/os.close in one loop:
    about 10,000 files a second here, where open() and a with block take
    about twice as long."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    write, close, openfile = os.write, os.close, os.open
    for number in range((files + per_directory - 1) // per_directory):
        directory = os.path.join(top, f"d{number:05d}")
        os.makedirs(directory)
        for index in range(min(per_directory, files - number * per_directory)):
            fd = openfile(f"{directory}/f{index:04d}", flags, 0o644)
            write(fd, content % index)
            close(fd)


def free_disk_mb(path):
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize // (1 << 20)


def run_python(code, *args):
    """``code`` in a fresh /usr/bin/python3 with this source tree on its
    path; its stdout parsed as JSON."""
    out = subprocess.run([PYTHON, "-c", code] + [os.fspath(a) for a in args], env=ENV,
                         check=True, stdout=subprocess.PIPE, stderr=sys.stderr).stdout
    return json.loads(out)
