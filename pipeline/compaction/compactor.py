"""Merge a call date's small files into a few large ones, exactly once.

A pass over one call date (:func:`compact_date`, under the lifecycle lock):

1. **Select.** Of both areas (``cdr/`` and ``restricted/``) of the date, the
   ingest files of every batch that is *committed and settled*: its first
   offset is below the partition's horizon (:func:`horizons`: the group's
   committed offset, and never the partition's latest batch, whose intent a
   worker that just lost the partition may still act on), and each of its
   files has been quiet (unmodified) for ``Policy.quiet_s``. Per topic and
   partition, the selected batches form one offset range ``[first, end)``
   that holds no unselected batch of the date. Compacted files of the date
   smaller than the target join them; larger ones only lend their
   identities to the duplicate check.
2. **Read and rebuild.** Rows of ``cdr/`` pass through the ledger as the
   publisher would route them now (erasures, rectifications, objections,
   restrictions newer than the inputs); rows of ``restricted/`` stay
   quarantined and get the erasures and rectifications. Copies of one CDR
   (:mod:`.duplicates`) are kept once, a quarantined copy first; rows are
   sorted by start time (then source and id) and cut into files of at most
   ``Policy.target_rows`` rows, so readers prune row groups by time.
3. **Journal.** ``_cdrpipe/compaction/journal/call_date=D.json`` records the
   inputs with the stamp (size, modification time) each had when it was
   listed, the outputs, the offset ranges they cover and the counts.
4. **Publish** the outputs (``compacted~<pass>~<n>.parquet``); each records
   the date's covered ranges in its footer (:data:`COVERS_METADATA_KEY`).
5. **Cover.** The date's coverage (:mod:`.coverage`) gets the ranges and the
   pass id: from now on no publisher adds rows of those offsets to the date.
6. **Swap.** Each input is deleted only if its stamp is unchanged; a changed
   one is kept (only a replay racing the pass changes one: its copies of the
   outputs' rows are removed as duplicates by the next pass). The temporary
   files that publishes killed mid-write left in the date's directories are
   removed (they may hold a subject's rows, and no publish of their names
   will come to remove them).
7. The manifests are brought up to date, an audit entry records the counts,
   and the journal is deleted.

A crash at any step loses and doubles nothing once :func:`recover` ran (the
worker runs it before every pass and every few seconds): a journal whose pass
id is the date's coverage pass is finished from step 6 (the outputs are
complete, the inputs' rows are covered); any other journal is undone (its
outputs deleted; the inputs, never touched, stay). Between steps 4 and 6 a
reader of the store sees the date's rows twice, for the time the deletes take.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.compaction.duplicates import IDENTITY, first_copies, identities
from pipeline.keys.fingerprint import KeyRef
from pipeline.lifecycle.ledger import SubjectLedger
from pipeline.lifecycle.requests.audit import append_audit
from pipeline.observability.metrics import (
    COMPACTION_DUPLICATES_REMOVED,
    COMPACTION_FILES_REPLACED,
    COMPACTION_FILES_WRITTEN,
)
from pipeline.sink.batch import TopicPartitionKey
from pipeline.sink.publisher import INTENT_DIR
from pipeline.store import coverage, manifest
from pipeline.store.naming import (
    AREAS,
    COMPACTION_DIR,
    DATASET,
    QUARANTINE,
    BatchOrigin,
    batch_origin,
    compacted_name,
    is_compacted,
    journal_date,
    journal_path,
    parse_data_path,
    partition_dir,
)
from pipeline.store.parquet import StoredFile, decode, encode
from pipeline.store.schema import CDR_SCHEMA
from pipeline.store.storage import Stamp, Storage

log = logging.getLogger(__name__)

COVERS_METADATA_KEY = b"cdrpipe.covers"
"""Footer key of a compacted file: the date's covered offset ranges (JSON, as in the coverage)."""
JOURNAL_FORMAT = 1
INPUT_READERS = 8
"""Inputs read at a time: on S3 each read is a round trip."""
_SORT_KEYS = [("start_time", "ascending"), ("source", "ascending"), ("cdr_id", "ascending")]


