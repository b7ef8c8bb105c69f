"""Subject requests on the real broker: one subject's demo traffic, the CLI and the worker environment."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import msgspec

from pipeline.cli import demo
from pipeline.record import CanonicalCdr
from tests.support.helpers import REPO, broker_address, publish

SUBJECT = "+32475000111"

SPELLINGS = [
    "0475 00 01 11",
    "+32475000111",
    "0032475000111",
    "tel:+32-475-000111",
    "sip:+32475000111@sbc.example",
]

NOW = datetime.now(UTC).replace(microsecond=0)


def traffic(
    count: int, seed: int, subject_every: int, start: datetime = NOW
) -> tuple[list[CanonicalCdr], int]:
    """Demo CDRs where every ``subject_every``-th call is from (or, one in three, to) the subject."""
    cdrs, subject_rows = [], 0
    for index, generated in enumerate(demo.generate(count, seed=seed, start=start, days=2)):
        cdr = generated
        if index % subject_every == 0:
            spelling = SPELLINGS[index % len(SPELLINGS)]
            if index % 3 == 0:
                cdr = msgspec.structs.replace(
                    cdr, callee=spelling, caller="+3225550100", direction="outbound"
                )
            else:
                cdr = msgspec.structs.replace(cdr, caller=spelling, direction="inbound")
            subject_rows += 1
        cdrs.append(cdr)
    return cdrs, subject_rows


def send_cdrs(env: dict[str, str], cdrs: list[CanonicalCdr]) -> None:
    bootstrap = broker_address(env)
    asyncio.run(publish(bootstrap, env["CDRPIPE_RAW_TOPICS"], (demo.encode(cdr) for cdr in cdrs)))


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 240, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``cdrpipe ARGS`` in ``env``; with ``check``, it must exit 0."""
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0 or not check, result.stderr
    return result


def lifecycle_env(worker_env: dict[str, str]) -> dict[str, str]:
    return {
        **worker_env,
        "CDRPIPE_FLUSH_SECONDS": "1",
        "CDRPIPE_ERASURE_SETTLE_S": "4",
        "CDRPIPE_ERASURE_TOPIC": f"cdr.erasure.requests.{worker_env['CDRPIPE_APP_ID']}",
        "CDRPIPE_LEDGER_TOPIC": f"cdr.erasure.ledger.{worker_env['CDRPIPE_APP_ID']}",
        "CDRPIPE_RECEIPTS_TOPIC": f"cdr.erasure.receipts.{worker_env['CDRPIPE_APP_ID']}",
    }


def rights_env(worker_env: dict[str, str]) -> dict[str, str]:
    """:func:`lifecycle_env` with the subject request topics of this run too."""
    run = worker_env["CDRPIPE_APP_ID"]
    return {
        **lifecycle_env(worker_env),
        "CDRPIPE_SUBJECT_REQUESTS_TOPIC": f"cdr.subject.requests.{run}",
        "CDRPIPE_SUBJECT_RECEIPTS_TOPIC": f"cdr.subject.receipts.{run}",
    }


SECURITY = ("CDRPIPE_BROKER", "CDRPIPE_KAFKA_")


def as_principal(principal: dict[str, str], env: dict[str, str]) -> dict[str, str]:
    """``env`` with the broker settings of ``principal`` only."""
    return {**{name: value for name, value in env.items() if not name.startswith(SECURITY)}, **principal}


def secure_envs(
    secure_kafka: dict[str, dict[str, str]], worker_env_on: Callable[[str], dict[str, str]]
) -> dict[str, dict[str, str]]:
    """Worker, DPO and producer environments sharing one store, keyring and set of topics."""
    bootstrap = secure_kafka["worker"]["CDRPIPE_BROKER"].removeprefix("kafka://")
    base = rights_env(worker_env_on(bootstrap))
    return {user: as_principal(settings, base) for user, settings in secure_kafka.items()}


def pseudonym_rows(store: str, area: str, pseudonyms: frozenset[str]) -> int:
    """Rows of a local store's ``area`` where a party is one of ``pseudonyms``."""
    files = list(Path(store, area).glob("*/*.parquet"))
    if not files:
        return 0
    listed = ", ".join(f"'{path}'" for path in files)
    wanted = ", ".join(f"'{pseudonym}'" for pseudonym in pseudonyms)
    query = f"""SELECT count(*) FROM read_parquet([{listed}])
                WHERE caller_pseudonym IN ({wanted}) OR callee_pseudonym IN ({wanted})"""
    ((count,),) = duckdb.sql(query).fetchall()
    return int(count)
