# SPDX-License-Identifier: GPL-2.0-or-later
"""``systraq status``: what systraq would work with, as this user sees it now.

Shows the effective configuration (each key with the file line it came
from, or "default"), every list file with how many paths it expands to,
the state directory and what is in it, and the change records queued but
not yet delivered.  Problems in configuration or list files are collected
rather than stopping at the first, so one run names them all.
"""

import json
import os
import pwd
import stat
import time

from systraq import __version__, accounts, lists
from systraq.errors import ConfigError, RunError
from systraq.pathcodec import escape
from systraq.spool import Spool


def _user():
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _kind(mode):
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def _describe(names, path):
    info = os.lstat(path)
    return {
        "type": _kind(info.st_mode),
        "owner": f"{names.user(info.st_uid)}:{names.group(info.st_gid)}",
        "mode": f"{stat.S_IMODE(info.st_mode):04o}",
        "size": info.st_size,
        "mtime": time.strftime("%Y-%m-%d %H:%M", time.localtime(info.st_mtime)),
    }


def _lists(settings, config, problems):
    rows = []
    for name, kind, path in settings.list_files():
        row = {"name": name, "file": escape(path), "kind": kind}
        try:
            entries = lists.parse(path, kind)
        except lists.MissingListFile:
            row["state"] = "missing"
            rows.append(row)
            continue
        except ConfigError as exc:
            row["state"] = "error"
            row["errors"] = exc.lines()
            problems.extend(exc.lines())
            rows.append(row)
            continue
        found = lists.expand(settings, entries, kind, config.exclude)
        row.update({
            "state": "ok",
            "entries": len(entries),
            "paths": len(found.paths),
            "unmatched": [{"entry": escape(e.pattern), "line": e.line}
                          for e in found.missing],
            "not_readable": [escape(p) for p in found.unreadable],
        })
        if kind == "home":
            row["homes"] = found.homes
        rows.append(row)
    return rows


def _state(settings):
    directory = settings.state_dir
    names = accounts.Names(settings)
    state = {"directory": escape(directory)}
    try:
        state.update(_describe(names, directory))
    except FileNotFoundError:
        state["state"] = "missing"
        return state
    try:
        entries = sorted(os.listdir(directory))
    except PermissionError:
        state["state"] = "not readable"
        return state
    state["state"] = "ok"
    contents = []
    for entry in entries:
        try:
            item = _describe(names, os.path.join(directory, entry))
        except OSError:
            item = {"type": "vanished"}
        item["name"] = escape(entry)
        contents.append(item)
    state["contents"] = contents
    return state


def _queue(settings):
    spool = Spool(settings)
    try:
        batches = spool.pending()
    except PermissionError:
        return {"state": "not readable"}
    records = 0
    unreadable = 0
    for batch in batches:
        try:
            records += len(spool.records(batch))
        except (OSError, ValueError):
            unreadable += 1
    return {
        "state": "ok",
        "batches": len(batches),
        "records": records,
        "unreadable_batches": unreadable,
        "oldest": batches[0].created if batches else None,
    }


def _report(settings):
    """When a report last went out, and how many could not be delivered."""
    from systraq import delivery, report
    try:
        state = report.load_state(settings)
        kept = os.listdir(delivery.reports_dir(settings))
    except FileNotFoundError:
        kept = []
    except (PermissionError, RunError):
        return {"state": "not readable"}
    last = state.get("last_mailed")
    return {"state": "ok",
            "last_delivered": (time.strftime("%Y-%m-%d %H:%M", time.localtime(last))
                               if last else None),
            "undelivered": sorted(os.fsdecode(os.path.join(delivery.reports_dir(settings), n))
                                  for n in kept if n.startswith(b"undelivered-"))}


def collect(settings, config):
    """Everything status shows, as a dict with stable keys; and the problems."""
    problems = []
    data = {
        "version": __version__,
        "root": escape(settings.root),
        "user": _user(),
        "config": {
            "file": escape(config.source or settings.config_file),
            "read": config.source is not None,
            "warnings": list(config.warnings),
            "keys": [{"section": s, "key": k, "value": v, "origin": o}
                     for s, k, v, o in config.effective()],
        },
        "lists": _lists(settings, config, problems),
        "state": _state(settings),
        "queue": _queue(settings),
        "report": _report(settings),
    }
    data["problems"] = problems
    return data


def render_json(data):
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _list_line(row, user):
    if row["state"] != "ok":
        return row["state"]
    text = f"{row['paths']} paths"
    if row["kind"] == "home":
        text += f" in {row['homes']} home directories"
    if row["not_readable"]:
        text += f", {len(row['not_readable'])} not readable by {user}"
    if row["unmatched"]:
        text += f", {len(row['unmatched'])} entries match nothing"
    return text


def render_text(data):
    out = [f"systraq {data['version']}: status of {data['root']}, "
           f"as seen by {data['user']}", ""]

    config = data["config"]
    note = "" if config["read"] else "  (not found: defaults in force)"
    out.append(f"Configuration  {config['file']}{note}")
    for key in config["keys"]:
        out.append(f"  [{key['section']}] {key['key']} = {key['value']}"
                   f"    ({key['origin']})")
    out.extend(f"  warning: {w}" for w in config["warnings"])
    out.append("")

    out.append("List files")
    width = max(len(row["file"]) for row in data["lists"])
    for row in data["lists"]:
        out.append(f"  {row['file']:<{width}}  {_list_line(row, data['user'])}")
        for problem in row.get("errors", []):
            out.append(f"      {problem}")
        for item in row.get("unmatched", []):
            out.append(f"      line {item['line']}: {item['entry']} matches nothing")
        for path in row.get("not_readable", []):
            out.append(f"      not readable: {path}")
    out.append("")

    state = data["state"]
    if state["state"] == "missing":
        out.append(f"State directory  {state['directory']}  missing")
    else:
        out.append(f"State directory  {state['directory']}  "
                   f"{state['owner']} {state['mode']}")
        if state["state"] != "ok":
            out.append(f"  {state['state']} by {data['user']}")
        for item in state.get("contents", []):
            if item["type"] == "vanished":
                continue
            size = f"{item['size']} bytes" if item["type"] == "file" else item["type"]
            out.append(f"  {item['name']:<28} {item['owner']:<32} {item['mode']}"
                       f"  {size}, {item['mtime']}")
        if state["state"] == "ok" and not state.get("contents"):
            out.append("  (empty)")
    out.append("")

    queue = data["queue"]
    if queue["state"] != "ok":
        out.append(f"Queued, not yet delivered: {queue['state']} by {data['user']}")
    elif not queue["batches"]:
        out.append("Queued, not yet delivered: nothing")
    else:
        out.append(f"Queued, not yet delivered: {queue['records']} records in "
                   f"{queue['batches']} batches, oldest from {queue['oldest']}")
        if queue["unreadable_batches"]:
            out.append(f"  {queue['unreadable_batches']} batches could not be read")
    delivered = data["report"]
    if delivered["state"] != "ok":
        out.append(f"Last report: {delivered['state']} by {data['user']}")
    else:
        out.append(f"Last report delivered: {delivered['last_delivered'] or 'never'}")
        for path in delivered["undelivered"]:
            out.append(f"  not delivered, kept: {path}")
    return "\n".join(out) + "\n"
