"""The runner's two errors: :class:`StudyError`, a problem the user must fix (bad profile, missing notebook, failing
cell; the message says what and where), and :class:`Interrupted`, the user's stop. The command line turns them into
exit codes 1 and 130."""

from __future__ import annotations

__all__ = ["StudyError", "Interrupted"]


class StudyError(Exception):
    """A problem the user must fix (bad profile, missing notebook, failing cell); the message says what and where."""


class Interrupted(StudyError):
    """The user interrupted the run (Ctrl-C, SIGINT or SIGTERM); the message names what was stopped."""