@dataclass(frozen=True, slots=True)
class Policy:
    """How large compacted files get, and how long an ingest file stays untouched before it is compacted."""

    target_rows: int
    quiet_s: float


@dataclass(frozen=True, slots=True)
class DateReport:
    """What compacting one call date did: the counts of its audit entry and of ``cdrpipe compact``."""

    call_date: str
    pass_id: str
    files_replaced: int
    files_written: int
    rows_read: int
    rows_written: int
    duplicates_removed: int
    rows_removed_by_ledger: int
    rows_quarantined: int
    inputs_changed: list[str] = field(default_factory=list)
    """Inputs changed during the pass, so kept (their copies of the outputs' rows go at the next pass)."""
    recovered: bool = False
    """True when :func:`recover` finished the swap of a pass cut short."""

    def describe(self) -> str:
        """One line for people: files and rows in and out, duplicates and ledger removals."""
        text = (
            f"call_date={self.call_date}: {self.files_replaced} files replaced by {self.files_written} "
            f"({self.rows_read:,} rows read, {self.rows_written:,} written, {self.duplicates_removed:,} "
            f"duplicates removed, {self.rows_removed_by_ledger:,} removed and {self.rows_quarantined:,} "
            "quarantined by the ledger)"
        )
        if self.inputs_changed:
            text += f"; {len(self.inputs_changed)} inputs changed during the pass were kept"
        return text + ("; finished after a crash" if self.recovered else "")


def horizons(
    committed: Mapping[TopicPartitionKey, int], intents: Iterable[str]
) -> dict[TopicPartitionKey, int]:
    """Per partition, the offset below which batches may be compacted.

    It is the group's committed offset, lowered to the first offset of the partition's
    latest committed batch when that batch's intent is still recorded (``intents``: the
    paths under the intent directory): a worker that lost the partition may be about
    to publish that batch again. A partition without a committed offset has no horizon.
    """
    bounds = dict(committed)
    for path in intents:
        origin = batch_origin(path.rsplit("/", 1)[-1])
        if origin is None or (key := (origin.topic, origin.partition)) not in committed:
            continue
        if origin.first_offset < committed[key]:
            # Intents below the latest committed one are leftovers of crashed owners: only the highest counts.
            latest = bounds[key] if bounds[key] < committed[key] else -1
            bounds[key] = max(latest, origin.first_offset)
    return bounds


def read_horizons(
    storage: Storage, committed: Mapping[TopicPartitionKey, int]
) -> dict[TopicPartitionKey, int]:
    """:func:`horizons` with the intents recorded in ``storage``."""
    return horizons(committed, storage.list(INTENT_DIR))


@dataclass(frozen=True, slots=True)
class _Listed:
    path: str
    area: str
    name: str
    stamp: Stamp


@dataclass(frozen=True, slots=True)
class _Selection:
    """The inputs of a date's pass, the ranges they cover, and the large compacted files left alone."""

    inputs: list[_Listed]
    added: dict[TopicPartitionKey, tuple[tuple[int, int], ...]]
    full: list[_Listed]


def _listing(storage: Storage, call_date: date) -> list[_Listed]:
    listed = []
    for area in AREAS:
        for path, stamp in storage.list_stamped(partition_dir(call_date, area)).items():
            parsed = parse_data_path(path)
            if parsed is not None and parsed.call_date == call_date:
                listed.append(_Listed(path, area, parsed.name, stamp))
    return listed


