# SPDX-License-Identifier: GPL-2.0-or-later
import os

from systraq.spool import Spool


def test_batches_are_pending_until_marked_delivered(root):
    spool = Spool(root.settings())
    assert spool.pending() == []
    first = spool.add("snapshot", [{"path": "/etc/passwd", "change": "content"}], now=1000.5, run="abc1")
    second = spool.add("contents", [{"a": 1}, {"b": "\udcff"}], now=2000.25)
    assert spool.add("snapshot", []) is None
    pending = spool.pending()
    assert [b.name for b in pending] == [first, second]
    assert [b.source for b in pending] == ["snapshot", "contents"]
    assert pending[0].created == "19700101T001640.500000Z"
    assert spool.records(pending[1]) == [{"a": 1}, {"b": "\udcff"}]

    spool.mark_delivered(pending[:1])
    assert [b.name for b in spool.pending()] == [second]
    assert [b.name for b in spool.delivered()] == [first]
    assert spool.records(spool.delivered()[0])[0]["change"] == "content"


def test_interrupted_writes_are_not_pending(root):
    settings = root.settings()
    spool = Spool(settings)
    spool.add("snapshot", [{"x": 1}])
    # What a run killed during atomic_write leaves behind.
    with open(os.path.join(settings.spool_dir, b".tmp-20261121T000000.000000Z-snapshot-1.jsonl.0a1b2c"), "wb") as f:
        f.write(b'{"half')
    assert len(spool.pending()) == 1


def test_spool_directory_is_closed_to_others(root):
    settings = root.settings()
    old = os.umask(0o022)
    try:
        Spool(settings).add("snapshot", [{"x": 1}])
    finally:
        os.umask(old)
    assert os.stat(settings.spool_dir).st_mode & 0o777 == 0o750
    (batch,) = Spool(settings).pending()
    assert os.stat(batch.path).st_mode & 0o777 == 0o640


def test_batches_carry_the_run_that_wrote_them(root):
    spool = Spool(root.settings())
    spool.add("snapshot_pub", [{"x": 1}], run="0123abcd")
    assert spool.pending()[0].run == "0123abcd"
    assert spool.has_run("0123abcd") and not spool.has_run("ffff")
    spool.mark_delivered(spool.pending())
    assert spool.has_run("0123abcd")


def test_delivered_batches_older_than_the_retention_are_pruned(root):
    spool = Spool(root.settings())
    old = spool.add("contents", [{"diff": "-a\n+b\n"}], now=1_000_000.0)
    new = spool.add("contents", [{"diff": "-b\n+c\n"}], now=1_000_000.0 + 61 * 86400)
    pending = spool.add("contents", [{"diff": "-c\n+d\n"}], now=1_000_000.0)
    spool.mark_delivered([b for b in spool.pending() if b.name in (old, new)])
    assert spool.prune_delivered(1_000_000.0 + 60 * 86400) == 1
    assert [b.name for b in spool.delivered()] == [new]
    # What was not delivered is never pruned, however old.
    assert [b.name for b in spool.pending()] == [pending]
