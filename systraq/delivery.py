# SPDX-License-Identifier: GPL-2.0-or-later
"""Delivery: handing the report and the alerts over, exactly once.

This module owns what happens once a report or an alert is built
(report.py): mailing it with sendmail (mail.py), or keeping it in
``/var/lib/systraq/reports/`` when mail is off; the policy of when a
report is mailed; marking the spool's batches delivered only after
delivery succeeded; the syslog lines and the node_exporter textfile; the
alert ledger; and the lock that lets one report or alert deliver at a
time.

Delivery and "nothing lost": the report covers every pending spool
batch.  Only after sendmail exited 0 (or the file was written, when mail
is off) are those batches moved to ``spool/delivered/``; before that a
small journal (``report.sent``) records which batches the mail covered,
so that a run killed between the two finishes the move
(``finish_journal``, first thing of every report and alert) instead of
mailing them again.  A failed delivery keeps the message in
``/var/lib/systraq/reports/`` and leaves the batches pending: the next
run mails them, once.

Alerts (``systraq check``, the watcher): which records were alerted is
kept in ``alerts.state`` until their batches are delivered by the daily
report, which still lists them, marked with the time the alert went out.
"""

import contextlib
import json
import os
import re
import syslog
import time

from systraq import baselines, mail
from systraq import report as reporting
from systraq.errors import RunError
from systraq.fsutil import atomic_write, held
from systraq.report import _load_json, _local, alerts_path, state_path
from systraq.settings import SYSTEM_USER
from systraq.spool import Spool

# Reports kept in reports/ when mail is off.
KEEP_REPORTS = 100
# The suffix of a journal or ledger written before its mail is sent.
NEXT = b".next"
# A report or an alert waits this long for another one to finish.
LOCK_WAIT = 60.0


def journal_path(settings):
    return os.path.join(settings.state_dir, b"report.sent")


def reports_dir(settings):
    return os.path.join(settings.state_dir, b"reports")


def _save_json(path, data, mode=0o640):
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8") + b"\n",
                 mode=mode)


def delivering(settings):
    """``with delivering(settings):`` -- one report or alert at a time:
    both read the spool and mark it."""
    return held(os.path.join(settings.state_dir, b"report.lock"), LOCK_WAIT,
                "systraq report or check")


def due(report, config, forced=False):
    """Whether this report is to be mailed under the configured policy."""
    if forced or report.warnings or config.get("report", "mail_when") == "always":
        return True
    days = config.get("report", "full_report_days")
    last = report.last_mailed
    # An hour of slack: the daily job starts at a random minute.
    return days > 0 and (last is None or report.now - last >= days * 86400 - 3600)


def log_warnings(report, log=None):
    """Each warning as one key=value line to syslog."""
    log = log or _syslog
    for item in report.warnings:
        fields = {"warning": item.change, "source": item.source, "rank": item.rank}
        if item.path is not None:
            fields["path"] = item.path
        if item.critical:
            fields["critical"] = "yes"
        fields["text"] = item.head
        log(syslog.LOG_WARNING, " ".join(f"{k}={_kv(v)}" for k, v in fields.items()))


def _kv(value):
    value = str(value)
    if value and not re.search(r'[\s"=\\]', value) and value.isprintable():
        return value
    return json.dumps(value, ensure_ascii=True)


def _syslog(priority, line):
    syslog.openlog("systraq", syslog.LOG_PID, syslog.LOG_DAEMON)
    syslog.syslog(priority, line)


