"""The progress bar of the long DPO commands: files done of total and the time left, on a terminal only.

Contract: :func:`terminal_progress` gives a
:class:`~pipeline.observability.progress.Progress` that draws a ``tqdm`` bar on
standard error when standard error is a terminal, one bar per phase, and
:data:`~pipeline.observability.progress.NO_PROGRESS` otherwise, so a command
piped into a file or run by a scheduler prints nothing but its result. The bar
shows counts and a phase name, never a file name.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from tqdm import tqdm

from pipeline.observability.progress import NO_PROGRESS, Progress


class _Bar:
    """One ``tqdm`` bar per phase, on ``stream``."""

    def __init__(self, label: str, stream: IO[str]) -> None:
        self._label = label
        self._stream = stream
        self._bar: tqdm | None = None

    def start(self, total: int, phase: str = "files") -> None:
        self.close()
        self._bar = tqdm(total=total, desc=f"{self._label}: {phase}", unit=" files", file=self._stream,
                         dynamic_ncols=True, leave=False)  # fmt: skip

    def advance(self, done: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextmanager
def terminal_progress(label: str, stream: IO[str] | None = None) -> Iterator[Progress]:
    """A progress bar labelled ``label`` while the block runs, if ``stream`` (stderr) is a terminal."""
    out = stream if stream is not None else sys.stderr
    if not out.isatty():
        yield NO_PROGRESS
        return
    bar = _Bar(label, out)
    try:
        yield bar
    finally:
        bar.close()
