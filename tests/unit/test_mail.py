# SPDX-License-Identifier: GPL-2.0-or-later
"""Messages built with email and handed to a sendmail that records what it got."""

import email
import email.policy
import os

import pytest

from systraq import mail


def fake_sendmail(tmp_path, status=0, stderr=""):
    """A sendmail that saves its arguments and its input, then exits ``status``."""
    script = tmp_path / "sendmail"
    script.write_text("#!/bin/sh\n"
                      f"printf '%s\\n' \"$@\" > {tmp_path}/args\n"
                      f"cat > {tmp_path}/message\n"
                      + (f"echo '{stderr}' >&2\n" if stderr else "")
                      + f"exit {status}\n")
    script.chmod(0o755)
    return str(script)


def test_a_message_has_the_headers_an_automatic_mail_needs(tmp_path):
    message = mail.build(("root", "admin@example.org"), "[systraq] web1: 2 warnings",
                         "Warnings\n  /etc/hosts: content\n\u00e9t\u00e9\n.\n",
                         "debian-systraq", host="web1.example.org", now=0)
    sendmail = fake_sendmail(tmp_path)
    mail.send(message, sendmail=sendmail)
    assert (tmp_path / "args").read_text().split() == ["-oi", "-t"]
    got = email.message_from_bytes((tmp_path / "message").read_bytes(),
                                   policy=email.policy.default)
    assert got["To"] == "root, admin@example.org"
    assert got["From"] == '"systraq on web1.example.org" <debian-systraq@web1.example.org>'
    assert got["Subject"] == "[systraq] web1: 2 warnings"
    assert got["Auto-Submitted"] == "auto-generated"
    assert got["Message-ID"].endswith("@web1.example.org>")
    assert got["Date"]
    assert got.get_content_charset() == "utf-8"
    assert got.get_content() == "Warnings\n  /etc/hosts: content\n\u00e9t\u00e9\n.\n"


def test_a_failing_sendmail_is_one_line_naming_its_status(tmp_path):
    message = mail.build(("root",), "s", "b\n", "debian-systraq", host="h")
    sendmail = fake_sendmail(tmp_path, status=75, stderr="queue full")
    with pytest.raises(mail.DeliveryError) as info:
        mail.send(message, sendmail=sendmail)
    assert str(info.value) == f"{sendmail} exited with status 75: queue full"
    assert info.value.exit_status == 3


def test_a_missing_sendmail_says_what_to_install(tmp_path):
    message = mail.build(("root",), "s", "b\n", "debian-systraq", host="h")
    with pytest.raises(mail.DeliveryError) as info:
        mail.send(message, sendmail=os.fspath(tmp_path / "nothing"))
    assert "install a mail transport agent" in str(info.value)


def test_a_hung_sendmail_times_out(tmp_path):
    script = tmp_path / "sendmail"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(0o755)
    message = mail.build(("root",), "s", "b\n", "debian-systraq", host="h")
    with pytest.raises(mail.DeliveryError) as info:
        mail.send(message, sendmail=str(script), timeout=0.5)
    assert "did not finish within 0.5 s" in str(info.value)


def test_recipients_are_a_comma_list_and_empty_turns_mail_off():
    assert mail.recipients("root") == ("root",)
    assert mail.recipients(" root , ops@example.org,") == ("root", "ops@example.org")
    assert mail.recipients("") == ()
    with pytest.raises(ValueError):
        mail.recipients("root\nBcc: someone@example.org")
    with pytest.raises(ValueError):
        mail.recipients("two words")
