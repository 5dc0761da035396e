# SPDX-License-Identifier: GPL-2.0-or-later
"""Hardening tests: faults, load and hostile input (doc/hardening.md).

Two scales: ``make check`` runs them reduced (SYSTRAQ_HARDENING unset or
"reduced"), ``make hardening`` in full (SYSTRAQ_HARDENING=full), with the
counts the issue asks for (50 SIGKILLs per job, 1,000,000 files...).

Every test records what it measured with the ``record`` fixture; the
records of a run go, one JSON object per line, to the file named by
SYSTRAQ_HARDENING_RESULTS (default build/hardening-results.jsonl), from
which tools/hardening-table writes the results table of doc/hardening.md.
A test that fails records nothing, so the table only ever shows passes
that happened.
"""

import json
import os
import resource
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FULL = os.environ.get("SYSTRAQ_HARDENING", "reduced") == "full"
RESULTS = os.environ.get("SYSTRAQ_HARDENING_RESULTS",
                         os.path.join(ROOT, "build", "hardening-results.jsonl"))


def scaled(reduced, full):
    """The count a test uses: ``full`` under ``make hardening``."""
    return full if FULL else reduced


@pytest.fixture
def scale():
    return scaled


class Recorder:
    """Figures of one test, written when the test passed."""

    def __init__(self, nodeid):
        self.nodeid = nodeid
        self.figures = {}
        self.start = time.monotonic()

    def __call__(self, **figures):
        """Add figures: runs, files, seconds, peak_rss_mb, or any other
        name (shown as a column-free "name value" in the table)."""
        self.figures.update(figures)

    def write(self):
        entry = {"test": self.nodeid, "scale": "full" if FULL else "reduced",
                 "seconds": round(time.monotonic() - self.start, 2)}
        entry.update(self.figures)
        os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
        with open(RESULTS, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry, sort_keys=True) + "\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    recorder = getattr(item, "_systraq_recorder", None)
    if recorder is not None and report.when == "call" and report.passed:
        recorder.write()


@pytest.fixture
def record(request):
    """``record(runs=50, files=1000, peak_rss_mb=12.3)``: figures for the
    results table; the test's own wall time is added."""
    recorder = Recorder(request.node.nodeid)
    request.node._systraq_recorder = recorder
    return recorder


def peak_rss_mb(children=True):
    """Peak RSS in MB of the waited-for children (or of this process)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)
