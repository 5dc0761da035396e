# SPDX-License-Identifier: GPL-2.0-or-later
import os

import pytest

from systraq import config
from systraq.errors import ConfigError


def load(root, text, **kwargs):
    path = root.write("/etc/systraq/systraq.conf", text)
    return path, config.load(path, **kwargs)


def error_lines(root, text):
    path = root.write("/etc/systraq/systraq.conf", text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.exit_status == 2
    return os.fsdecode(path), info.value.lines()


def test_a_missing_default_file_gives_the_defaults(root):
    conf = config.load(root.host("/etc/systraq/systraq.conf"))
    assert conf.source is None
    assert conf.exclude == ()
    assert conf.get("snapshot", "digest") == "sha256"
    assert conf.effective() == [("snapshot", "digest", "sha256", "default"),
                                ("snapshot", "exclude", "(none)", "default"),
                                ("snapshot", "private_under", "/etc", "default"),
                                ("packages", "critical", "(none)", "default"),
                                ("packages", "archive_fetch_limit", "0", "default"),
                                ("packages", "from_archive", "no", "default"),
                                ("contents", "max_diff_lines", "200", "default"),
                                ("contents", "max_size", "1048576", "default"),
                                ("contents", "retention_days", "60", "default"),
                                ("contents", "secret", " ".join(config.DEFAULT_SECRET.split()), "default"),
                                ("contents", "ignore", " ".join(config.DEFAULT_IGNORE.split()),
                                 "default"),
                                ("report", "mailto", "root", "default"),
                                ("report", "mail_when", "warnings", "default"),
                                ("report", "full_report_days", "7", "default"),
                                ("report", "fill_warning", "90", "default"),
                                ("report", "part_timeout", "60", "default"),
                                ("report", "textfile", "(none)", "default"),
                                ("check", "critical", " ".join(config.DEFAULT_CRITICAL.split()),
                                 "default"),
                                ("check", "growing", " ".join(config.DEFAULT_GROWING.split()),
                                 "default"),
                                ("check", "trees", " ".join(config.DEFAULT_TREES.split()),
                                 "default"),
                                ("audit", "system_dirs",
                                 " ".join(config.DEFAULT_SYSTEM_DIRS.split()), "default"),
                                ("audit", "exclude", "(none)", "default"),
                                ("audit", "package_trees",
                                 " ".join(config.DEFAULT_PACKAGE_TREES.split()), "default"),
                                ("audit", "generated",
                                 " ".join(config.DEFAULT_GENERATED.split()), "default"),
                                ("watch", "enabled", "no", "default"),
                                ("watch", "quiet_window", "5", "default"),
                                ("watch", "mails_per_hour", "6", "default"),
                                ("watch", "poll_interval", "60", "default")]


def test_report_settings_are_checked(root):
    path, conf = load(root, "[report]\nmailto = root, admin@example.org\n"
                            "mail_when = always\nfill_warning = 95%\n")
    assert conf.get("report", "mailto") == ("root", "admin@example.org")
    assert conf.get("report", "mail_when") == "always"
    assert conf.get("report", "fill_warning") == 95
    _, conf = load(root, "[report]\nmailto =\n")
    assert conf.get("report", "mailto") == ()
    name, lines = error_lines(root, "[report]\nmailto = root\nmail_when = sometimes\n"
                                    "fill_warning = 120\n")
    assert lines == [f"{name}:3: [report] mail_when: 'sometimes' is not one of: "
                     "warnings, always",
                     f"{name}:4: [report] fill_warning: not a percentage from 1 to 100: '120'"]
    name, lines = error_lines(root, "[report]\nmailto = root\n  Bcc: x@y\n")
    assert len(lines) == 1 and lines[0].startswith(f"{name}:2: [report] mailto: not a mail address")


def test_contents_sizes_and_patterns_are_checked(root):
    path, conf = load(root, "[contents]\nmax_size = 64K\nmax_diff_lines = 50\n"
                            "secret = */private/*\n  *.key\n")
    assert conf.get("contents", "max_size") == 65536
    assert conf.get("contents", "max_diff_lines") == 50
    assert conf.get("contents", "secret") == (b"*/private/*", b"*.key")
    _name, lines = error_lines(root, "[contents]\nmax_size = big\n")
    assert lines[0].endswith(":2: [contents] max_size: not a size: 'big' (say 1048576, 1024K or 1M)")
    _name, lines = error_lines(root, "[contents]\nretention_days = -1\n")
    assert lines[0].endswith(":2: [contents] retention_days: not a whole number: '-1'")
    _name, lines = error_lines(root, "[contents]\nsecret = private/*\n")
    assert "a pattern must start with '/' or '*'" in lines[0]


def test_a_missing_file_named_by_the_admin_is_an_error(root):
    with pytest.raises(ConfigError) as info:
        config.load(root.host("/etc/other.conf"), required=True)
    assert info.value.lines() == [f"{os.fsdecode(root.host('/etc/other.conf'))}: no such file"]


def test_values_are_read_with_their_line(root):
    path, conf = load(root, "# comment\n[snapshot]\n\nexclude = /var/cache\n   /srv/x/\n")
    assert conf.exclude == (b"/var/cache", b"/srv/x")
    assert conf.effective()[1] == (
        "snapshot", "exclude", "/var/cache /srv/x", f"{os.fsdecode(path)}:4")


def test_percent_signs_are_plain_text(root):
    _path, conf = load(root, "[snapshot]\nexclude = /srv/100%\n")
    assert conf.exclude == (b"/srv/100%",)


def test_unknown_sections_and_keys_warn_with_their_line(root):
    path, conf = load(root, "[snapshot]\nexlude = /x\n[future]\nkey = 1\n[DEFAULT]\na = b\n")
    name = os.fsdecode(path)
    assert conf.warnings == [
        f"{name}:2: unknown key 'exlude' in [snapshot], ignored",
        f"{name}:3: unknown section [future], ignored",
        f"{name}:5: unknown section [DEFAULT], ignored",
    ]


@pytest.mark.parametrize("text,line,fragment", [
    ("exclude = /x\n", 1, "a [section] header must come before any key"),
    ("[snapshot]\nexclude = /x\nthis is not a key\n", 3, "cannot parse 'this is not a key'"),
    ("[snapshot]\nexclude = /a\nexclude = /b\n", 3, "key 'exclude' given twice in [snapshot]"),
    ("[snapshot]\n[snapshot]\n", 2, "section [snapshot] given twice"),
    ("[snapshot]\n\n\nexclude = relative/path\n", 4, "[snapshot] exclude: not an absolute path: 'relative/path'"),
    ("[snapshot]\ndigest = crc32\n", 2, "[snapshot] digest: unknown digest 'crc32' (one of: sha256, sha512, blake2b, md5)"),
])
def test_errors_name_file_and_line(root, text, line, fragment):
    name, lines = error_lines(root, text)
    assert len(lines) == 1
    assert lines[0].startswith(f"{name}:{line}: "), lines
    assert fragment in lines[0]


@pytest.mark.parametrize("odd", ["\r", "\v", "\f", "\x1c", "\x85", "\u2028"])
def test_line_numbers_count_newlines_only(root, odd):
    """configparser splits lines at newlines only; a carriage return or
    another character str.splitlines() takes for a line end must not
    shift the line an error names."""
    text = f"# a comment{odd}with an odd character\n[snapshot]\nexclude = /a\nexlude = /b\n"
    path, conf = load(root, text)
    assert conf.warnings == [f"{os.fsdecode(path)}:4: unknown key 'exlude' in [snapshot], ignored"]
    name, lines = error_lines(root, f"[snapshot]\n# x{odd}y\nnot a key{odd}\n")
    assert len(lines) == 1 and lines[0].startswith(f"{name}:3: cannot parse"), lines


def test_invalid_utf8_names_its_line(root):
    name, lines = error_lines(root, b"[snapshot]\n# caf\xe9\n")
    assert lines == [f"{name}:2: not valid UTF-8"]


# The keys the debconf questions set, with the template of each.
DEBCONF_KEYS = {("report", "mailto"): "systraq/mailto", ("watch", "enabled"): "systraq/watch"}


def test_the_debconf_defaults_are_the_configuration_defaults():
    templates = os.path.join(os.path.dirname(__file__), "..", "..", "debian", "templates")
    defaults = {}
    for stanza in open(templates, encoding="utf-8").read().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines()
                      if line[:1].isalpha() and ": " in line)
        defaults[fields["Template"]] = fields.get("Default")
    assert defaults["systraq/mailto"] == config.SCHEMA["report"]["mailto"][0]
    watch = {"false": "no", "true": "yes"}[defaults["systraq/watch"]]
    assert watch == config.SCHEMA["watch"]["enabled"][0]