def deliver(settings, config, report, fmt="text", sendmail=mail.SENDMAIL, log=None,
            mailed=True):
    """Mail ``report`` (a report.Report, rendered in ``fmt``), or keep it
    in reports/ when mail is off; then mark its batches delivered and keep
    the state for the next report.  Returns where it was kept (mail off),
    else None.

    ``mailed``: False when the policy says not to mail this one; the
    batches then stay pending for the next report that is mailed.
    Raises DeliveryError after keeping the message when sendmail failed.
    """
    log = log or _syslog
    log_warnings(report, log)
    if not mailed:
        _write_textfile(settings, config, report, report.last_mailed, log)
        return None
    body = reporting.render(report, fmt)
    to = config.get("report", "mailto")
    directory = reports_dir(settings)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(report.now))
    if not to:
        where = _keep(directory, f"report-{stamp}.txt", body.encode("utf-8"))
        # With mail off these files are the reports: keep a season of
        # daily ones, not every one ever written.
        kept = sorted(n for n in os.listdir(directory) if n.startswith(b"report-"))
        for name in kept[:-KEEP_REPORTS]:
            os.unlink(os.path.join(directory, name))
    else:
        message = mail.build(to, report.subject, body, SYSTEM_USER, host=report.host,
                             now=report.now)
        prepared = _prepare_commit(settings, report)
        try:
            mail.send(message, sendmail=sendmail)
        except mail.DeliveryError as exc:
            os.unlink(prepared)
            kept = _keep(directory, f"undelivered-{stamp}.eml", message.as_bytes())
            log(syslog.LOG_ERR, f"delivery failed: {exc}; report kept in {os.fsdecode(kept)}")
            _write_textfile(settings, config, report, report.last_mailed, log)
            raise mail.DeliveryError(f"{exc}; the report is kept in {os.fsdecode(kept)} and "
                                     "its changes stay queued for the next run") from None
        where = None
    if to:
        os.rename(journal_path(settings) + NEXT, journal_path(settings))
        finish_journal(settings)
    else:
        _commit(settings, [b.name for b in report.batches], _next_state(report))
    for path in report.damaged:
        # Said by this report.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    days = config.get("contents", "retention_days")
    if days:
        # Delivered diffs are kept as long as the backups they were made
        # from (0: both forever).
        Spool(settings).prune_delivered(report.now - days * 86400)
    if to:
        for name in os.listdir(directory) if os.path.isdir(directory) else ():
            if name.startswith(b"undelivered-"):
                # What it held went out with this report.
                os.unlink(os.path.join(directory, name))
    _write_textfile(settings, config, report, report.now, log)
    return where


def _keep(directory, name, data):
    os.makedirs(directory, mode=0o750, exist_ok=True)
    path = os.path.join(directory, os.fsencode(name))
    atomic_write(path, data, mode=0o640)
    return path


def _next_state(report):
    state = dict(report.state, last_mailed=report.now,
                 baselines=baselines.marks(report.baselines))
    if report.probe_state is not None:
        state["probes"] = report.probe_state
    return state


def _prepare_commit(settings, report):
    """The journal of ``report``'s delivery, written before the mail goes
    out as NAME.next and renamed into place once sendmail exited 0: a
    state filesystem too full to take it stops the report before it
    mails, not after (when its changes would be mailed again).  One left
    by a run killed while sendmail ran is never renamed: its changes go
    with the next mail, and the next report overwrites it."""
    journal = {"batches": [os.fsdecode(b.name) for b in report.batches],
               "state": _next_state(report)}
    path = journal_path(settings) + NEXT
    _save_json(path, journal)
    return path


def _commit(settings, names, state):
    """After delivery: journal which batches went out, move them, save."""
    journal = {"batches": [os.fsdecode(n) for n in names], "state": state}
    _save_json(journal_path(settings), journal)
    finish_journal(settings)


def finish_journal(settings):
    """Carry out a delivery journal: the mail went out, its batches move
    to delivered/ and the state is saved (again, if it already was)."""
    journal = _load_json(journal_path(settings), "the delivery journal")
    if journal is None:
        return
    spool = Spool(settings)
    wanted = set(journal.get("batches", ()))
    spool.mark_delivered([b for b in spool.pending() if os.fsdecode(b.name) in wanted])
    _save_json(state_path(settings), journal.get("state", {}))
    alerts = _load_json(alerts_path(settings), "the alert ledger")
    if alerts:
        pending = {os.fsdecode(b.name) for b in spool.pending()}
        alerts["batches"] = {k: v for k, v in alerts.get("batches", {}).items() if k in pending}
        _save_json(alerts_path(settings), alerts)
    os.unlink(journal_path(settings))


