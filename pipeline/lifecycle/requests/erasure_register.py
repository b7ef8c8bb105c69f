"""Erasure requests in the register of requests: registered on arrival, closed by their receipt.

Contract: :func:`register_erasure` registers the request in a message of the
erasure topic before it is carried out (a message too malformed to name its
request id and receipt instant is not registered: its rejected receipt says
why). :func:`close_erasure` closes the entry when the receipt is completed and
its verification passed; a failed verification or a rejection adds a note and
leaves the request open (a corrected request may reuse the id, as the
erasure processor allows). Neither raises for a request id the register
cannot hold: that is logged and the erasure goes on.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

import msgspec

from pipeline.errors import RequestRefusedError
from pipeline.lifecycle.requests.receipts import Receipt, receipt_path
from pipeline.lifecycle.requests.register import close, load_request, note, register_received
from pipeline.store.storage import Storage

log = logging.getLogger(__name__)


class _Arrival(msgspec.Struct):
    request_id: str
    requested_at: Annotated[datetime, msgspec.Meta(tz=True)]


_ARRIVAL = msgspec.json.Decoder(_Arrival)


def register_erasure(storage: Storage, payload: bytes) -> None:
    """Register the erasure request in ``payload`` as received at its ``requested_at``."""
    try:
        arrival = _ARRIVAL.decode(payload)
    except msgspec.DecodeError:
        return
    try:
        register_received(storage, arrival.request_id, "erasure", arrival.requested_at)
    except RequestRefusedError as exc:
        log.error("an erasure request was not registered: %s", exc)


def close_erasure(storage: Storage, receipt: Receipt, now: datetime) -> None:
    """Close (or annotate) the register entry of the erasure that ``receipt`` answers."""
    try:
        _answer(storage, receipt, now)
    except RequestRefusedError as exc:  # an id or text the register refuses; the erasure itself is done
        log.error("the erasure's register entry was not updated: %s", exc)


def _answer(storage: Storage, receipt: Receipt, now: datetime) -> None:
    if load_request(storage, receipt.request_id) is None:
        return
    if receipt.status == "rejected":
        note(storage, receipt.request_id, now, f"rejected: {receipt.reason}; the request stays open")
    elif receipt.passed:
        close(
            storage,
            receipt.request_id,
            now,
            f"receipt {receipt_path(receipt.request_id)}: verification passed",
        )
    else:
        note(storage, receipt.request_id, now, "verification FAILED; the request stays open")
