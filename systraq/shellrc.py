# SPDX-License-Identifier: GPL-2.0-or-later
"""Reading shell startup files for a umask that lets others write and a
PATH that searches the current directory.

The old package's ii-shellrc printed every line of every startup file that
held "umask" or "PATH" and was not exactly ``umask 022`` or ``umask 002``:
the two PATH lines of Debian's own /etc/profile and the ``PATH="$HOME/bin:$PATH"``
of /etc/skel/.profile came back in every report, and a real ``PATH=.:$PATH``
drowned among them.  This module reads what the lines *do* instead:

- a PATH assignment (``PATH=…``, ``PATH+=…``, after ``export``,
  ``declare``, ``local``, ``env`` …; csh ``setenv PATH …`` and
  ``set path = (…)``; zsh ``path=(…)``) is split on ':' into elements.
  An element that begins with an expansion (``$PATH``, ``${HOME}``,
  ``$(…)``, ``~``) is taken as fine: what it expands to is not known here.
  A literal element that is ``.``, empty (``PATH=:/bin``, ``/bin::/usr/bin``,
  ``$PATH:``) or relative (``bin``) makes the shell look in the current
  directory: a problem.
- a ``umask`` with an octal or symbolic argument is a problem when it
  leaves group or other write permission unmasked (``umask & 022 != 022``):
  files the user creates are then writable by others.  ``umask $VAR`` is
  not known here and passes.

The text is read with a small shell lexer: quotes, ``$(…)``, ``${…}``,
backquotes, backslash-newline, comments and here-documents are
recognised, so that a commented-out ``#PATH=.:$PATH``, a PATH inside a
string or a here-document, and ``case`` patterns give nothing.  It is not
a shell: ``eval``, aliases and values built in other variables are not
followed.  Problems say what is wrong and where, never the line itself.
"""

import re
from collections import namedtuple

# One problem: the line it starts on and what is wrong.
Problem = namedtuple("Problem", "line text")

_OPERATORS = ("<<<", "<<-", ";;&", "&&", "||", ";;", ";&", "|&", "<<", ">>",
              "<&", ">&", "<>", ">|", ";", "&", "|", "(", ")", "<", ">")
_BREAK = frozenset(" \t\n;&|()<>")
# Words that may stand before a command without being one.
_KEYWORDS = frozenset(("if", "then", "else", "elif", "do", "while", "until", "!", "{",
                       "}", "time", "fi", "done", "esac"))
# Commands whose NAME=VALUE arguments are assignments.
_DECLARE = frozenset(("export", "declare", "typeset", "local", "readonly", "env"))
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z_0-9]*)(\+?)=")
_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_OCTAL = re.compile(r"[0-7]{1,4}")
_SYMBOLIC = re.compile(r"[ugoa]*(?:[-+=][rwxXst]*)+(?:,[ugoa]*(?:[-+=][rwxXst]*)+)*")

DOT = "PATH has '.'"
EMPTY = "PATH has an empty element (the current directory)"
RELATIVE = "PATH has a relative directory"


# --- the lexer ------------------------------------------------------------------

