# SPDX-License-Identifier: GPL-2.0-or-later
"""Baseline digests (baselines.py): the digest follows the state, each
mail's "against" is the previous mail's "left", and a state rewritten
between two runs shows, in the mail and as a warning."""

import email
import email.policy
import os
import re

import pytest

from systraq import baselines, config, delivery, report, snapshot, statefile
from tests.unit.test_report import HOST, Log, Probe, mails, sendmail

NOW = 1_795_242_600          # 2026-11-21 06:30 UTC
LINE = re.compile(r"^  (\w+): against (\S+), left (\S+) \((.*)\)$", re.M)


# Times in reports are shown in UTC (the fixture is in conftest.py).
pytestmark = pytest.mark.usefixtures("utc")


@pytest.fixture
def watched(root):
    root.write("/etc/systraq/snapshot_pub.list", "/etc/watched\n")
    root.write("/etc/systraq/snapshot_root.list", "/etc/secret\n")
    root.write("/etc/systraq/systraq.conf", "")
    root.write("/etc/watched/a", "one\n")
    root.write("/etc/secret/shadow", "root:$y$secret:1::::::\n", mode=0o600)
    return root


def settings_config(root):
    settings = root.settings()
    return settings, config.load(settings.config_file)


def take(root, mode="pub", now=NOW):
    settings, conf = settings_config(root)
    return snapshot.run(settings, conf, mode, now=now, workers=1)


def state(root, mode="pub"):
    return snapshot.state_path(root.settings(), mode)


def mail_lines(root, now, tmp_path, alert=False):
    """Deliver a report (or an alert) and return its baseline lines as
    {name: (against, left, what)}."""
    settings, conf = settings_config(root)
    working, out = sendmail(root, tmp_path)
    before = len(os.listdir(out))
    if alert:
        delivery.alert(settings, conf, now=now, host=HOST, sendmail=working, log=Log())
    else:
        built = report.gather(settings, conf, now=now, host=HOST, probe=Probe())
        delivery.deliver(settings, conf, built, sendmail=working, log=Log())
    new = mails(out)[before:]
    assert len(new) == 1
    body = email.message_from_string(new[0], policy=email.policy.default).get_content()
    return {name: (against, left, what) for name, against, left, what in LINE.findall(body)}


def test_the_digest_follows_the_state_and_nothing_else(watched):
    take(watched)
    path = state(watched)
    first = baselines.digest(path)
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    # A run that finds nothing to say leaves the state, and its digest.
    take(watched, now=NOW + 3600)
    assert baselines.digest(path) == first
    # A change: a new state, a new digest.
    watched.write("/etc/watched/a", "two\n")
    take(watched, now=NOW + 7200)
    second = baselines.digest(path)
    assert second != first
    assert baselines.digest(path + b".absent") == baselines.NONE


def test_the_digest_is_keyed_and_the_root_key_stays_in_the_root_directory(watched):
    take(watched, "root")
    settings = watched.settings()
    path = state(watched, "root")
    assert os.path.dirname(path) == settings.root_state_dir
    key = os.path.join(settings.root_state_dir, baselines.KEY_NAME)
    assert os.stat(key).st_mode & 0o777 == 0o600
    with open(path, "rb") as handle:
        data = handle.read()
    # Not a function of the state alone: without the key, nobody can
    # test a guess of the secret file's digest against the mail.
    import hashlib
    plain = hashlib.sha256(data).hexdigest()
    trailer = data[-32:].hex()
    shown = baselines.digest(path)
    assert shown not in (plain[:16], trailer[:16])
    os.unlink(key)
    assert baselines.digest(path) != shown


def test_each_run_links_what_it_compared_against_to_what_it_left(watched):
    take(watched)
    settings = watched.settings()
    first = baselines.digest(state(watched))
    ledger = baselines.load(settings, "snapshot_pub")
    # The first run: nothing to compare against, then the baseline.
    assert [(link["against"], link["left"]) for link in ledger["links"]] == [
        (baselines.NONE, first)]
    watched.write("/etc/watched/b", "new\n")
    take(watched, now=NOW + 3600)
    second = baselines.digest(state(watched))
    ledger = baselines.load(settings, "snapshot_pub")
    assert [(link["against"], link["left"]) for link in ledger["links"]] == [
        (baselines.NONE, first), (first, second)]
    header = statefile.load_header(state(watched), snapshot.STATE_FORMAT)
    assert header["against"] == first


