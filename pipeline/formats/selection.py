"""Which decoder reads a message: the ``cdr-format`` header, else the topic's format, else sniffing.

Contract: :meth:`FormatSelector.decode` returns a validated record whose text
fields keep their policies (:mod:`pipeline.formats.text_policy`, the one place where
they are enforced for every format) or raises
:class:`~pipeline.record.RecordRejectedError` whose ``format_name`` says which
format was tried (``unknown`` when none could be chosen). Sniffing recognises
canonical JSON, FreeSWITCH JSON and Asterisk CSV by their shape; when a
payload fits none, or more than one, it is rejected as ``unknown_format``
rather than guessed. Mapped CSV layouts are never sniffed. Any other
exception a decoder raises becomes a rejection with reason ``decoder_error``
whose message names the exception type and the line, never its text.
"""

from __future__ import annotations

import csv
import logging
import re
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.formats import DecodeContext, Decoder, asterisk_csv, canonical_json, freeswitch_json
from pipeline.formats.mapped_csv import CsvMapping, MappedCsvDecoder
from pipeline.formats.text_policy import enforce_text_policies
from pipeline.record import CanonicalCdr, RecordRejectedError, RejectReason

log = logging.getLogger(__name__)
FORMAT_HEADER = "cdr-format"
UNKNOWN = "unknown"
_ASTERISK_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def builtin_decoders(mappings: Mapping[str, CsvMapping]) -> dict[str, Decoder]:
    """Every format this build reads, by name."""
    decoders: dict[str, Decoder] = {
        canonical_json.NAME: canonical_json.decode,
        asterisk_csv.NAME: asterisk_csv.decode,
        freeswitch_json.NAME: freeswitch_json.decode,
    }
    for name, mapping in mappings.items():
        decoders[name] = MappedCsvDecoder(mapping).decode
    return decoders


class FormatSelector:
    """Chooses and runs the decoder of each message."""

    def __init__(
        self, decoders: Mapping[str, Decoder], topic_formats: Mapping[str, str], context: DecodeContext
    ) -> None:
        unknown = sorted({name for name in topic_formats.values() if name not in decoders})
        if unknown:
            raise ConfigError(
                f"CDRPIPE_TOPIC_FORMATS names unknown formats {unknown}; known: {sorted(decoders)}"
            )
        self._decoders = dict(decoders)
        self._topic_formats = dict(topic_formats)
        self._context = context

    def decode(self, topic: str, headers: Sequence[tuple[str, bytes]], payload: bytes) -> CanonicalCdr:
        """Decode ``payload`` with the format chosen for it."""
        return self.decode_as(self.choose(topic, headers, payload), payload)

    def decode_as(self, name: str, payload: bytes) -> CanonicalCdr:
        """Decode ``payload`` as format ``name`` (one of this selector's formats)."""
        try:
            cdr = self._decoders[name](payload, self._context)
            return enforce_text_policies(cdr, self._context.classifier)  # the one place, every format
        except RecordRejectedError as rejected:
            rejected.format_name = name
            raise
        except Exception as exc:
            # A decoder bug must cost one record, never the worker: the record goes to the
            # DLQ. Only the exception's type and where it was raised are kept, because its
            # text may quote the payload (a phone number among it).
            where = _innermost_frame(exc)
            kind = type(exc).__name__
            log.error("decoder %s raised %s at %s; the record goes to the DLQ", name, kind, where)
            raise RecordRejectedError(
                RejectReason.DECODER_ERROR, f"decoder raised {kind} at {where}", name
            ) from None

    def choose(self, topic: str, headers: Sequence[tuple[str, bytes]], payload: bytes) -> str:
        """The format name for a message (header, then topic mapping, then sniffing)."""
        for key, value in headers:
            if key == FORMAT_HEADER:
                name = value.decode("utf-8", "replace").strip()
                if name not in self._decoders:
                    raise RecordRejectedError(
                        RejectReason.UNKNOWN_FORMAT, "cdr-format header names an unknown format", UNKNOWN
                    )
                return name
        configured = self._topic_formats.get(topic)
        if configured is not None:
            return configured
        candidates = sniff(payload)
        if len(candidates) != 1:
            message = (
                "payload matches no known format" if not candidates else "payload matches several formats"
            )
            raise RecordRejectedError(RejectReason.UNKNOWN_FORMAT, message, UNKNOWN)
        return candidates[0]


def _innermost_frame(exc: BaseException) -> str:
    """``file:line`` where ``exc`` was raised (no values: the traceback's text is not used)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown"
    frame = frames[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


def sniff(payload: bytes) -> list[str]:
    """The formats whose shape ``payload`` has (a cheap look, not a decode)."""
    head = payload[:1]
    if head.isspace():
        head = payload.lstrip()[:1]
    if head == b"{":
        candidates = []
        if b'"cdr_id"' in payload:
            candidates.append(canonical_json.NAME)
        if b'"variables"' in payload and (b'"callflow"' in payload or b'"core-uuid"' in payload):
            candidates.append(freeswitch_json.NAME)
        return candidates
    try:
        fields = next(csv.reader([payload[:4096].decode("utf-8", "replace").strip("\r\n")]), [])
    except csv.Error:
        return []
    if len(fields) in (18, 21) and _ASTERISK_TIME.fullmatch(fields[9].strip()):
        return [asterisk_csv.NAME]
    return []
