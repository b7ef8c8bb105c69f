"""``cdrpipe compact`` asking the lifecycle owner for a pass, and the owner's answer, through the store.

Contract: :func:`ask` records a request (``_cdrpipe/compaction/requests/<id>.json``,
created exclusively); the lifecycle owner looks for requests every few seconds
(:func:`pending`), runs a pass and :func:`answer` publishes what it did
(``_cdrpipe/compaction/answers/<id>.json``) and removes the request;
:func:`answer_of` reads it and removes it. A request nobody answers in time is
:func:`withdraw`-n by the command that asked. The files hold ids, dates, file
names and counts only.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict
from datetime import datetime

from pipeline.compaction.compactor import DateReport
from pipeline.store.naming import COMPACTION_DIR
from pipeline.store.storage import Storage

REQUESTS_DIR = f"{COMPACTION_DIR}/requests"
ANSWERS_DIR = f"{COMPACTION_DIR}/answers"


def ask(storage: Storage, now: datetime) -> str:
    """Record a request for a pass now; return its id."""
    request_id = f"{now:%Y%m%dT%H%M%S}Z{secrets.token_hex(4)}"
    document = {"requested_at": now.isoformat()}
    storage.create_exclusive(f"{REQUESTS_DIR}/{request_id}.json", json.dumps(document).encode())
    return request_id


def pending(storage: Storage) -> list[str]:
    """The ids of the requests not answered yet, oldest first."""
    return sorted(path.rsplit("/", 1)[-1].removesuffix(".json") for path in storage.list(REQUESTS_DIR))


def answer(storage: Storage, request_id: str, reports: list[DateReport]) -> None:
    """Publish what the pass did for ``request_id`` and remove the request."""
    document = {"dates": [asdict(report) for report in reports]}
    storage.publish(f"{ANSWERS_DIR}/{request_id}.json", json.dumps(document).encode())
    storage.delete(f"{REQUESTS_DIR}/{request_id}.json")


def answer_of(storage: Storage, request_id: str) -> list[DateReport] | None:
    """What the pass asked for by ``request_id`` did (the answer is then removed), or None if not done yet."""
    path = f"{ANSWERS_DIR}/{request_id}.json"
    data = storage.read(path)
    if data is None:
        return None
    storage.delete(path)
    return [DateReport(**fields) for fields in json.loads(data)["dates"]]


def withdraw(storage: Storage, request_id: str) -> None:
    """Remove a request nobody answered (an answer published meanwhile is removed too)."""
    storage.delete(f"{REQUESTS_DIR}/{request_id}.json")
    storage.delete(f"{ANSWERS_DIR}/{request_id}.json")
