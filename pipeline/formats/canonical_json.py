"""``canonical-json``: cdrpipe's own CDR JSON (``schemas/cdr.schema.json``).

Contract: :func:`decode` returns a validated record or raises
:class:`~pipeline.record.RecordRejectedError`; unknown fields are ignored so that
producers can add fields without breaking consumers.
"""

from __future__ import annotations

import msgspec

from pipeline.formats import DecodeContext
from pipeline.record import (
    MAX_RECORD_BYTES,
    SCHEMA_VERSION,
    CanonicalCdr,
    RecordRejectedError,
    RejectReason,
    validate,
)

NAME = "canonical-json"
_DECODER = msgspec.json.Decoder(CanonicalCdr)


def decode(payload: bytes, context: DecodeContext) -> CanonicalCdr:
    """Decode one canonical JSON CDR (times carry their own offsets; ``context`` is not needed)."""
    del context
    if len(payload) > MAX_RECORD_BYTES:
        raise RecordRejectedError(RejectReason.OVERSIZE, f"record exceeds {MAX_RECORD_BYTES} bytes")
    try:
        cdr = _DECODER.decode(payload)
    except msgspec.ValidationError as exc:
        raise RecordRejectedError(RejectReason.SCHEMA, _field_message(str(exc))) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise RecordRejectedError(RejectReason.UNDECODABLE, "payload is not valid UTF-8 JSON") from None
    if cdr.schema_version > SCHEMA_VERSION:
        raise RecordRejectedError(RejectReason.SCHEMA, f"schema_version is newer than {SCHEMA_VERSION}")
    return validate(cdr)


def _field_message(validation_message: str) -> str:
    """msgspec's message names the type and the field path, but for enums it quotes values.

    Keep only the part that cannot echo input: the expectation and the path.
    """
    expectation, _, path = validation_message.partition(" - at ")
    if "Invalid enum value" in expectation:
        expectation = "Invalid enum value"
    return f"{expectation} - at {path}" if path else expectation
