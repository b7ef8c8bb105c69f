"""Two workers on one topic and an S3 store (moto server): every record once, lifecycle work serial."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from pipeline.keys.keyring import load_keyring
from pipeline.lifecycle.subject import subject_from_number
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.store.object_storage import ObjectStorage, open_storage
from tests.support.broker_requests import SUBJECT, lifecycle_env, run_cli, send_cdrs, traffic
from tests.support.helpers import start_workers, wait_stored
from tests.support.s3_support import moto_server, s3_store_env

pytestmark = pytest.mark.integration


def _stored_rows(env: dict[str, str]) -> list[dict[str, str | None]]:
    storage = open_storage(env["CDRPIPE_STORE"], env)
    assert isinstance(storage, ObjectStorage)
    base = env["CDRPIPE_STORE"].removeprefix("s3://")
    files = [f"{base}/{path}" for path in storage.list("cdr") if path.endswith(".parquet")]
    columns = ["cdr_id", "caller_pseudonym", "callee_pseudonym"]
    dataset = ds.dataset(files, filesystem=storage._fs, format="parquet")
    return dataset.to_table(columns=columns).to_pylist()


def test_two_workers_on_s3_write_every_record_once_and_erase_serially(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    with moto_server() as endpoint:
        env = {
            **lifecycle_env(worker_env),
            **s3_store_env(endpoint),
            "CDRPIPE_RETENTION_INTERVAL_S": "2",
        }
        cdrs, subject_rows = traffic(12_000, seed=91, subject_every=15)
        workers = start_workers(env, tmp_path, 2)
        try:
            send_cdrs(env, cdrs)
            wait_stored(env, timeout_s=180)
            assert all("published" in worker.log() for worker in workers), "one worker did all the work"
            receipt = json.loads(run_cli(env, "erase", "--number", SUBJECT, "--request-id", "scale-1",
                                      "--wait", "240").stdout)  # fmt: skip
            time.sleep(3)  # at least one retention tick after the erasure
        finally:
            codes = [worker.stop() for worker in workers]
        assert codes == [0, 0], [worker.log()[-3000:] for worker in workers]

        assert receipt["verification"]["passed"] and receipt["rows_removed"] == subject_rows
        erasing = [worker for worker in workers if "erasure scale-1 started" in worker.log()]
        assert len(erasing) == 1, "the erasure ran in more than one worker"
        retaining = [worker for worker in workers if "retention:" in worker.log()]
        assert retaining == erasing, "retention must run where erasures run, and only there"

        rows = _stored_rows(env)
        ids = [row["cdr_id"] for row in rows]
        subject = subject_from_number(
            SUBJECT, load_keyring(Path(env["CDRPIPE_KEYRING"])), NumberClassifier("BE", (2, 5))
        )
        assert len(ids) == len(set(ids)) == len(cdrs) - subject_rows
        parties = [{row["caller_pseudonym"], row["callee_pseudonym"]} for row in rows]
        assert not [pair for pair in parties if pair & subject.pseudonyms]
