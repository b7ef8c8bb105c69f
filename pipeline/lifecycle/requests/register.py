"""The register of subject requests: every request, its due date, status and history.

Each request has a directory ``_cdrpipe/requests/<request id>/`` (the id's
:func:`~pipeline.lifecycle.requests.ids.path_name`) holding one
small immutable JSON file per event:

* ``received.json``: kind and received instant (created exclusively, so a
  re-delivered request is registered once);
* ``extended.json``: the one extension of art. 12(3), with its reason
  (exclusive: a second extension is refused);
* ``closed.json``: the closing instant, the status (``closed`` or
  ``rejected``) and a short outcome (exclusive: a request closes once);
* ``notes/<instant>-<n>.json``: anything else worth keeping in the history
  (a failed attempt, say), never deciding the status.

Every event file is sealed (``key_id`` and ``mac``, as chain entries are) and
created whole or not at all; once created it is linked into the register chain
(``_cdrpipe/register/<seq>.json``: its path and SHA-256, sealed and chained), so
:func:`verify_register` finds an event rewritten, deleted, inserted or
reordered. Files that cannot be read as events are skipped and reported.

Contract: the due date is one month after the received date, or three months
once extended (the month-end rule of Regulation 1182/71: 31 January + 1 month
is the last day of February). A request is overdue when it is open and today
is after its due date. :func:`purge_requests` deletes every file of a request
closed more than ``keep_days`` ago. Records hold request ids, kinds, instants,
reasons and outcomes; never a number or a pseudonym. Request ids are checked
once, where they enter (the request's decoder, the command line); texts a
person writes (an extension's reason, an outcome given to :func:`close`) are
checked by :func:`~pipeline.lifecycle.requests.ids.check_text`; the answers
cdrpipe composes from checked ids and counts (:func:`record_answer`) are not
checked again, so a request it accepted can always be closed.
"""

from __future__ import annotations

import calendar
import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, get_args

from pipeline.errors import RequestRefusedError
from pipeline.keys.keyring import Keyring
from pipeline.lifecycle.requests import skipped
from pipeline.lifecycle.requests.chain import (
    Chain,
    ChainReport,
    digest,
    seal,
    seal_problem,
    sealing_keyring,
)
from pipeline.lifecycle.requests.ids import check_text, path_name, request_id_of
from pipeline.store.storage import Storage

REGISTER_DIR = "_cdrpipe/requests"
REGISTER_CHAIN = Chain("_cdrpipe/register")
Kind = Literal["access", "erasure", "restriction", "lift", "objection", "withdrawal", "rectification"]
KINDS: tuple[Kind, ...] = get_args(Kind)
Status = Literal["open", "closed", "rejected"]
ANSWER_MONTHS = 1
EXTENDED_MONTHS = 3  # art. 12(3): one month, "extended by two further months"


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months; the last day of the month when that day is missing."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the register knows it."""

    request_id: str
    kind: Kind
    received_at: datetime
    status: Status
    extension_reason: str | None = None
    closed_at: datetime | None = None
    outcome: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def due(self) -> date:
        """The last day to answer: one month after receipt, three once extended."""
        months = EXTENDED_MONTHS if self.extension_reason is not None else ANSWER_MONTHS
        return add_months(self.received_at.date(), months)

    def overdue(self, today: date) -> bool:
        """True while the request is open after its due date."""
        return self.status == "open" and today > self.due

    def summary(self, today: date) -> dict[str, Any]:
        """The JSON form of the record (``cdrpipe requests --json`` and ``show``)."""
        return {
            "request_id": self.request_id,
            "kind": self.kind,
            "received_at": self.received_at.isoformat(),
            "due": self.due.isoformat(),
            "status": self.status,
            "overdue": self.overdue(today),
            "extension_reason": self.extension_reason,
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "outcome": self.outcome,
            "history": self.history,
        }


def _directory(request_id: str) -> str:
    return f"{REGISTER_DIR}/{path_name(request_id)}"


def _instant(moment: datetime) -> str:
    # One zone for every stored instant, so that history sorts by its text.
    if moment.tzinfo is None:
        raise ValueError("register instants carry a time zone")
    return moment.astimezone(UTC).isoformat()


def _write(storage: Storage, path: str, document: dict[str, Any]) -> bool:
    """Create the event file at ``path`` exclusively, sealed, and link it into the register chain."""
    data = json.dumps(seal(document, sealing_keyring().active), sort_keys=True).encode()
    if not storage.create_exclusive(path, data):
        return False
    link = {"kind": "event", "path": path, "sha256": digest(data), "recorded_at": _instant(datetime.now(UTC))}
    REGISTER_CHAIN.append(storage, link)
    return True