def test_shipped_configuration_has_every_key_commented_with_its_default():
    shipped = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "systraq.conf")
    text = open(shipped, encoding="utf-8").read()
    conf = config.load(os.fsencode(shipped))
    assert conf.warnings == []
    for section, keys in config.SCHEMA.items():
        assert f"[{section}]" in text
        for key, (default, _parse, _show) in keys.items():
            if (section, key) in DEBCONF_KEYS:
                # postinst writes the debconf answer on this line; the
                # shipped value is the template's default.
                assert f"\n{key} = {default}\n" in text, key
                assert f"#{key} =" not in text, key
            elif "\n" in default.strip():
                # A list: the key, then each item on a commented
                # continuation line.
                items = "".join(f"#    {item}\n" for item in default.split())
                assert f"#{key} =\n{items}" in text, key
            else:
                assert f"#{key} = {default}".rstrip() in text, key


def test_watch_enabled_takes_the_words_configparser_knows(root):
    for word, expected in (("yes", True), ("True", True), ("on", True), ("1", True),
                           ("no", False), ("false", False), ("OFF", False), ("0", False)):
        _path, conf = load(root, f"[watch]\nenabled = {word}\n")
        assert conf.get("watch", "enabled") is expected
    path, lines = error_lines(root, "[watch]\nenabled = maybe\n")
    assert lines[0].startswith(f"{path}:2: ")
    assert "not yes or no: 'maybe'" in lines[0]


def test_watch_timings_are_checked(root):
    _path, conf = load(root, "[watch]\nquiet_window = 0\nmails_per_hour = 2\n"
                             "poll_interval = 30\n")
    assert (conf.get("watch", "quiet_window"), conf.get("watch", "mails_per_hour"),
            conf.get("watch", "poll_interval")) == (0, 2, 30)
    path, lines = error_lines(root, "[watch]\nquiet_window = soon\nmails_per_hour = 0\n"
                                    "poll_interval = 0\n")
    assert lines == [f"{path}:2: [watch] quiet_window: not a whole number: 'soon'",
                     f"{path}:3: [watch] mails_per_hour: must be at least 1: '0'",
                     f"{path}:4: [watch] poll_interval: must be at least 1 second: '0'"]