class _Lexer:
    """Shell text to tokens: ("word", raw text with its quotes, line),
    ("op", operator, line) and ("newline", "\\n", line)."""

    def __init__(self, text):
        self.text = text
        self.tokens = []

    # Each _skip_* takes the index of an opening character and returns
    # the index after its closing one (the end of the text when there is
    # none: an unterminated quote swallows the rest, as in the shell).

    def _skip_single(self, i):
        end = self.text.find("'", i + 1)
        return len(self.text) if end < 0 else end + 1

    def _skip_double(self, i):
        text, k = self.text, i + 1
        while k < len(text):
            c = text[k]
            if c == "\\":
                k += 2
            elif c == '"':
                return k + 1
            elif c == "$":
                k = self._skip_dollar(k)
            elif c == "`":
                k = self._skip_backquote(k)
            else:
                k += 1
        return len(text)

    def _skip_backquote(self, i):
        text, k = self.text, i + 1
        while k < len(text):
            if text[k] == "\\":
                k += 2
            elif text[k] == "`":
                return k + 1
            else:
                k += 1
        return len(text)

    def _skip_dollar(self, i):
        """Past ``$(…)``, ``$((…))`` or ``${…}`` at ``i``; past the '$' otherwise."""
        text = self.text
        if i + 1 >= len(text) or text[i + 1] not in "({":
            return i + 1
        opening = text[i + 1]
        closing = ")" if opening == "(" else "}"
        depth, k = 0, i + 1
        while k < len(text):
            c = text[k]
            if c == opening:
                depth += 1
                k += 1
            elif c == closing:
                depth -= 1
                k += 1
                if not depth:
                    return k
            elif c == "\\":
                k += 2
            elif c == "'":
                k = self._skip_single(k)
            elif c == '"':
                k = self._skip_double(k)
            elif c == "`":
                k = self._skip_backquote(k)
            elif c == "$":
                k = self._skip_dollar(k)
            else:
                k += 1
        return len(text)

    def run(self):
        text = self.text
        length = len(text)
        line = 1
        start = None          # index where the current word began
        start_line = 1
        heredocs = []         # (delimiter, strip leading tabs), read at the next newline
        want_delimiter = None
        tokens = self.tokens
        i = 0

        def end_word(stop):
            nonlocal start, want_delimiter
            if start is None:
                return
            word = text[start:stop]
            start = None
            if want_delimiter is not None:
                heredocs.append((re.sub(r"[\"'\\]", "", word), want_delimiter == "<<-"))
                want_delimiter = None
            tokens.append(("word", word, start_line))

        while i < length:
            c = text[i]
            if c == "\\" and text.startswith("\n", i + 1):
                # A continued line: the word goes on.
                line += 1
                i += 2
                continue
            if c in _BREAK:
                end_word(i)
                if c == "\n":
                    tokens.append(("newline", c, line))
                    line += 1
                    i += 1
                    # Here-document bodies start on the next line.
                    for delimiter, strip in heredocs:
                        while i < length:
                            end = text.find("\n", i)
                            end = length if end < 0 else end
                            body = text[i:end]
                            i = end + 1
                            line += 1
                            if (body.lstrip("\t") if strip else body) == delimiter:
                                break
                    heredocs.clear()
                    continue
                if c in " \t":
                    i += 1
                    continue
                operator = next(op for op in _OPERATORS if text.startswith(op, i))
                tokens.append(("op", operator, line))
                if operator in ("<<", "<<-"):
                    want_delimiter = operator
                i += len(operator)
                continue
            if c == "#" and start is None:
                # A comment runs to the end of the line.
                end = text.find("\n", i)
                i = length if end < 0 else end
                continue
            if start is None:
                start, start_line = i, line
            if c == "\\":
                nxt = i + 2
            elif c == "'":
                nxt = self._skip_single(i)
            elif c == '"':
                nxt = self._skip_double(i)
            elif c == "`":
                nxt = self._skip_backquote(i)
            elif c == "$":
                nxt = self._skip_dollar(i)
            else:
                nxt = i + 1
            line += text.count("\n", i + 1, nxt)
            i = nxt
        end_word(length)
        return tokens


# --- PATH values --------------------------------------------------------------

def _expansion_end(raw, i):
    """The index after the expansion starting with '$' at ``i``; ``i + 1``
    when the '$' starts none."""
    if i + 1 >= len(raw):
        return i + 1
    c = raw[i + 1]
    if c in "({":
        lexer = _Lexer(raw)
        return lexer._skip_dollar(i)
    match = _NAME.match(raw, i + 1)
    if match:
        return match.end()
    if c.isdigit() or c in "@*#?$!-":
        return i + 2
    return i + 1


def elements(raw):
    """The elements of a PATH value given as raw shell text, each a list
    of parts ("lit", text) or ("exp", text).  Literal ':' separates
    elements wherever it stands: PATH is split after expansion."""
    result = [[]]

    def literal(text):
        for index, piece in enumerate(text.split(":")):
            if index:
                result.append([])
            if piece:
                parts = result[-1]
                if parts and parts[-1][0] == "lit":
                    parts[-1] = ("lit", parts[-1][1] + piece)
                else:
                    parts.append(("lit", piece))

    quoted = False
    i, length = 0, len(raw)
    while i < length:
        c = raw[i]
        if c == "'" and not quoted:
            end = raw.find("'", i + 1)
            end = length if end < 0 else end
            literal(raw[i + 1:end])
            i = end + 1
        elif c == '"':
            quoted = not quoted
            i += 1
        elif c == "\\":
            following = raw[i + 1:i + 2]
            if following == "\n":
                pass    # a continued line: nothing
            elif quoted and following not in ('$', '`', '"', '\\'):
                literal("\\" + following)
            else:
                literal(following)
            i += 2
        elif c == "$":
            end = _expansion_end(raw, i)
            if end == i + 1:
                literal("$")
            else:
                result[-1].append(("exp", raw[i:end]))
            i = end
        elif c == "`":
            end = _Lexer(raw)._skip_backquote(i)
            result[-1].append(("exp", raw[i:end]))
            i = end
        elif c == "~" and not quoted and not result[-1]:
            # Tilde expansion at the start of an element: a home directory.
            result[-1].append(("exp", "~"))
            i += 1
        else:
            literal(c)
            i += 1
    return result


def element_problem(parts):
    """What is wrong with one PATH element; None when nothing is."""
    if not parts:
        return EMPTY
    kind, text = parts[0]
    if kind == "exp" or text.startswith("/"):
        return None
    if len(parts) == 1 and text.rstrip("/") == ".":
        return DOT
    return RELATIVE


def path_problems(raw, append=False):
    """What is wrong with the PATH value ``raw`` (shell text), each once.
    ``append``: the value is added to the PATH already set (``PATH+=``),
    so its first element continues the last one."""
    found = []
    parts_list = elements(raw)
    if append:
        parts_list[0].insert(0, ("exp", "$PATH"))
    for parts in parts_list:
        problem = element_problem(parts)
        if problem and problem not in found:
            found.append(problem)
    return found


# --- umask ----------------------------------------------------------------------