def _select(
    storage: Storage,
    call_date: date,
    listed: list[_Listed],
    *,
    bounds: Mapping[TopicPartitionKey, int],
    now: datetime,
    policy: Policy,
) -> _Selection:
    settled_before = int((now.timestamp() - policy.quiet_s) * 1e9)
    by_origin: dict[BatchOrigin, list[_Listed]] = {}
    compacted: list[_Listed] = []
    for file in listed:
        origin = batch_origin(file.name)
        if is_compacted(file.name):
            compacted.append(file)
        elif origin is not None:
            by_origin.setdefault(origin, []).append(file)
    # A batch is taken whole (its files in both areas) or not at all: its range is covered or not.
    settled: dict[TopicPartitionKey, list[int]] = {}
    unsettled: dict[TopicPartitionKey, list[int]] = {}
    for origin, files in by_origin.items():
        key = (origin.topic, origin.partition)
        bound = bounds.get(key)
        ready = bound is not None and origin.first_offset < bound
        ready = ready and all(file.stamp.modified_ns <= settled_before for file in files)
        (settled if ready else unsettled).setdefault(key, []).append(origin.first_offset)
    added: dict[TopicPartitionKey, tuple[tuple[int, int], ...]] = {}
    inputs: list[_Listed] = []
    for key, firsts in sorted(settled.items()):
        first = min(firsts)
        # The range ends before the first batch of the date left out, so it holds none.
        end = min([bounds[key], *(other for other in unsettled.get(key, ()) if other > first)])
        added[key] = ((first, end),)
        for offset in sorted(firsts):
            if offset < end:
                inputs.extend(by_origin[BatchOrigin(key[0], key[1], offset)])
    full: list[_Listed] = []
    if inputs:
        entries = {area: manifest.load(storage, area, call_date) for area in AREAS}
        for file in sorted(compacted, key=lambda listed_file: listed_file.path):
            (inputs if _rows(storage, file, entries[file.area]) < policy.target_rows else full).append(file)
    return _Selection(inputs, added, full)


def _rows(storage: Storage, file: _Listed, entries: Mapping[str, manifest.FileEntry]) -> int:
    entry = entries.get(file.name)
    if entry is not None and entry.fresh(file.stamp):
        return entry.rows
    with storage.open_input(file.path) as handle:
        return int(pq.read_metadata(handle).num_rows)


def candidate_dates(
    storage: Storage, bounds: Mapping[TopicPartitionKey, int], now: datetime, policy: Policy
) -> list[date]:
    """The call dates with settled ingest files to compact, from one listing of the store."""
    by_date: dict[date, list[_Listed]] = {}
    for area in AREAS:
        for path, stamp in storage.list_stamped(area).items():
            parsed = parse_data_path(path)
            if parsed is not None and not is_compacted(parsed.name):
                by_date.setdefault(parsed.call_date, []).append(_Listed(path, area, parsed.name, stamp))
    settled_before = int((now.timestamp() - policy.quiet_s) * 1e9)
    return sorted(
        call_date
        for call_date, files in by_date.items()
        if any(_may_be_settled(file, bounds, settled_before) for file in files)
    )


def _may_be_settled(file: _Listed, bounds: Mapping[TopicPartitionKey, int], settled_before: int) -> bool:
    origin = batch_origin(file.name)
    if origin is None or file.stamp.modified_ns > settled_before:
        return False
    bound = bounds.get((origin.topic, origin.partition))
    return bound is not None and origin.first_offset < bound


def new_pass_id(now: datetime) -> str:
    """A pass id: its start time and a random part (two passes in one second never share one)."""
    return f"{now:%Y%m%dT%H%M%S}Z{secrets.token_hex(3)}"


