"""``mapped-csv/<name>``: a carrier's CSV export described by a mapping file, not by code.

A mapping (``schemas/mapping.schema.json``, examples in ``schemas/mappings/``)
names the delimiter, the column order, whether files start with a header
line, the source time zone, and for each canonical field either a column
(with a time format, a duration unit or a value map) or a constant.

Contract: :func:`load_mapping` raises :class:`~pipeline.errors.ConfigError`
for an unusable mapping; :meth:`MappedCsvDecoder.decode` follows the decoder
contract of :mod:`pipeline.formats`.
"""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from pipeline.errors import ConfigError
from pipeline.formats import DecodeContext
from pipeline.formats.local_time import earliest_instant, resolve_call_times
from pipeline.formats.numerals import decimal_number, strict_strptime
from pipeline.record import (
    MAX_RECORD_BYTES,
    CanonicalCdr,
    Direction,
    Disposition,
    RecordRejectedError,
    RejectReason,
    check_duration,
    check_year,
    validate,
)

PREFIX = "mapped-csv/"
_UNIT_SECONDS = {"s": 1.0, "ms": 0.001, "min": 60.0}


class FieldRule(msgspec.Struct, forbid_unknown_fields=True):
    """How one canonical field is read: a column (or columns joined by a space) or a constant."""

    column: str | None = None
    columns: list[str] | None = None
    value: str | None = None
    format: str | None = None
    unit: Literal["s", "ms", "min"] = "s"
    decimal: str = "."
    map: dict[str, str] | None = None


class CsvMapping(msgspec.Struct, forbid_unknown_fields=True):
    """A carrier export layout."""

    name: str
    columns: list[str]
    fields: dict[str, FieldRule]
    delimiter: str = ","
    header: bool = False
    time_zone: str = "UTC"
    description: str = ""


REQUIRED_FIELDS = ("cdr_id", "start_time", "duration_s", "caller", "callee", "direction", "disposition")


def load_mapping(path: Path) -> CsvMapping:
    """Read and check the mapping file at ``path``."""
    try:
        mapping = msgspec.json.decode(path.read_bytes(), type=CsvMapping)
    except (OSError, msgspec.DecodeError) as exc:
        raise ConfigError(f"mapping {path} cannot be used: {exc}") from None
    missing = [field for field in REQUIRED_FIELDS if field not in mapping.fields]
    if missing:
        raise ConfigError(f"mapping {path} does not say where to find {', '.join(missing)}")
    for field, rule in mapping.fields.items():
        for column in [rule.column, *(rule.columns or [])]:
            if column is not None and column not in mapping.columns:
                raise ConfigError(f"mapping {path}: field {field} names unknown column {column!r}")
        if rule.column is None and not rule.columns and rule.value is None:
            raise ConfigError(f"mapping {path}: field {field} needs a column, columns or a value")
    if len(mapping.delimiter) != 1:
        raise ConfigError(f"mapping {path}: delimiter must be one character")
    try:
        ZoneInfo(mapping.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"mapping {path}: unknown time zone {mapping.time_zone!r}") from None
    return mapping


def load_mappings(directory: Path | None) -> dict[str, CsvMapping]:
    """Every ``*.json`` mapping in ``directory``, by format name ``mapped-csv/<name>``."""
    if directory is None or not directory.is_dir():
        return {}
    mappings = [load_mapping(path) for path in sorted(directory.glob("*.json"))]
    return {PREFIX + mapping.name: mapping for mapping in mappings}


