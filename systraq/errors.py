# SPDX-License-Identifier: GPL-2.0-or-later
"""The exceptions systraq raises for expected failures, and their exit statuses.

Every failure a user can cause or meet (a broken list file, a missing
configuration, an unwritable state directory) is one of these.  The command
line turns them into one line on stderr and the exit status below; anything
else is a bug and keeps its traceback.
"""

# Exit statuses, as DESIGN.md and systraq(8) document them.
EXIT_OK = 0
EXIT_WARNINGS = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3


class SystraqError(Exception):
    """Base class: an expected failure that stops the current command."""

    exit_status = EXIT_INCOMPLETE

    def lines(self):
        """The message lines to print, one per problem."""
        return [str(self)]


class ConfigError(SystraqError):
    """A configuration or list file is missing or wrong.

    Carries one or more ``(file, line, message)`` problems so that every
    broken line of a file is reported in one run, each as ``FILE:LINE: msg``.
    ``line`` is None when the problem concerns the whole file.
    """

    exit_status = EXIT_USAGE

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("; ".join(self.lines()))

    @classmethod
    def single(cls, file, line, message):
        return cls([(file, line, message)])

    def lines(self):
        out = []
        for file, line, message in self.problems:
            where = f"{file}:{line}" if line is not None else f"{file}"
            out.append(f"{where}: {message}")
        return out


class UsageError(SystraqError):
    """The command line asks for something impossible."""

    exit_status = EXIT_USAGE


class RunError(SystraqError):
    """The command could not complete: I/O, permissions, a busy lock."""

    exit_status = EXIT_INCOMPLETE
