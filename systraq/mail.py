# SPDX-License-Identifier: GPL-2.0-or-later
"""Mail: building a report or alert message and handing it to the MTA.

The only module that knows about mail.  A message is built with the
``email`` package (UTF-8 text, Date, Message-ID, ``Auto-Submitted:
auto-generated`` so that vacation responders and ticket systems leave it
alone, RFC 3834) and piped to ``sendmail -oi -t``, the interface every
Debian MTA provides (exim4, postfix, dma, nullmailer): ``-t`` takes the
recipients from the headers, ``-oi`` keeps a line holding a single dot
from ending the message.

Delivery counts as done only when sendmail exits 0; anything else is a
DeliveryError naming what went wrong in one line, and the caller keeps
what it wanted to send (the spool is not marked delivered).
"""

import contextlib
import os
import re
import signal
import socket
import subprocess
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid

from systraq.errors import RunError

SENDMAIL = "/usr/sbin/sendmail"
# Long enough for an MTA that queues to a slow disk; short enough that a
# hung MTA does not pile up cron jobs.
TIMEOUT = 120


class DeliveryError(RunError):
    """The MTA did not take the message."""


# What [report] mailto may hold (systraq.conf(5)): addresses separated by
# commas, blanks around each ignored, an empty list turning mail off.  An
# address is a local user name or user@domain of at most 254 characters
# (RFC 5321's limit on a path, less its brackets): ASCII letters and
# digits, RFC 5322's other atext characters and the dot, and one '@'
# neither first nor last.  So no quoted local part, comment, group,
# backslash, blank, control character or non-ASCII character: nothing that
# could change what a header, sendmail or a configuration line means.
# debian/config checks the debconf answer with the same rule in shell
# (valid_recipients); tests/unit/test_recipients.py feeds both the same
# cases.
_ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~.-"
_ADDRESS = re.compile(f"[{_ATEXT}]+(?:@[{_ATEXT}]+)?")
MAX_ADDRESS = 254


def recipients(value):
    """The addresses of a comma-separated list; empty means mail is off.

    Raises ValueError for an address the rule above refuses.
    """
    addresses = []
    for item in value.split(","):
        item = item.strip(" \t")
        if not item:
            continue
        if len(item) > MAX_ADDRESS:
            raise ValueError(f"not a mail address: {item[:40]!r}... is longer than "
                             f"{MAX_ADDRESS} characters")
        if not _ADDRESS.fullmatch(item):
            raise ValueError(f"not a mail address: {item!r} (a user name or user@domain "
                             "in ASCII letters, digits and !#$%&'*+-/=?^_`{|}~.)")
        addresses.append(item)
    return tuple(addresses)


def host_name():
    """The name the subject line shows: the fully qualified one if known."""
    name = socket.getfqdn()
    return name if name and name != "localhost" else socket.gethostname()


def build(to, subject, body, sender_user, host=None, now=None):
    """An EmailMessage from ``sender_user``@host to the addresses ``to``."""
    host = host or host_name()
    message = EmailMessage()
    message["From"] = formataddr((f"systraq on {host}", f"{sender_user}@{host}"))
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = formatdate(now, localtime=True)
    message["Message-ID"] = make_msgid("systraq", domain=host)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Mailer"] = "systraq"
    message.set_content(body, charset="utf-8")
    return message


def send(message, sendmail=SENDMAIL, timeout=TIMEOUT):
    """Hand ``message`` to ``sendmail -oi -t``; DeliveryError unless it exits 0."""
    if not os.access(sendmail, os.X_OK):
        raise DeliveryError(f"{sendmail} is missing or not executable; "
                            "install a mail transport agent (exim4, postfix, dma)")
    try:
        # A session of its own: on a timeout the whole of it is killed,
        # the children a hung MTA wrapper waits for included, which
        # killing sendmail alone would leave running for ever.
        proc = subprocess.Popen([sendmail, "-oi", "-t"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                close_fds=True, start_new_session=True)
    except OSError as exc:
        raise DeliveryError(f"cannot run {sendmail}: {exc.strerror}") from None
    with proc:
        try:
            stdout, stderr = proc.communicate(message.as_bytes(), timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise DeliveryError(f"{sendmail} did not finish within {timeout:g} s") from None
    if proc.returncode != 0:
        said = (stderr or stdout).decode("utf-8", "replace").strip()
        first = said.splitlines()[0] if said else "no message"
        raise DeliveryError(f"{sendmail} exited with status {proc.returncode}: {first}")
