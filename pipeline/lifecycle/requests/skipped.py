"""Files under ``_cdrpipe/`` that readers skip: empty, truncated or foreign ones, reported once each.

Contract: :func:`skip` logs a path the first time it is skipped in this process and counts it in
``cdrpipe_dpo_records_skipped`` once; readers then carry on without it, so one bad file never stops
a listing, a purge or a timer.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pipeline.observability.metrics import DPO_RECORDS_SKIPPED

log = logging.getLogger(__name__)
_reported: set[str] = set()


def skip(area: str, path: str, problem: str) -> None:
    """Report that ``path`` of ``area`` (``audit``, ``register``, ``receipts``) is skipped, and why."""
    if path in _reported:
        return
    _reported.add(path)
    DPO_RECORDS_SKIPPED.labels(area=area).inc()
    log.warning("skipping %s: %s", path, problem)


def json_object(area: str, path: str, data: bytes | None) -> dict[str, Any] | None:
    """The JSON object stored at ``path``, or None (reported through :func:`skip`) if it is not one."""
    if data is None:
        return None
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: crafted deep nesting
        document = None
    if not isinstance(document, dict):
        skip(area, path, "not a JSON object (empty, truncated or not written by cdrpipe)")
        return None
    return document
