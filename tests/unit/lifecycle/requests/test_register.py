"""The register of subject requests: due dates, extension, overdue listing, purge, metrics, CLI."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest

from pipeline.cli import cli
from pipeline.errors import RequestRefusedError
from pipeline.keys.keyring import init_keyring
from pipeline.lifecycle.erasure import ErasureProcessor
from pipeline.lifecycle.ledger import SubjectLedger
from pipeline.lifecycle.operations.restriction import Ledger, Passes
from pipeline.lifecycle.requests.ids import check_request_id, new_request_id
from pipeline.lifecycle.requests.register import (
    REGISTER_DIR,
    add_months,
    close,
    extend,
    load_register,
    load_request,
    open_requests,
    purge_requests,
    record_answer,
    register_received,
)
from pipeline.lifecycle.requests.register_metrics import RequestRegisterMetrics
from pipeline.store.storage import LocalStorage
from tests.support.lifecycle_store import CLASSIFIER, KEYS, parquet_file
from tests.support.signed import signed


def _at(day: str, hour: int = 10) -> datetime:
    return datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC) + timedelta(hours=hour)


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        ("2026-01-31", 1, "2026-02-28"),
        ("2028-01-31", 1, "2028-02-29"),
        ("2026-03-31", 1, "2026-04-30"),
        ("2026-12-15", 1, "2027-01-15"),
        ("2026-01-31", 3, "2026-04-30"),
        ("2026-11-30", 3, "2027-02-28"),
        ("2026-05-05", 1, "2026-06-05"),
    ],
)
def test_months_end_on_the_same_day_or_the_last_day_of_a_shorter_month(
    start: str, months: int, expected: str
) -> None:
    assert add_months(date.fromisoformat(start), months) == date.fromisoformat(expected)


def test_due_date_is_one_month_and_registration_is_idempotent(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    record = register_received(storage, "acc-1", "access", _at("2026-01-31", 23))
    assert record.due == date(2026, 2, 28) and record.status == "open"
    again = register_received(storage, "acc-1", "access", _at("2026-02-10"))
    assert again.received_at == _at("2026-01-31", 23)
    assert not record.overdue(date(2026, 2, 28)) and record.overdue(date(2026, 3, 1))
    with pytest.raises(RequestRefusedError, match="registered as access, not erasure"):
        register_received(storage, "acc-1", "erasure", _at("2026-02-10"))


def test_one_extension_with_a_reason_before_the_due_date(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    register_received(storage, "res-1", "restriction", _at("2026-01-31"))
    with pytest.raises(RequestRefusedError, match="reason"):
        extend(storage, "res-1", "  ", _at("2026-02-10"))
    with pytest.raises(RequestRefusedError, match="phone number"):
        extend(storage, "res-1", "caller 0475 12 34 56 disputes two numbers", _at("2026-02-10"))
    extended = extend(storage, "res-1", "two disputed calls need the carrier's records", _at("2026-02-10"))
    assert extended.due == date(2026, 4, 30)
    assert extended.extension_reason == "two disputed calls need the carrier's records"
    with pytest.raises(RequestRefusedError, match="already extended"):
        extend(storage, "res-1", "once more", _at("2026-02-11"))
    assert [event["event"] for event in extended.history] == ["received", "extended"]

    register_received(storage, "late-1", "access", _at("2026-01-05"))
    with pytest.raises(RequestRefusedError, match="fell due on 2026-02-05"):
        extend(storage, "late-1", "too late to tell the subject", _at("2026-02-06"))
    register_received(storage, "done-1", "access", _at("2026-01-05"))
    close(storage, "done-1", _at("2026-01-06"), "exported 3 rows (jsonl)")
    with pytest.raises(RequestRefusedError, match="is closed"):
        extend(storage, "done-1", "no", _at("2026-01-07"))
    with pytest.raises(RequestRefusedError, match="no request nope"):
        extend(storage, "nope", "no", _at("2026-01-07"))


def test_a_request_closes_once_and_notes_keep_it_open(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    register_received(storage, "er-1", "erasure", _at("2026-03-01"))
    text = "receipt: verification FAILED; the request stays open"
    record_answer(storage, "er-1", _at("2026-03-02"), text, closes=False)
    record = load_request(storage, "er-1")
    assert record is not None and record.status == "open"
    close(storage, "er-1", _at("2026-03-03"), "verification passed")
    close(storage, "er-1", _at("2026-03-09"), "a second closing is ignored", status="rejected")
    record = load_request(storage, "er-1")
    assert record is not None
    assert (record.status, record.closed_at, record.outcome) == (
        "closed",
        _at("2026-03-03"),
        "verification passed",
    )
    assert [event["event"] for event in record.history] == ["received", "note", "closed"]


def test_open_requests_list_overdue_first(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    register_received(storage, "a-recent", "access", _at("2026-03-20"))
    register_received(storage, "b-overdue-late", "objection", _at("2026-02-10"))
    register_received(storage, "c-overdue-early", "erasure", _at("2026-02-01"))
    register_received(storage, "d-extended", "restriction", _at("2026-01-15"))
    extend(storage, "d-extended", "complex", _at("2026-02-01"))
    register_received(storage, "e-closed", "access", _at("2026-01-01"))
    close(storage, "e-closed", _at("2026-01-02"), "exported")
    today = date(2026, 3, 25)
    listed = open_requests(load_register(storage), today)
    assert [record.request_id for record in listed] == [
        "c-overdue-early",
        "b-overdue-late",
        "d-extended",  # due 2026-04-15
        "a-recent",  # due 2026-04-20
    ]
    assert [record.overdue(today) for record in listed] == [True, True, False, False]


def test_closed_requests_are_purged_after_six_months(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    register_received(storage, "old", "access", _at("2026-01-01"))
    extend(storage, "old", "volume", _at("2026-01-02"))
    close(storage, "old", _at("2026-01-10"), "exported")
    register_received(storage, "recent", "access", _at("2026-06-01"))
    close(storage, "recent", _at("2026-06-02"), "exported")
    register_received(storage, "still-open", "erasure", _at("2025-01-01"))
    now = _at("2026-07-13")  # 184 days after "old" closed, 41 after "recent"
    assert purge_requests(storage, 183, now) == 1
    assert sorted(record.request_id for record in load_register(storage)) == ["recent", "still-open"]
    assert not storage.list(f"{REGISTER_DIR}/old")
    assert purge_requests(storage, 183, now) == 0


def test_a_purge_cut_short_is_finished_and_never_reopens_a_request(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    register_received(storage, "cut", "access", _at("2026-01-01"))
    close(storage, "cut", _at("2026-01-02"), "exported")
    storage.delete(f"{REGISTER_DIR}/cut/received.json")  # what a crash after the purge's first delete leaves
    assert load_register(storage) == []
    purge_requests(storage, 183, _at("2026-01-03"))
    assert storage.list(REGISTER_DIR) == []


def test_request_ids_and_texts_hold_no_number() -> None:
    for bad in ("0475123456", "+32 475 12 34 56", "../etc", "", "a/b"):
        with pytest.raises(RequestRefusedError):
            check_request_id(bad, CLASSIFIER)
    assert check_request_id("DPO-2026-0042", CLASSIFIER) == "DPO-2026-0042"
    assert all(check_request_id(new_request_id(), CLASSIFIER) for _ in range(2_000))


def test_metrics_show_open_by_kind_overdue_and_oldest_age_only_after_a_reading(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    now = _at("2026-03-25", 12)
    collector = RequestRegisterMetrics(clock=lambda: now)
    registry = CollectorRegistry()
    registry.register(collector)
    assert b"cdrpipe_requests" not in generate_latest(registry)
    register_received(storage, "x1", "access", _at("2026-02-01", 12))
    register_received(storage, "x2", "access", _at("2026-03-20", 12))
    register_received(storage, "x3", "objection", _at("2026-03-24", 12))
    register_received(storage, "x4", "erasure", _at("2026-01-01", 12))
    close(storage, "x4", _at("2026-01-02"), "verification passed")
    collector.update(load_register(storage))
    text = generate_latest(registry).decode()
    assert 'cdrpipe_requests_open{kind="access"} 2.0' in text
    assert 'cdrpipe_requests_open{kind="objection"} 1.0' in text
    assert 'cdrpipe_requests_open{kind="erasure"} 0.0' in text
    assert "cdrpipe_requests_overdue 1.0" in text
    assert "cdrpipe_requests_oldest_open_age_seconds 4.4928e+06" in text  # 52 days
    collector.forget()
    assert b"cdrpipe_requests" not in generate_latest(registry)


def test_cli_lists_shows_extends_and_export_closes_the_access_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring_path = tmp_path / "keyring.json"
    keys = init_keyring(keyring_path)
    storage = LocalStorage(tmp_path / "store")
    storage.publish(
        "cdr/call_date=2026-11-01/t+0+0.parquet",
        parquet_file(
            keys.active,
            [
                ("a", "0475000111", "2026-11-01T10:00:00+00:00"),
                ("b", "0475999888", "2026-11-01T11:00:00+00:00"),
            ],
        ),
    )
    monkeypatch.setenv("CDRPIPE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("CDRPIPE_KEYRING", str(keyring_path))
    runner = CliRunner()
    long_ago = (datetime.now(UTC) - timedelta(days=60)).date().isoformat()
    added = runner.invoke(
        cli, ["requests", "add", "--kind", "objection", "--request-id", "obj-1", "--received", long_ago]
    )
    assert added.exit_code == 0, added.output
    assert runner.invoke(cli, ["requests", "add", "--kind", "access", "--request-id", "acc-1"]).exit_code == 0
    table = runner.invoke(cli, ["requests"]).stdout.splitlines()  # the context line: stderr
    assert table[0].split() == ["REQUEST", "KIND", "RECEIVED", "DUE", "STATE"]
    assert table[1].startswith("obj-1") and table[1].endswith("OVERDUE")
    assert table[2].startswith("acc-1") and table[2].endswith("open")

    refused = runner.invoke(cli, ["requests", "extend", "obj-1", "--reason", "too late"])
    assert refused.exit_code == 2 and "cannot be extended" in refused.output
    extended = runner.invoke(cli, ["requests", "extend", "acc-1", "--reason", "many years of records"])
    assert extended.exit_code == 0 and "extended: due" in extended.output

    out = tmp_path / "export.jsonl"
    exported = runner.invoke(
        cli, ["export", "--number", "+32475000111", "--out", str(out), "--request-id", "acc-1"]
    )
    assert exported.exit_code == 0, exported.output
    assert [json.loads(line)["cdr_id"] for line in out.read_text().splitlines()] == ["a"]
    listed = json.loads(runner.invoke(cli, ["requests", "--json"]).stdout)
    assert [(entry["request_id"], entry["overdue"]) for entry in listed] == [("obj-1", True)]
    shown = json.loads(runner.invoke(cli, ["requests", "show", "acc-1"]).stdout)
    assert shown["status"] == "closed" and shown["outcome"] == "exported 1 rows (jsonl, minimised)"
    assert [event["event"] for event in shown["history"]] == ["received", "extended", "closed"]
    assert "0475" not in "".join(path.read_text() for path in (tmp_path / "store").glob("_cdrpipe/**/*.json"))

    closed = runner.invoke(
        cli, ["requests", "close", "obj-1", "--outcome", "manifestly unfounded", "--rejected"]
    )
    assert closed.exit_code == 0 and "obj-1 rejected" in closed.output
    again = runner.invoke(cli, ["requests", "close", "obj-1", "--outcome", "answered"])
    assert again.exit_code == 1 and "already rejected" in again.output
    assert json.loads(runner.invoke(cli, ["requests", "--json"]).stdout) == []

    new = runner.invoke(
        cli, ["export", "--number", "+32475000111", "--out", str(out), "--request-id", "0475000111"]
    )
    assert new.exit_code == 2 and "must not contain a phone number" in new.output


def test_erasures_are_registered_on_arrival_and_closed_only_by_a_passed_receipt(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.publish(
        "cdr/call_date=2026-02-27/t+0+0.parquet",
        parquet_file(KEYS.active, [("a", "0475000111", "2026-02-27T10:00:00+00:00")]),
    )
    processor = ErasureProcessor(
        storage,
        lambda: KEYS,
        CLASSIFIER,
        ledger=Ledger(SubjectLedger(), lambda entry: None),
        passes=Passes(0, lambda seconds: None),
        residual_copies=list,
        clock=lambda: _at("2026-03-02"),
    )
    arrived = _at("2026-03-01")

    def erase(request_id: str, subject: str) -> None:
        payload = {"request_id": request_id, "subject": subject, "requested_at": arrived.isoformat()}
        processor.handle(signed(payload, KEYS))

    erase("er-ok", "+32475000111")
    storage.publish("cdr/call_date=2026-02-27/broken.parquet", b"not parquet")  # fails the next one
    erase("er-failed", "+32475000111")
    erase("er-rejected", "+3247")
    processor.handle(signed({"request_id": "er-malformed"}, KEYS))
    processor.handle(signed({"request_id": "0475000111", "requested_at": arrived.isoformat()}, KEYS))
    records = {record.request_id: record for record in load_register(storage)}
    assert set(records) == {"er-ok", "er-failed", "er-rejected"}
    assert records["er-ok"].status == "closed" and "verification passed" in (records["er-ok"].outcome or "")
    assert records["er-failed"].status == "open" and "FAILED" in records["er-failed"].history[-1]["text"]
    assert (
        records["er-rejected"].status == "open"
        and "not a subscriber number" in records["er-rejected"].history[-1]["text"]
    )


def test_free_texts_refuse_pseudonyms_too(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    register_received(storage, "p-1", "access", _at("2026-03-01"))
    with pytest.raises(RequestRefusedError, match="must not contain a pseudonym"):
        extend(storage, "p-1", "subject 1f0c2e3d4c5b6a7980a1b2c3d4e5f607 disputes", _at("2026-03-02"))
    assert extend(storage, "p-1", "the carrier's records are needed", _at("2026-03-02")).extension_reason


def test_cdrpipe_retention_purges_closed_requests_past_the_dpo_period(
    tmp_path: Path, keyring_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = LocalStorage(tmp_path)
    long_ago = datetime.now(UTC) - timedelta(days=200)
    register_received(storage, "old", "access", long_ago)
    close(storage, "old", long_ago + timedelta(days=1), "exported")
    register_received(storage, "open-old", "objection", long_ago)
    monkeypatch.setenv("CDRPIPE_STORE", str(tmp_path))
    monkeypatch.setenv("CDRPIPE_KEYRING", str(keyring_path))  # the purge seals a checkpoint
    dry = CliRunner().invoke(cli, ["retention", "--dry-run"])
    assert dry.exit_code == 0 and len(load_register(storage)) == 2
    result = CliRunner().invoke(cli, ["retention"])
    assert result.exit_code == 0, result.output
    assert "purged 1 DPO records" in result.output
    assert [record.request_id for record in load_register(storage)] == ["open-old"]


def test_answers_cdrpipe_composes_are_never_refused_but_people_s_texts_are(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    register_received(storage, "DPO-2026-0042", "access", _at("2026-03-01"))
    with pytest.raises(RequestRefusedError, match="must not contain a phone number"):
        close(storage, "DPO-2026-0042", _at("2026-03-02"), "called back on 0475 12 34 56")
    outcome = "exported 1234567 rows (jsonl, minimised); receipt _cdrpipe/receipts/DPO-2026-0042.json"
    record = record_answer(storage, "DPO-2026-0042", _at("2026-03-02"), outcome, closes=True)
    assert (record.status, record.outcome) == ("closed", outcome)