def _write_textfile(settings, config, report, last, log):
    """The node_exporter file; ``last``: when a report was last delivered."""
    path = config.get("report", "textfile")
    if not path:
        return
    records = 0
    for batch in Spool(settings).pending():
        count = report.batch_records.get(batch.name)
        if count is None:   # queued while this report was being built
            try:
                count = len(Spool.records(batch))
            except (OSError, ValueError):
                count = 0
        records += count
    text = ("# HELP systraq_warnings Warnings in the last report systraq built.\n"
            "# TYPE systraq_warnings gauge\n"
            f"systraq_warnings {len(report.warnings)}\n"
            "# HELP systraq_last_success_timestamp_seconds When a report was last "
            "delivered (mailed, or kept when mail is off).\n"
            "# TYPE systraq_last_success_timestamp_seconds gauge\n"
            f"systraq_last_success_timestamp_seconds {int(last or 0)}\n"
            "# HELP systraq_pending_records Change records waiting to be delivered.\n"
            "# TYPE systraq_pending_records gauge\n"
            f"systraq_pending_records {records}\n")
    try:
        atomic_write(path, text.encode("ascii"), mode=0o644)
    except OSError as exc:
        log(syslog.LOG_ERR, f"cannot write {os.fsdecode(path)}: {exc.strerror}")
        raise RunError(f"cannot write the textfile {os.fsdecode(path)}: {exc.strerror}") from None


def alert(settings, config, now=None, host=None, sendmail=mail.SENDMAIL, log=None):
    """Mail at once the warnings on critical paths not yet alerted
    (report.alert), and keep in the ledger that they were.  Returns the
    alerted items (empty when there was nothing to say)."""
    log = log or _syslog
    now = time.time() if now is None else now
    host = host or mail.host_name()
    finish_journal(settings)
    found = reporting.alert(settings, config, now, host)
    if not found.items:
        return []
    for item in found.items:
        log(syslog.LOG_WARNING, f"alert={_kv(item.change)} path={_kv(item.path)} "
                                f"text={_kv(item.head)}")
    to = config.get("report", "mailto")
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    # The ledger is written before the alert goes out and renamed into
    # place after (as the report's journal): a full state filesystem
    # stops the alert before it is mailed, not before it is recorded.
    ledger = _load_json(alerts_path(settings), "the alert ledger") or {}
    batches = ledger.setdefault("batches", {})
    when = _local(now, now)
    for item in found.items:
        for name, index in item.refs:
            batches.setdefault(name, {}).setdefault("records", {})[str(index)] = when
    prepared = alerts_path(settings) + NEXT
    _save_json(prepared, ledger)
    if to:
        message = mail.build(to, found.subject, found.body, SYSTEM_USER, host=host, now=now)
        try:
            mail.send(message, sendmail=sendmail)
        except mail.DeliveryError as exc:
            os.unlink(prepared)
            kept = _keep(reports_dir(settings), f"undelivered-alert-{stamp}.eml",
                         message.as_bytes())
            log(syslog.LOG_ERR, f"alert delivery failed: {exc}; kept in {os.fsdecode(kept)}")
            raise mail.DeliveryError(f"{exc}; the alert is kept in {os.fsdecode(kept)} and "
                                     "will be tried again at the next check") from None
    else:
        _keep(reports_dir(settings), f"alert-{stamp}.txt", found.body.encode("utf-8"))
    os.rename(prepared, alerts_path(settings))
    # The next mail, alert or report, is compared with this one.
    state = reporting.load_state(settings)
    _save_json(state_path(settings), dict(state, baselines=baselines.marks(found.baselines)))
    return found.items
