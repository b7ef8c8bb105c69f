"""The DPO commands' progress bar: files done of total on a terminal, nothing otherwise."""

from __future__ import annotations

import io

from pipeline.cli.progress import terminal_progress
from pipeline.observability.progress import NO_PROGRESS


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_shows_files_done_of_total() -> None:
    stream = _Terminal()
    with terminal_progress("erase", stream) as progress:
        progress.start(40, "reading footers")
        progress.advance(10)
    shown = stream.getvalue()
    assert "erase: reading footers" in shown and "0/40" in shown


def test_output_that_is_not_a_terminal_gets_no_bar() -> None:
    stream = io.StringIO()
    with terminal_progress("erase", stream) as progress:
        progress.start(40)
        progress.advance(40)
    assert progress is NO_PROGRESS and stream.getvalue() == ""
