# SPDX-License-Identifier: GPL-2.0-or-later
"""The change record kinds: encoding, description, rank, and their rules."""

import json

import pytest

from systraq import records


def test_a_record_is_its_spool_object_and_loads_back_as_its_kind():
    made = records.make("snapshot", "content", "/etc/passwd", mode="pub", size_before=10,
                        size_after=12, time="2026-12-02T10:00:00Z")
    encoded = json.loads(json.dumps(made.to_dict()))
    assert encoded == {"source": "snapshot", "change": "content", "path": "/etc/passwd",
                       "mode": "pub", "size_before": 10, "size_after": 12,
                       "time": "2026-12-02T10:00:00Z"}
    loaded = records.load(encoded)
    assert type(loaded) is records.FileChange and loaded == made
    assert loaded["path"] == "/etc/passwd" and loaded.get("flags") is None
    assert loaded.describe() == ["/etc/passwd: content changed (10 -> 12 bytes)"]


@pytest.mark.parametrize("source,change,kind", [
    ("snapshot", "added", records.FileChange),
    ("contents", "created", records.ContentChange),
    ("contents_root", "keys", records.ContentChange),
    ("packages", "unexplained", records.PackageFinding),
    ("archive_hook", "differed from its package in the archive before an upgrade",
     records.PackageFinding),
    ("audit", "setuid added", records.AuditFinding),
    ("localsums", "changed", records.LocalSumFinding),
    ("snapshot", "baseline", records.Baseline),
    ("watch", "state damaged", records.StateDamaged),
    ("from-the-future", "teleported", records.Record),
])
def test_each_source_and_change_has_its_kind(source, change, kind):
    assert type(records.load({"source": source, "change": change})) is kind


def test_a_kind_of_a_newer_systraq_is_shown_as_its_data_never_dropped():
    record = records.load({"source": "future", "change": "teleported", "path": "/etc/x",
                           "where": "mars"})
    assert record.describe() == ['/etc/x: teleported {"where": "mars"}']
    assert record.to_dict()["where"] == "mars"


def test_a_root_record_never_carries_a_diff():
    with pytest.raises(ValueError, match="root job holds a diff"):
        records.make("contents_root", "content", "/root/.bashrc", mode="root",
                     diff="--- a\n+++ b\n")
    keys = records.make("contents_root", "keys", "/root/.ssh/authorized_keys", mode="root",
                        keys=["+ ssh-ed25519 SHA256:abc"])
    assert keys.secret and keys.describe()[1] == "  + ssh-ed25519 SHA256:abc"


def test_ranks_and_notes():
    assert records.make("audit", "uid 0").rank == records.CRITICAL
    assert records.make("audit", "setuid removed").is_note
    assert records.make("snapshot", "mode", "/x", flags=["setuid gained"]).rank == records.SERIOUS
    assert records.make("contents", "world-readable secret", "/x").rank == records.SERIOUS
    assert records.make("packages", "without sums").rank == records.MINOR
    assert records.make("packages", "explained", package="a").is_note
    assert records.make("snapshot", "baseline", count=3).is_note
    assert not records.make("snapshot", "state damaged").is_note
    assert records.make("localsums", "missing", "/usr/local/bin/x").rank == records.SERIOUS
    # A change the collector tied to a package operation is news.
    assert records.make("snapshot", "content", "/etc/x",
                        explained={"label": "upgraded 10:32 by apt: x 1 -> 2"}).is_note


def test_the_audit_and_the_report_word_a_baseline_each_their_way():
    baseline = records.load({"change": "baseline", "count": 3}, "audit")
    assert baseline.line().startswith("audit baseline: 3 setuid")
    assert baseline.describe() == ["audit: first run, 3 paths recorded"]
