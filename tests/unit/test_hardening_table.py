# SPDX-License-Identifier: GPL-2.0-or-later
"""tools/hardening-table: the results table is written from the records."""

import json
import os
import subprocess
import sys

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "hardening-table")


def run(tmp_path, entries, doc_text):
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(e) + "\n" for e in entries))
    doc = tmp_path / "doc.md"
    doc.write_text(doc_text)
    proc = subprocess.run([sys.executable, TOOL, str(results), str(doc)],
                          capture_output=True, text=True)
    return proc, doc.read_text()


def test_table_replaces_what_lies_between_the_markers(tmp_path):
    entries = [
        {"test": "tests/hardening/test_b.py::test_kill", "scale": "full",
         "runs": 50, "seconds": 12.5, "lost": 0},
        {"test": "tests/hardening/test_a.py::test_tree", "scale": "reduced",
         "files": 1000000, "seconds": 1.0, "peak_rss_mb": 61.2},
        # A later record of the same test replaces the earlier one.
        {"test": "tests/hardening/test_b.py::test_kill", "scale": "full",
         "runs": 50, "seconds": 11.0, "lost": 0},
    ]
    proc, text = run(tmp_path, entries,
                     "intro\n<!-- results -->\nold table\n<!-- /results -->\nend\n")
    assert proc.returncode == 0, proc.stderr
    assert "old table" not in text
    assert text.startswith("intro\n<!-- results -->\n| test |")
    assert text.endswith("<!-- /results -->\nend\n")
    rows = [line for line in text.splitlines() if line.startswith("| test_")]
    assert rows == [
        "| test_a.py::test_tree | reduced |  | 1,000,000 | 1 | 61.2 |  | pass |",
        "| test_b.py::test_kill | full | 50 |  | 11 |  | lost 0 | pass |",
    ]


def test_a_document_without_markers_is_refused(tmp_path):
    proc, text = run(tmp_path, [], "no markers here\n")
    assert proc.returncode == 2
    assert "markers" in proc.stderr
    assert text == "no markers here\n"