class MappedCsvDecoder:
    """Decodes lines of one mapped layout."""

    def __init__(self, mapping: CsvMapping) -> None:
        self.mapping = mapping
        self.name = PREFIX + mapping.name
        self._zone = ZoneInfo(mapping.time_zone)

    def decode(self, payload: bytes, context: DecodeContext) -> CanonicalCdr:
        """Decode one line of the export."""
        del context  # the mapping carries its own time zone
        row = self._row(payload)
        rules = self.mapping.fields
        duration = self._number(row, "duration_s") or 0.0
        disposition: Disposition = self._mapped(row, "disposition")  # type: ignore[assignment]
        start, answer, end = self._call_times(row, duration)
        billsec = self._number(row, "billsec_s")
        if billsec is None:
            billed_from = answer if answer is not None else (start if disposition == "answered" else end)
            billsec = (end - billed_from).total_seconds()
        duration_s = round(duration)
        cost = self._number(row, "cost")
        return validate(
            CanonicalCdr(
                cdr_id=self._text(row, "cdr_id"),
                source=self._text(row, "source") if "source" in rules else self.mapping.name,
                start_time=start,
                answer_time=answer,
                end_time=end,
                duration_s=duration_s,
                billsec_s=min(round(billsec), duration_s),
                caller=self._text(row, "caller"),
                callee=self._text(row, "callee"),
                direction=self._mapped(row, "direction"),  # type: ignore[arg-type]
                disposition=disposition,
                queue=self._optional(row, "queue"),
                hangup_cause=self._optional(row, "hangup_cause"),
                cost=cost,
                currency=self._optional(row, "currency"),
            )
        )

    def _row(self, payload: bytes) -> dict[str, str]:
        if len(payload) > MAX_RECORD_BYTES:
            raise RecordRejectedError(RejectReason.OVERSIZE, f"record exceeds {MAX_RECORD_BYTES} bytes")
        try:
            lines = payload.decode("utf-8").strip("\r\n").splitlines()
            rows = list(csv.reader(lines or [""], delimiter=self.mapping.delimiter, strict=True))
        except (UnicodeDecodeError, csv.Error):
            raise RecordRejectedError(RejectReason.UNDECODABLE, "line is not valid UTF-8 CSV") from None
        if len(rows) != 1 or len(rows[0]) != len(self.mapping.columns):
            raise RecordRejectedError(
                RejectReason.SCHEMA, f"expected one line of {len(self.mapping.columns)} columns"
            )
        return dict(zip(self.mapping.columns, rows[0], strict=True))

    def _text(self, row: dict[str, str], field: str) -> str:
        rule = self.mapping.fields[field]
        if rule.value is not None:
            return rule.value
        if rule.columns:
            return " ".join(row[column].strip() for column in rule.columns)
        assert rule.column is not None  # guaranteed by load_mapping
        return row[rule.column].strip()

    def _optional(self, row: dict[str, str], field: str) -> str | None:
        return (self._text(row, field) or None) if field in self.mapping.fields else None

    def _mapped(self, row: dict[str, str], field: str) -> str:
        text = self._text(row, field)
        rule = self.mapping.fields[field]
        value = rule.map.get(text, rule.map.get("*")) if rule.map is not None else text
        allowed: tuple[str, ...] = (
            Direction.__args__ if field == "direction" else Disposition.__args__  # type: ignore[attr-defined]
        )
        if value not in allowed:
            raise RecordRejectedError(RejectReason.SCHEMA, f"{field} value is not mapped to {allowed}")
        return value

    def _number(self, row: dict[str, str], field: str) -> float | None:
        if field not in self.mapping.fields:
            return None
        rule = self.mapping.fields[field]
        text = self._text(row, field).replace(rule.decimal, ".")
        if not text:
            return None
        number = decimal_number(text, field)
        if not math.isfinite(number) or abs(number) > 1e9:
            raise RecordRejectedError(RejectReason.OUT_OF_RANGE, f"{field} is out of range")
        return number * _UNIT_SECONDS[rule.unit] if field.endswith("_s") else number

    def _time(self, row: dict[str, str], field: str) -> datetime:
        rule = self.mapping.fields[field]
        text = self._text(row, field)
        try:
            if not text.isascii():
                raise ValueError("time text is not ASCII")
            if rule.format in (None, "iso8601"):
                moment = datetime.fromisoformat(text)
            elif rule.format in ("epoch_s", "epoch_ms"):
                seconds = decimal_number(text, field) / (1000 if rule.format == "epoch_ms" else 1)
                moment = datetime.fromtimestamp(seconds, tz=UTC)
            else:
                moment = strict_strptime(text, rule.format)
        except (ValueError, OverflowError, OSError, RecordRejectedError):
            message = f"{field} does not match its format"
            raise RecordRejectedError(RejectReason.INVALID_TIME, message) from None
        return moment

    def _call_times(self, row: dict[str, str], duration: float) -> tuple[datetime, datetime | None, datetime]:
        """UTC start, answer and end; zone-less times are read in the mapping's time zone."""
        rules = self.mapping.fields
        start = self._time(row, "start_time")
        answered = "answer_time" in rules and self._text(row, "answer_time")
        answer = self._time(row, "answer_time") if answered else None
        end = self._time(row, "end_time") if "end_time" in rules else None
        present = [moment for moment in (start, answer, end) if moment is not None]
        zoneless = [moment for moment in present if moment.tzinfo is None]
        if zoneless and len(zoneless) != len(present):
            raise RecordRejectedError(RejectReason.INVALID_TIME, "times mix zoned and zone-less values")
        if end is not None:
            if zoneless:
                return resolve_call_times(start, answer, end, duration, self._zone)
            return start, answer, end
        if zoneless:
            start = earliest_instant(start, self._zone, "start_time")
            answer = earliest_instant(answer, self._zone, "answer_time") if answer is not None else None
        check_year(start, "start_time")  # before the addition, which overflows near year 9999
        check_duration(duration)
        return start, answer, start + timedelta(seconds=duration)
