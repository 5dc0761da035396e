# SPDX-License-Identifier: GPL-2.0-or-later
"""What the admin reads must match what the code does."""

import argparse
import os
import re

from systraq import __version__, config
from systraq.cli import build_parser
from systraq import lists
from systraq.settings import LIST_FILES

TOP = os.path.join(os.path.dirname(__file__), "..", "..")


def read(*parts):
    with open(os.path.join(TOP, *parts), encoding="utf-8") as handle:
        return handle.read()


def _parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_option_and_command_is_in_the_man_page():
    page = read("man", "systraq.8").replace("\\-", "-")
    parser = build_parser()
    for sub in _parsers(parser):
        for action in sub._actions:
            for option in action.option_strings:
                assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", page), option
            if isinstance(action, argparse._SubParsersAction):
                for command in action.choices:
                    assert f".B {command}" in page, command


def test_every_config_key_is_in_systraq_conf_5():
    page = read("man", "systraq.conf.5")
    for section, keys in config.SCHEMA.items():
        assert f"SECTION [{section}]" in page
        for key in keys:
            assert f".B {key}\n" in page, key


def test_every_list_file_is_in_the_man_page():
    page = read("man", "systraq.8")
    for name, _kind in LIST_FILES:
        assert f"/etc/systraq/{name}" in page, name


def test_version_matches_debian_changelog_and_man_pages():
    first = read("debian", "changelog").splitlines()[0]
    assert first.startswith(f"systraq ({__version__}) ")
    assert f'"systraq {__version__}"' in read("man", "systraq.8")
    assert f'"systraq {__version__}"' in read("man", "systraq.conf.5")


def test_shipped_list_files_parse_cleanly():
    kinds = dict(LIST_FILES)
    shipped = [n for n in os.listdir(os.path.join(TOP, "etc")) if n != "systraq.conf"]
    assert shipped
    for name in shipped:
        entries = lists.parse(os.fsencode(os.path.join(TOP, "etc", name)), kinds[name])
        # The tail holds the administrator's additions: shipped with
        # commented examples only.
        assert entries or name == "filetraq.tail.conf", name


def test_postinst_and_postrm_handle_every_shipped_file():
    """Every file of etc/ is installed in /etc/systraq: the lists and
    systraq.conf through ucf (and purged from it), the rest as conffiles."""
    shipped = sorted(os.listdir(os.path.join(TOP, "etc")))
    lists = re.search(r'^LISTS="([^"]*)"', read("debian", "systraq.postinst"), re.M)
    lists = lists.group(1).split()
    assert 'ucf --three-way --debconf-ok "$new" "$CONF"' in read("debian", "systraq.postinst")
    purged = re.search(r'^UCF_FILES="([^"]*)"', read("debian", "systraq.postrm"), re.M)
    assert sorted(purged.group(1).split()) == sorted(lists + ["systraq.conf"])
    installed = {}
    for line in read("debian", "systraq.install").splitlines():
        source, target = line.split()
        installed[source] = target
    conffiles = [name for name in shipped if installed.get(f"etc/{name}") == "etc/systraq/"]
    assert sorted(lists + ["systraq.conf"] + conffiles) == shipped
    for name in lists + ["systraq.conf"]:
        assert installed[f"etc/{name}"] == "usr/share/systraq/conf/"




def test_every_file_the_upgrade_removes_is_listed_as_systraqs():
    """The report explains these removals by systraq's own upgrade."""
    listed = {line for line in read("share", "obsolete-files").splitlines()
              if line.startswith("/")}
    removed = {line.split()[1] for line in read("debian", "systraq.maintscript").splitlines()
               if line.startswith("rm_conffile ")}
    markers = re.search(r"^\s*rm -f (/etc/systraq/systraq_is_\S+ .*)$",
                        read("debian", "systraq.postinst"), re.M).group(1).split()
    assert removed and markers
    parts = re.search(r"for part in ([^;]*); do", read("debian", "systraq.postinst")).group(1)
    links = {f"/etc/systraq/systraq.d/{name}" for name in parts.replace("\\", " ").split()}
    assert len(links) == 14
    assert removed | set(markers) | links <= listed
