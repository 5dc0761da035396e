# SPDX-License-Identifier: GPL-2.0-or-later
"""What the benchmarks in bench/ share: running a contender and measuring it.

Each contender runs as a child process under GNU time(1), which gives its
CPU time and the peak RSS of it and the descendants it waited for; the
wall time is taken here.
"""

import subprocess
import tempfile
import time

ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
MB = 1024 * 1024
TIME = "/usr/bin/time"


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


def warm(file_list):
    """Read every file named in the NUL-separated ``file_list`` once."""
    with open(file_list, "rb") as names:
        return run_measured(["xargs", "-0", "-P2", "cat"], stdin=names)


def verdict(ok):
    return "PASS" if ok else "FAIL"
