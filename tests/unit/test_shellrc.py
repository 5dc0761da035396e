# SPDX-License-Identifier: GPL-2.0-or-later
"""systraq.shellrc: what a startup file's PATH and umask lines do, not
what they look like."""

import os

import pytest

from systraq import shellrc

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "audit")

DOT, EMPTY, RELATIVE = shellrc.DOT, shellrc.EMPTY, shellrc.RELATIVE


def problems(text):
    return [(p.line, p.text) for p in shellrc.check_shell(text.encode())]


@pytest.mark.parametrize("name", ["profile", "bash.bashrc", "skel.profile", "skel.bashrc",
                                  "skel.bash_logout"])
def test_debians_stock_files_are_fine(name):
    # The old ii-shellrc showed both PATH lines of /etc/profile and the
    # two of /etc/skel/.profile in every report.
    with open(os.path.join(FIXTURES, name), "rb") as handle:
        assert shellrc.check_shell(handle.read()) == []


def test_debians_stock_login_defs_is_fine():
    with open(os.path.join(FIXTURES, "login.defs"), "rb") as handle:
        assert shellrc.check_login_defs(handle.read()) == []


@pytest.mark.parametrize("text, found", [
    ("PATH=.:$PATH", DOT),
    ("PATH=$PATH:.", DOT),
    ("PATH=./:$PATH", DOT),
    ("export PATH=\"$PATH:.\"", DOT),
    ("declare -x PATH=$PATH:.", DOT),
    ("env PATH=.:$PATH make", DOT),
    ("PATH=:/usr/bin", EMPTY),
    ("PATH=/usr/bin:", EMPTY),
    ("PATH=/usr/bin::/bin", EMPTY),
    ("PATH=\"$PATH:\"", EMPTY),
    ("PATH=", EMPTY),
    ("PATH+=:.", DOT),
    ("PATH=bin:$PATH", RELATIVE),
    ("PATH='$PATH':/bin", RELATIVE),      # single quotes: the text "$PATH"
    ("if true; then PATH=./bin:$PATH; fi", RELATIVE),
    ("setenv PATH \"${PATH}:.\"", DOT),
    ("set path = ( /sbin /bin . )", DOT),
    ("set path=($path '')", EMPTY),
    ("path=($path .)", DOT),
    ("path+=(bin)", RELATIVE),
    ("f() { PATH=.; }", DOT),
    ("PATH=\\\n.:/bin", DOT),
])
def test_a_path_that_searches_the_current_directory(text, found):
    assert problems(text) == [(1, found)]


@pytest.mark.parametrize("text", [
    "PATH=\"$HOME/bin:$PATH\"",
    "PATH=\"/opt/bin${PATH:+:${PATH}}\"",
    "PATH=~/bin:$PATH",
    "PATH=$(getconf PATH):/usr/local/bin",
    "PATH=`getconf PATH`",
    "PATH+=:/opt/bin",
    "PATH=\"/usr/bin:\\\n/bin\"",
    "MANPATH=.:/usr/share/man",
    "LD_LIBRARY_PATH=:",
    "echo PATH=.",
    "echo \"PATH=.:$PATH\"",
    "#PATH=.:$PATH",
    "  # export PATH=.",
    "x=1 # PATH=.",
    "case $PATH in PATH=*) echo ;; *:.:*) echo dot ;; esac",
    "cat <<EOF\nPATH=.:$PATH\numask 000\nEOF",
    "cat <<-'END'\n\tPATH=.\n\tEND",
    "x=$(echo ')'); y=\"${z:-(}\"",
    "umask 022", "umask 0022", "umask 027", "umask 077", "umask", "umask -S",
    "umask $UMASK", "umask u=rwx,g=rx,o=", "umask a-w", "umask g-w,o-w",
    "#umask 000",
])
def test_what_is_fine(text):
    assert problems(text) == []


@pytest.mark.parametrize("text, found", [
    ("umask 002", "umask 002 lets group write"),
    ("umask 02", "umask 02 lets group write"),
    ("umask 020", "umask 020 lets others write"),
    ("umask 000", "umask 000 lets group and others write"),
    ("umask 0", "umask 0 lets group and others write"),
    ("umask -S 002", "umask 002 lets group write"),
    ("umask u=rwx,g=rwx,o=rx", "umask u=rwx,g=rwx,o=rx lets group write"),
    ("umask a=rwx", "umask a=rwx lets group and others write"),
    ("umask o+w", "umask o+w lets others write"),
    ("umask =rwx", "umask =rwx lets group and others write"),
])
def test_a_umask_that_lets_others_write(text, found):
    assert problems(text) == [(1, found)]


def test_line_numbers_count_continuations_quotes_and_here_documents():
    text = ("a='one\ntwo'\n"        # 1-2
            "cat <<EOF\n"           # 3
            "PATH=.\n"              # 4 (here-document)
            "EOF\n"                 # 5
            "b=1 \\\n"              # 6
            "  c=2\n"               # 7
            "umask 002\n"           # 8
            "PATH=$PATH:.\n")       # 9
    assert problems(text) == [(8, "umask 002 lets group write"), (9, DOT)]


def test_each_problem_once_per_line_and_all_kinds_of_a_line():
    assert problems("PATH=.:.:bin::/bin") == [(1, DOT), (1, RELATIVE), (1, EMPTY)]


def test_text_that_is_not_utf8_is_read():
    assert shellrc.check_shell(b"# caf\xe9\nPATH=.\xff:/bin\n") == [(2, RELATIVE)]


def test_an_unterminated_quote_does_not_stop_the_check():
    assert problems("umask 002\necho 'oops\nPATH=.") == [(1, "umask 002 lets group write")]


def test_login_defs_umask_and_login_paths():
    data = (b"# UMASK 000\nUMASK\t\t002\nENV_SUPATH\tPATH=/usr/sbin:/usr/bin:.\n"
            b"ENV_PATH\tPATH=/usr/local/bin:/usr/bin:/bin\n")
    assert [(p.line, p.text) for p in shellrc.check_login_defs(data)] == [
        (2, "UMASK 002 lets group write"), (3, "ENV_SUPATH: PATH has '.'")]