def compact_date(
    storage: Storage,
    ledger: SubjectLedger,
    call_date: date,
    *,
    bounds: Mapping[TopicPartitionKey, int],
    now: datetime,
    policy: Policy,
    pass_id: str | None = None,
) -> DateReport | None:
    """Compact ``call_date`` (module contract, steps 1-7); None when it has nothing settled to compact.

    A date whose earlier pass left a journal is not compacted until :func:`recover` ran.
    """
    if storage.read(journal_path(call_date)) is not None:
        log.warning("call_date=%s: a compaction journal is pending; recovering it first", call_date)
        return None
    selection = _select(
        storage, call_date, _listing(storage, call_date), bounds=bounds, now=now, policy=policy
    )
    if not any(batch_origin(file.name) for file in selection.inputs):
        return None
    pass_id = pass_id or new_pass_id(now)
    tables: dict[str, list[pa.Table]] = {DATASET: [], QUARANTINE: []}
    keys: set[KeyRef] = set()
    read: list[_Listed] = []
    with ThreadPoolExecutor(INPUT_READERS, thread_name_prefix="cdrpipe-compact") as readers:
        contents = list(readers.map(partial(_read_input, storage), selection.inputs))
    for file, content in zip(selection.inputs, contents, strict=True):
        if isinstance(content, str):
            log.warning(
                "call_date=%s is not compacted: %s cannot be read (%s)", call_date, file.path, content
            )
            return None
        if content is not None:  # else gone since the listing (only a replay's publish deletes one)
            tables[file.area].append(content.table)
            keys.update(content.keys)  # a rewrite passes on the keys of the files it read
            read.append(file)
    dataset_rows, quarantine_rows = (_concat(tables[area]) for area in (DATASET, QUARANTINE))
    routed = ledger.route(dataset_rows)
    held = [ledger.scrub(quarantine_rows)]
    if routed.quarantined is not None:
        held.append(routed.quarantined)
    quarantined = _concat(held)
    combined = _concat([quarantined, routed.kept])
    if combined.num_rows:
        keep = first_copies(combined, _stored_identities(storage, selection.full, combined))
    else:
        keep = pa.array([], pa.bool_())
    outputs_by_area = {
        QUARANTINE: quarantined.filter(keep.slice(0, quarantined.num_rows)),
        DATASET: routed.kept.filter(keep.slice(quarantined.num_rows)),
    }
    rows_read = dataset_rows.num_rows + quarantine_rows.num_rows
    written = sum(table.num_rows for table in outputs_by_area.values())
    duplicates = combined.num_rows - written
    before = coverage.load(storage, call_date)
    after = before.extended(pass_id, selection.added)
    covers = json.dumps(after.to_json()["covers"], separators=(",", ":")).encode()
    outputs: dict[str, bytes] = {}
    for area, table in outputs_by_area.items():
        for index, part in enumerate(_parts(table, policy.target_rows)):
            outputs[f"{partition_dir(call_date, area)}/{compacted_name(pass_id, index)}"] = encode(
                part, keys, {COVERS_METADATA_KEY: covers}
            )
    report = DateReport(
        call_date=call_date.isoformat(),
        pass_id=pass_id,
        files_replaced=len(read),
        files_written=len(outputs),
        rows_read=rows_read,
        rows_written=written,
        duplicates_removed=duplicates,
        rows_removed_by_ledger=rows_read - combined.num_rows,
        rows_quarantined=routed.quarantined.num_rows if routed.quarantined is not None else 0,
    )
    journal = {
        "format": JOURNAL_FORMAT,
        "pass": pass_id,
        "inputs": {file.path: [file.stamp.size, file.stamp.modified_ns, file.stamp.tag] for file in read},
        "outputs": sorted(outputs),
        "sweep_before": (now - timedelta(seconds=policy.quiet_s)).isoformat(),
        "report": asdict(report),
    }
    storage.publish(journal_path(call_date), json.dumps(journal, separators=(",", ":")).encode())
    for path, data in outputs.items():
        storage.publish(path, data)
    coverage.save(storage, call_date, after)
    return _finish(storage, call_date, journal, now, recovered=False)


def _read_input(storage: Storage, file: _Listed) -> StoredFile | str | None:
    """The rows and keys of an input, None if it is gone, or why it cannot be read."""
    data = storage.read(file.path)
    if data is None:
        return None
    try:
        return decode(data)
    except (OSError, ValueError) as exc:  # pyarrow's "not a Parquet file" errors are ValueErrors
        return str(exc)


