"""Last line of defence: log records lose anything shaped like a phone number.

Contract: after :func:`install`, every log record created by any logger
(cdrpipe's, Faust's, mode's, aiokafka's) is scrubbed when it is created,
before any handler, filter or formatter sees it:

* ``msg`` becomes the formatted message (``msg % args``) with numbers replaced,
  and ``args`` becomes empty, so a formatter that reads either sees no number;
* an exception becomes its scrubbed traceback text in ``exc_text`` (what the
  stdlib ``Formatter`` prints, in text and in JSON lines), and ``exc_info`` is
  cleared so no formatter can render the raw traceback again;
* ``stack_info`` is scrubbed too.

Python warnings are routed through logging (``py.warnings``), and the
tracebacks of uncaught exceptions (main thread and other threads), which
Python writes to standard error itself, are scrubbed the same way.

Numbers are what :mod:`pipeline.numbers.text` finds, plus the user part of
``tel:``/``sip:`` URIs. The code never logs numbers on purpose; this catches
third-party messages and exceptions that echo input.

Log arguments that are a SASL authentication request or response (aiokafka logs every
request at DEBUG, and a PLAIN login's bytes hold the password, an OAUTHBEARER one's the
token) are replaced by their type name before the message is formatted.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from types import TracebackType

from pipeline.numbers.text import REPLACEMENT, redact_numbers

_URI_USER = re.compile(r"(?i)\b(sips?|tel):[^\s;@>,'\"]+")
_TRACEBACKS = logging.Formatter()


def scrub(text: str) -> str:
    """``text`` with phone-number-shaped runs and URI user parts replaced."""
    return redact_numbers(_URI_USER.sub(rf"\1:{REPLACEMENT}", text))


def _withheld(argument: object) -> object:
    """A SASL authentication request or response as its type name only (it may hold a password or token)."""
    kind = type(argument).__name__
    return f"{kind}(<withheld: SASL exchange>)" if kind.startswith("SaslAuthenticate") else argument


class _ScrubbedLogRecord(logging.LogRecord):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if isinstance(self.args, tuple):
            self.args = tuple(_withheld(argument) for argument in self.args)
        try:
            message = super().getMessage()
        except Exception:  # a bad format must not break the caller
            message = f"{self.msg} (log arguments could not be formatted)"
        self.msg = scrub(message)
        self.args = ()
        if self.exc_info:
            self.exc_text = scrub(_TRACEBACKS.formatException(self.exc_info))
            self.exc_info = None
        elif self.exc_text:
            self.exc_text = scrub(self.exc_text)
        if self.stack_info:
            self.stack_info = scrub(self.stack_info)


def _write_scrubbed_traceback(
    kind: type[BaseException], value: BaseException, trace: TracebackType | None
) -> None:
    sys.stderr.write(scrub("".join(traceback.format_exception(kind, value, trace))))


def _thread_excepthook(hook: threading.ExceptHookArgs) -> None:
    if hook.exc_type is SystemExit:
        return
    name = hook.thread.name if hook.thread is not None else "?"
    sys.stderr.write(f"Exception in thread {name}:\n")
    _write_scrubbed_traceback(hook.exc_type, hook.exc_value or hook.exc_type(), hook.exc_traceback)


def install() -> None:
    """Scrub every log record created from now on, warnings and uncaught tracebacks (idempotent)."""
    logging.setLogRecordFactory(_ScrubbedLogRecord)
    logging.captureWarnings(True)
    sys.excepthook = _write_scrubbed_traceback
    threading.excepthook = _thread_excepthook
