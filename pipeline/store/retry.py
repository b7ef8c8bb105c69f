"""The one retry policy of storage operations: transient failures again with exponential backoff.

Contract: :func:`storage_retrying` returns a tenacity policy that calls an
operation up to ``attempts`` times while it raises a transient
:class:`~pipeline.store.errors.StorageError`, sleeping
``first_backoff_s``, then twice as long each time, and logging each retry
(``storage attempt N/M failed, retrying in Xs: ...``). A
:class:`~pipeline.store.errors.TerminalStorageError` or any other
exception is raised at once; when the attempts run out, the last error is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from pipeline.store.errors import StorageError, TerminalStorageError


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, StorageError) and not isinstance(exc, TerminalStorageError)


def storage_retrying(
    attempts: int, first_backoff_s: float, sleep: Callable[[float], None], log: logging.Logger
) -> Retrying:
    """The policy for ``attempts`` tries with backoff from ``first_backoff_s``, pausing with ``sleep``.

    Retries are logged on ``log``, the logger of the operation's owner.
    """

    def report(state: RetryCallState) -> None:
        delay = state.upcoming_sleep
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "storage attempt %d/%d failed, retrying in %.1fs: %s",
            state.attempt_number,
            attempts,
            delay,
            error,
        )

    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=first_backoff_s, exp_base=2),
        retry=retry_if_exception(_transient),
        before_sleep=report,
        sleep=sleep,
        reraise=True,
    )