def _concat(tables: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(tables) if tables else CDR_SCHEMA.empty_table()


def _stored_identities(storage: Storage, files: list[_Listed], rows: pa.Table) -> pa.Table | None:
    """The identities in the large compacted files ``files`` of rows that start when ``rows`` do.

    Only the row groups whose start times overlap those of ``rows`` are read (their statistics).
    """
    if not files:
        return None
    first, last = pc.min_max(rows.column("start_time")).values()
    window = [("start_time", ">=", first.as_py()), ("start_time", "<=", last.as_py())]
    found = []
    for file in files:
        with storage.open_input(file.path) as handle:
            found.append(identities(pq.read_table(handle, columns=list(IDENTITY), filters=window)))
    return pa.concat_tables(found)


def _parts(table: pa.Table, target_rows: int) -> list[pa.Table]:
    """``table`` sorted by start time, cut into the fewest files of at most ``target_rows``, of even size."""
    if table.num_rows == 0:
        return []
    ordered = table.take(pc.sort_indices(identities(table), sort_keys=_SORT_KEYS))
    count = math.ceil(table.num_rows / target_rows)
    size = math.ceil(table.num_rows / count)
    return [ordered.slice(start, size).combine_chunks() for start in range(0, table.num_rows, size)]


def _finish(
    storage: Storage, call_date: date, journal: Mapping[str, object], now: datetime, *, recovered: bool
) -> DateReport:
    """Steps 6-7: delete the unchanged inputs, update manifests, audit, forget the journal."""
    inputs = journal["inputs"]
    outputs = journal["outputs"]
    report_fields = journal["report"]
    sweep_before = datetime.fromisoformat(str(journal["sweep_before"]))
    if not isinstance(inputs, dict) or not isinstance(outputs, list) or not isinstance(report_fields, dict):
        raise ValueError(f"the compaction journal of call_date={call_date} is malformed")
    deleted, changed = [], []
    for path, (size, modified_ns, tag) in sorted(inputs.items()):
        stamp = storage.stamp(path)
        if stamp is None:
            continue  # deleted already (a crash after its delete), or by a replay the coverage emptied
        if not stamp.same_version(Stamp(size, modified_ns, tag)):
            changed.append(path)
            continue
        storage.delete(path)
        deleted.append(path)
    if changed:
        log.warning(
            "call_date=%s: %d files changed while they were compacted and are kept: %s",
            call_date,
            len(changed),
            ", ".join(changed),
        )
    for area in AREAS:
        # An orphaned temporary file of an input may hold its rows (a subject's): nothing will
        # publish that name again to remove it. Only those older than the quiet period go: a
        # publish takes milliseconds, so one in flight is never removed.
        storage.sweep_temporaries(partition_dir(call_date, area), older_than=sweep_before)
    manifest.record(storage, written=[str(path) for path in outputs], deleted=deleted)
    report = DateReport(**{**report_fields, "inputs_changed": changed, "recovered": recovered})
    append_audit(storage, "compaction", asdict(report), now)
    storage.delete(journal_path(call_date))
    COMPACTION_DUPLICATES_REMOVED.inc(report.duplicates_removed)
    COMPACTION_FILES_REPLACED.inc(len(deleted))
    COMPACTION_FILES_WRITTEN.inc(report.files_written)
    log.info("compacted %s", report.describe())
    return report


def recover(storage: Storage, now: datetime) -> list[DateReport]:
    """Finish or undo every pass a crash cut short (module contract); return the finished ones."""
    finished = []
    for path in storage.list(f"{COMPACTION_DIR}/journal"):
        call_date = journal_date(path)
        data = storage.read(path)
        if call_date is None or data is None:
            continue
        journal = json.loads(data)
        if journal.get("format") != JOURNAL_FORMAT:
            log.error("the compaction journal %s has an unknown format; its date is not compacted", path)
            continue
        if coverage.load(storage, call_date).pass_id == journal["pass"]:
            finished.append(_finish(storage, call_date, journal, now, recovered=True))
            continue
        # The coverage was not extended: no publisher relied on the outputs, the inputs are whole.
        outputs = [str(output) for output in journal["outputs"]]
        for output in outputs:
            storage.delete(output)
        manifest.record(storage, deleted=outputs)
        storage.delete(path)
        log.info(
            "call_date=%s: undid compaction pass %s cut short before its swap", call_date, journal["pass"]
        )
    return finished


def compact_store(
    storage: Storage,
    ledger: SubjectLedger,
    committed: Mapping[TopicPartitionKey, int],
    now: datetime,
    policy: Policy,
) -> list[DateReport]:
    """One whole pass in the calling thread: recover, then compact every candidate date.

    The worker runs the same steps with the lifecycle lock taken per date (see
    :mod:`pipeline.worker.compaction_timer`); this is the pass of the tests and benchmarks.
    """
    reports = recover(storage, now)
    bounds = read_horizons(storage, committed)
    pass_id = new_pass_id(now)
    for call_date in candidate_dates(storage, bounds, now, policy):
        report = compact_date(
            storage, ledger, call_date, bounds=bounds, now=now, policy=policy, pass_id=pass_id
        )
        if report is not None:
            reports.append(report)
    return reports