def test_left_of_one_mail_is_against_of_the_next(watched, tmp_path):
    take(watched)
    take(watched, "root")
    one = mail_lines(watched, NOW, tmp_path)
    assert set(one) == {"snapshot_pub", "snapshot_root"}
    # Nothing changed: the same digest, against and left.
    two = mail_lines(watched, NOW + 86400, tmp_path)
    assert two["snapshot_pub"] == (one["snapshot_pub"][1], one["snapshot_pub"][1], "unchanged")
    # Two runs that wrote the state: against is what the first of them
    # compared with, the previous mail's left.
    watched.write("/etc/watched/a", "two\n")
    take(watched, now=NOW + 90000)
    watched.write("/etc/watched/a", "three\n")
    take(watched, now=NOW + 93600)
    watched.write("/etc/secret/shadow", "root:$y$other:2::::::\n", mode=0o600)
    take(watched, "root", now=NOW + 93600)
    three = mail_lines(watched, NOW + 2 * 86400, tmp_path)
    assert three["snapshot_pub"][0] == two["snapshot_pub"][1]
    assert three["snapshot_pub"][1] == baselines.digest(state(watched))
    assert three["snapshot_pub"][1] != two["snapshot_pub"][1]
    assert three["snapshot_pub"][2] == "2 runs wrote it"
    assert three["snapshot_root"][0] == two["snapshot_root"][1]
    assert three["snapshot_root"][2] == "1 run wrote it"
    # An alert is a mail too: the report after it continues from it.
    watched.write("/etc/watched/a", "four\n")
    take(watched, now=NOW + 180000)
    # The alert needs a critical change pending.
    watched.write("/etc/systraq/systraq.conf", "[check]\ncritical = /etc/watched/*\n")
    four = mail_lines(watched, NOW + 180000, tmp_path, alert=True)
    assert four["snapshot_pub"][0] == three["snapshot_pub"][1]
    five = mail_lines(watched, NOW + 3 * 86400, tmp_path)
    assert five["snapshot_pub"][0] == four["snapshot_pub"][1]
    assert five["snapshot_pub"][2] == "unchanged"


def rewrite_state(path, change):
    """What an intruder with the state's owner's rights does: load the
    state, change a record, write it back with a valid checksum."""
    header, records = statefile.load(path, snapshot.STATE_FORMAT)
    change(records)
    header["count"] = len(records)
    with open(path, "wb") as out:
        for chunk in statefile.encode(header, records):
            out.write(chunk)


def test_a_state_rewritten_between_runs_is_a_jump_and_a_warning(watched, tmp_path):
    take(watched)
    one = mail_lines(watched, NOW, tmp_path)
    # The intruder changes a watched file and makes the state agree, so
    # that the next run finds nothing.
    watched.write("/etc/watched/a", "trojan\n")
    settings, conf = settings_config(watched)
    rewrite_state(state(watched), lambda records: records.pop(b"/etc/watched/a"))
    take(watched, now=NOW + 3600)      # it sees only an "added" file
    # Off the host: the next mail's "against" is not the last "left".
    settings, conf = settings_config(watched)
    built = report.gather(settings, conf, now=NOW + 86400, host=HOST, probe=Probe())
    text = report.render_text(built)
    (against,) = re.findall(r"snapshot_pub: against (\S+),", text)
    assert against != one["snapshot_pub"][1]
    assert "1 change outside systraq" in text
    # On the host: a critical warning saying so.
    (warning,) = [w for w in built.warnings if w.source == "baselines"]
    assert warning.rank == report.CRITICAL
    assert f"left {one['snapshot_pub'][1]}" in warning.text
    assert "snapshot_pub" in warning.text


def test_a_run_killed_before_its_link_is_not_a_break(watched, tmp_path, monkeypatch):
    take(watched)
    one = mail_lines(watched, NOW, tmp_path)
    watched.write("/etc/watched/a", "two\n")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt    # killed after the rename, before the link
    monkeypatch.setattr(baselines, "commit", killed)
    with pytest.raises(KeyboardInterrupt):
        take(watched, now=NOW + 3600)
    monkeypatch.undo()
    take(watched, now=NOW + 7200)
    settings, conf = settings_config(watched)
    built = report.gather(settings, conf, now=NOW + 86400, host=HOST, probe=Probe())
    assert not [w for w in built.warnings if w.source == "baselines"]
    line = [b for b in built.baselines if b.name == "snapshot_pub"][0]
    assert line.against == one["snapshot_pub"][1] and line.breaks == []
    assert line.left == baselines.digest(state(watched))


def test_a_rewritten_ledger_shows_too(watched, tmp_path):
    take(watched)
    mail_lines(watched, NOW, tmp_path)
    settings = watched.settings()
    path = baselines.ledger_path(settings, "snapshot_pub")
    os.unlink(path)
    os.unlink(state(watched))
    take(watched, now=NOW + 3600)
    settings, conf = settings_config(watched)
    built = report.gather(settings, conf, now=NOW + 86400, host=HOST, probe=Probe())
    assert [w.source for w in built.warnings if w.source == "baselines"] == ["baselines"]
    text = report.render_text(built)
    assert "snapshot_pub: against none," in text and "1 change outside systraq" in text