def register_received(storage: Storage, request_id: str, kind: Kind, received_at: datetime) -> RequestRecord:
    """Register a request (idempotent: an existing registration is kept); return its record."""
    _write(
        storage,
        f"{_directory(request_id)}/received.json",
        {"event": "received", "at": _instant(received_at), "kind": kind},
    )
    record = load_request(storage, request_id)
    assert record is not None  # just created, or created before
    if record.kind != kind:
        raise RequestRefusedError(f"request {request_id} is registered as {record.kind}, not {kind}")
    return record


def extend(storage: Storage, request_id: str, reason: str, now: datetime) -> RequestRecord:
    """Extend an open request by two months (once, before it falls due), stating ``reason``."""
    record = _existing(storage, request_id)
    if not reason.strip():
        raise RequestRefusedError("state the reason for the extension (art. 12(3))")
    check_text(reason, "the reason")
    if record.status != "open":
        raise RequestRefusedError(
            f"request {request_id} is {record.status}; only open requests can be extended"
        )
    # The subject must be told of an extension within the first month (art. 12(3)),
    # so an overdue request cannot be extended after the fact.
    if record.overdue(now.date()):
        raise RequestRefusedError(
            f"request {request_id} fell due on {record.due.isoformat()}; it cannot be extended"
        )
    document = {"event": "extended", "at": _instant(now), "reason": reason.strip()}
    if not _write(storage, f"{_directory(request_id)}/extended.json", document):
        raise RequestRefusedError(
            f"request {request_id} was already extended; art. 12(3) allows one extension"
        )
    return _existing(storage, request_id)


def close(
    storage: Storage, request_id: str, now: datetime, outcome: str, status: Status = "closed"
) -> RequestRecord:
    """Close a registered request with an ``outcome`` a person wrote (the first closing stands)."""
    check_text(outcome, "the outcome")
    return record_answer(storage, request_id, now, outcome, closes=True, status=status)


def record_answer(
    storage: Storage, request_id: str, now: datetime, text: str, *, closes: bool, status: Status = "closed"
) -> RequestRecord:
    """Close the request with ``text`` (``closes``) or add it as a note; return the record.

    ``text`` is composed by cdrpipe from checked ids, counts and its own words
    (a receipt's summary), so it is not checked again. Closing is idempotent:
    the first closing stands.
    """
    _existing(storage, request_id)
    if closes:
        document = {"event": status, "at": _instant(now), "status": status, "outcome": text}
        _write(storage, f"{_directory(request_id)}/closed.json", document)
    else:
        name = f"{now.strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.json"
        document = {"event": "note", "at": _instant(now), "text": text}
        _write(storage, f"{_directory(request_id)}/notes/{name}", document)
    return _existing(storage, request_id)


def _existing(storage: Storage, request_id: str) -> RequestRecord:
    record = load_request(storage, request_id)
    if record is None:
        raise RequestRefusedError(f"no request {request_id} in the register")
    return record


def load_request(storage: Storage, request_id: str) -> RequestRecord | None:
    """The record of ``request_id``, or None if it was never registered (or is purged)."""
    return _fold(request_id, _events(storage, storage.list(_directory(request_id))))


def _events(storage: Storage, paths: list[str]) -> list[dict[str, Any]]:
    """The events stored at ``paths``; a file that is not one is skipped and reported."""
    events = []
    for path in paths:
        document = skipped.json_object("register", path, storage.read(path))
        if document is None:
            continue
        if not isinstance(document.get("event"), str) or not isinstance(document.get("at"), str):
            skipped.skip("register", path, "not a register event")
            continue
        events.append({key: value for key, value in document.items() if key not in ("key_id", "mac")})
    return events


def _files_by_request(storage: Storage) -> dict[str, list[str]]:
    by_request: dict[str, list[str]] = {}
    for path in storage.list(REGISTER_DIR):
        request_id = request_id_of(path.removeprefix(REGISTER_DIR + "/").split("/", 1)[0])
        by_request.setdefault(request_id, []).append(path)
    return by_request


def load_register(storage: Storage) -> list[RequestRecord]:
    """Every registered request (one whose events cannot be folded is skipped and reported)."""
    records = []
    for request_id, paths in _files_by_request(storage).items():
        record = _fold_or_skip(request_id, _events(storage, paths))
        if isinstance(record, RequestRecord):
            records.append(record)
    return records


_UNREADABLE = object()
"""What :func:`_fold_or_skip` returns for a request whose events are not cdrpipe's."""


