"""How long work on the store tells how far it is: files done of a total, per phase.

Contract: a :class:`Progress` is told :meth:`~Progress.start` (a phase of
``total`` files, with a short name) and then :meth:`~Progress.advance` as files
are done; a long operation may start several phases. It never receives a
file name, a pseudonym or a number, only counts. :data:`NO_PROGRESS` ignores
everything (the worker, tests, and commands whose output is not a terminal);
the command line's terminal bar is :func:`pipeline.cli.progress.terminal_progress`.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives how many files of a phase are done."""

    def start(self, total: int, phase: str = "files") -> None:
        """A phase of ``total`` files begins (and any earlier phase ends)."""

    def advance(self, done: int = 1) -> None:
        """``done`` more files of the current phase are done."""


class _Silent:
    def start(self, total: int, phase: str = "files") -> None:
        return None

    def advance(self, done: int = 1) -> None:
        return None


NO_PROGRESS: Progress = _Silent()
"""A :class:`Progress` that shows nothing."""