def _who(group, others):
    if group and others:
        return "group and others"
    return "group" if group else "others"


def umask_problem(value, name="umask"):
    """What is wrong with ``umask VALUE``; None when nothing is (or the
    value is not known here)."""
    if _OCTAL.fullmatch(value):
        mask = int(value, 8)
        group, others = not mask & 0o020, not mask & 0o002
    elif _SYMBOLIC.fullmatch(value):
        # A symbolic umask names the permissions *allowed*.  What the
        # starting umask allowed is not known: only what this one sets
        # or adds counts.
        allowed = {"g": False, "o": False}
        for clause in value.split(","):
            targets = clause[:len(clause) - len(clause.lstrip("ugoa"))] or "a"
            for op, perms in re.findall(r"([-+=])([rwxXst]*)", clause):
                write = "w" in perms
                for target in "go":
                    if target not in targets and "a" not in targets:
                        continue
                    if op == "=":
                        allowed[target] = write
                    elif write:
                        allowed[target] = op == "+"
        group, others = allowed["g"], allowed["o"]
    else:
        return None
    if not group and not others:
        return None
    return f"{name} {value} lets {_who(group, others)} write"


# --- reading a file -------------------------------------------------------------

def _unquoted(word):
    return re.sub(r"[\"'\\]", "", word)


class _Checker:
    def __init__(self):
        self.problems = []

    def add(self, line, text):
        problem = Problem(line, text)
        if problem not in self.problems:
            self.problems.append(problem)

    def path(self, raw, line, append=False):
        for text in path_problems(raw, append):
            self.add(line, text)

    def array(self, words):
        """``path=(…)`` (zsh) or ``set path = (…)`` (csh): one directory a word."""
        for word, line in words:
            parts = elements(word)
            problem = element_problem(parts[0]) if len(parts) == 1 else None
            if problem:
                self.add(line, problem)

    def command(self, words):
        """One simple command: its leading assignments, then what it runs."""
        k = 0
        while k < len(words) and words[k][0] in _KEYWORDS:
            k += 1
        while k < len(words):
            match = _ASSIGNMENT.match(words[k][0])
            if not match:
                break
            if match.group(1) == "PATH":
                self.path(words[k][0][match.end():], words[k][1], bool(match.group(2)))
            k += 1
        if k >= len(words):
            return
        name, args = words[k][0], words[k + 1:]
        if name in _DECLARE:
            for word, line in args:
                match = _ASSIGNMENT.match(word)
                if match and match.group(1) == "PATH":
                    self.path(word[match.end():], line, bool(match.group(2)))
        elif name == "umask":
            for word, line in args:
                value = _unquoted(word)
                if value.startswith("-"):
                    continue   # -S, -p: how to print it
                problem = umask_problem(value)
                if problem:
                    self.add(line, problem)
                break
        elif name == "setenv" and args and _unquoted(args[0][0]) == "PATH":
            if len(args) > 1:
                self.path(args[1][0], args[1][1])
            else:
                self.add(args[0][1], EMPTY)   # setenv PATH: an empty PATH


def _array_start(words):
    """Whether a '(' after ``words`` opens a list of PATH directories."""
    plain = [word for word, _line in words if word not in _KEYWORDS]
    if plain and re.fullmatch(r"path\+?=", plain[-1]):
        return True     # zsh
    return plain in (["set", "path", "="], ["set", "path="])   # csh


def check_shell(data):
    """Problems in a shell startup file (bytes), in file order."""
    text = data.decode("utf-8", "surrogateescape")
    tokens = _Lexer(text).run()
    checker = _Checker()
    words = []
    depth = 0      # open '(' subshells: a ')' beyond them ends a case pattern
    i = 0
    while i < len(tokens):
        kind, value, line = tokens[i]
        i += 1
        if kind == "word":
            words.append((value, line))
            continue
        if value == "(" and _array_start(words):
            members = []
            while i < len(tokens) and tokens[i][1] != ")":
                if tokens[i][0] == "word":
                    members.append(tokens[i][1:])
                i += 1
            i += 1
            checker.array(members)
            words = []
            continue
        if value == ")" and not depth:
            # "pattern)" of a case: words to match, not a command.
            words = []
            continue
        if value == "(":
            depth += 1
        elif value == ")":
            depth -= 1
        checker.command(words)
        words = []
    checker.command(words)
    return sorted(checker.problems)


def check_login_defs(data):
    """Problems in /etc/login.defs (bytes): UMASK, and the PATH that
    login(1) and su(1) set (ENV_PATH, ENV_SUPATH)."""
    checker = _Checker()
    text = data.decode("utf-8", "surrogateescape")
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if len(fields) < 2 or fields[0].startswith("#"):
            continue
        key, value = fields[0], fields[1]
        if key == "UMASK":
            problem = umask_problem(value, "UMASK")
            if problem:
                checker.add(number, problem)
        elif key in ("ENV_PATH", "ENV_SUPATH"):
            value = value[len("PATH="):] if value.startswith("PATH=") else value
            for problem in path_problems(value):
                checker.add(number, f"{key}: {problem}")
    return checker.problems