def _fold_or_skip(request_id: str, events: list[dict[str, Any]]) -> RequestRecord | object | None:
    """:func:`_fold`, or :data:`_UNREADABLE` (reported) when an event lacks a field or holds a bad instant."""
    try:
        return _fold(request_id, events)
    except (KeyError, ValueError, TypeError) as exc:
        # the type only: the file's content is not ours to log
        problem = f"its events cannot be read ({type(exc).__name__})"
        skipped.skip("register", f"{REGISTER_DIR}/{request_id}", problem)
        return _UNREADABLE


def _fold(request_id: str, events: list[dict[str, Any]]) -> RequestRecord | None:
    events = sorted(events, key=lambda event: (event["at"], event["event"] != "received"))
    received = next((event for event in events if event["event"] == "received"), None)
    if received is None:  # a purge cut short after it removed the registration
        return None
    extended = next((event for event in events if event["event"] == "extended"), None)
    closed = next((event for event in events if event["event"] in ("closed", "rejected")), None)
    return RequestRecord(
        request_id=request_id,
        kind=received["kind"],
        received_at=datetime.fromisoformat(received["at"]),
        status=closed["status"] if closed else "open",
        extension_reason=extended["reason"] if extended else None,
        closed_at=datetime.fromisoformat(closed["at"]) if closed else None,
        outcome=closed["outcome"] if closed else None,
        history=events,
    )


def open_requests(records: list[RequestRecord], today: date) -> list[RequestRecord]:
    """The open requests: overdue ones first, then by due date and receipt."""
    pending = [record for record in records if record.status == "open"]
    return sorted(pending, key=lambda record: (not record.overdue(today), record.due, record.received_at))


def purge_requests(storage: Storage, keep_days: int, now: datetime) -> int:
    """Delete the files of requests closed more than ``keep_days`` before ``now``; return how many."""
    cutoff = now - timedelta(days=keep_days)
    purged = 0
    for request_id, paths in _files_by_request(storage).items():
        folded = _fold_or_skip(request_id, _events(storage, paths))
        if folded is _UNREADABLE:
            continue  # kept as evidence: never purged on the strength of a file that is not ours
        record = folded if isinstance(folded, RequestRecord) else None
        if record is not None and (record.closed_at is None or record.closed_at >= cutoff):
            continue
        link = {"kind": "purge", "request_id": request_id, "recorded_at": _instant(now)}
        REGISTER_CHAIN.append(storage, link)
        # received.json goes first: a purge cut short leaves a request without its
        # registration, which no listing shows (never one that looks open again)
        # and which the next purge finishes.
        for path in sorted(paths, key=lambda path: not path.endswith("/received.json")):
            storage.delete(path)
        purged += record is not None
    present = set(storage.list(REGISTER_DIR))

    def expired(link: dict[str, Any]) -> bool:  # never the link of an event still in the register
        recorded = datetime.fromisoformat(str(link.get("recorded_at", _instant(now))))
        return recorded < cutoff and link.get("path") not in present

    REGISTER_CHAIN.purge(storage, expired, _instant(now))
    return purged


def verify_register(storage: Storage, keyring: Keyring) -> ChainReport:
    """Verify the register chain and every event file against it; the report names each break.

    An event file whose seal fails was rewritten; one without a link was
    inserted (or its writer was killed between the two creates); a link whose
    file is gone, its request not purged, names a deleted event.
    """
    report = REGISTER_CHAIN.verify(storage, keyring)
    links = {
        str(link["path"]): str(link.get("sha256")) for link in report.documents if link.get("kind") == "event"
    }
    chained = report.documents
    linked_at = {str(link["path"]): link["seq"] for link in chained if link.get("kind") == "event"}
    # a purge excuses the events recorded before it: a request id used again after its purge is not
    purged = {str(link["request_id"]): link["seq"] for link in chained if link.get("kind") == "purge"}
    breaks = list(report.breaks)
    present = storage.list(REGISTER_DIR)
    for path in present:
        data = storage.read(path)
        document = skipped.json_object("register", path, data)
        if data is None or document is None:
            breaks.append(f"register file {path} cannot be read as an event")
            continue
        problem = seal_problem(document, keyring)
        if problem is not None:
            breaks.append(f"register file {path}: {problem}")
        elif path in links and links[path] != digest(data):
            breaks.append(f"register file {path} differs from the one the chain recorded: it was rewritten")
        elif path not in links:
            breaks.append(f"register file {path} is not in the register chain: it was inserted")
    for path in sorted(set(links) - set(present)):
        if purged.get(path.removeprefix(REGISTER_DIR + "/").split("/", 1)[0], -1) < linked_at[path]:
            breaks.append(f"register file {path} is gone but its request was never purged: it was deleted")
    return replace(report, breaks=breaks)
