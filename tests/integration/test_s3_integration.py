"""The S3 storage path against moto in server mode, with the endpoint failing on demand."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow.dataset as ds
import pytest

from pipeline.config.settings import load_settings
from pipeline.kafka.lag import ingest_lag
from pipeline.store.object_storage import open_storage
from tests.support.helpers import WorkerProcess, publish_demo, wait_stored
from tests.support.s3_support import FaultyProxy, boto3_client, moto_server, s3_store_env

pytestmark = pytest.mark.integration


def _health(env: dict[str, str]) -> int:
    try:
        url = f"http://127.0.0.1:{env['CDRPIPE_WEB_PORT']}/health"
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


def _stored_ids(env: dict[str, str]) -> list[str]:
    storage = open_storage(env["CDRPIPE_STORE"], env)
    files = [path for path in storage.list("cdr") if path.endswith(".parquet")]
    filesystem = storage._fs
    base = env["CDRPIPE_STORE"].removeprefix("s3://")
    dataset = ds.dataset([f"{base}/{path}" for path in files], filesystem=filesystem, format="parquet")
    return dataset.to_table(columns=["cdr_id"]).column("cdr_id").to_pylist()


def test_s3_store_survives_endpoint_errors_without_losing_or_duplicating(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    with moto_server() as moto_endpoint, FaultyProxy(int(moto_endpoint.rsplit(":", 1)[1])) as proxy:
        env = {
            **worker_env,
            **s3_store_env(proxy.endpoint),
            "CDRPIPE_FLUSH_SECONDS": "0.5",
            "CDRPIPE_FLUSH_ROWS": "3000",
        }
        first = publish_demo(env, 10_000, seed=31)
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        try:
            wait_stored(env, timeout_s=120)
            proxy.failing = True
            second = publish_demo(env, 10_000, seed=32)
            time.sleep(6)
            lag_while_failing = asyncio.run(ingest_lag(load_settings(env)))
            assert proxy.failures_served > 0
            assert lag_while_failing == 10_000, "offsets were committed while S3 was failing"
            assert _health(env) == 503
            proxy.failing = False
            wait_stored(env, timeout_s=180)
            assert _health(env) == 200
        finally:
            assert worker.stop() == 0, worker.log()[-3000:]
        assert "storage attempt 1/5 failed" in worker.log()
        stored = _stored_ids(env)
        assert len(stored) == len(set(stored)) == 20_000
        assert set(stored) == first | second
        frame = (
            pl.scan_parquet(
                "s3://lake/cdrpipe/cdr/**/*.parquet",
                hive_partitioning=True,
                storage_options={
                    "aws_endpoint_url": moto_endpoint,
                    "aws_access_key_id": "testing",
                    "aws_secret_access_key": "testing",
                    "aws_region": "us-east-1",
                    "aws_allow_http": "true",
                },
            )
            .select(pl.len())
            .collect()
        )
        assert frame.item() == 20_000
        storage = open_storage(env["CDRPIPE_STORE"], {**env, "AWS_ENDPOINT_URL": moto_endpoint})
        listed, now = storage.list("cdr"), datetime.now(UTC)
        assert listed and storage.list("cdr", modified_since=now - timedelta(hours=1)) == listed
        assert storage.list("cdr", modified_since=now + timedelta(hours=1)) == []


def test_a_missing_bucket_makes_the_worker_unhealthy_with_what_to_fix(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    with moto_server() as endpoint:
        env = {**worker_env, **s3_store_env(endpoint), "CDRPIPE_STORE": "s3://not-created-yet/cdrpipe"}
        published = publish_demo(env, 500, seed=33)
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        try:
            worker.wait_for("the store refuses writes", timeout_s=60)
            time.sleep(2)
            assert asyncio.run(ingest_lag(load_settings(env))) == 500, "offsets moved without the files"
            url = f"http://127.0.0.1:{env['CDRPIPE_WEB_PORT']}/health"
            with pytest.raises(urllib.error.HTTPError) as unhealthy:
                urllib.request.urlopen(url, timeout=10)
            assert unhealthy.value.code == 503
            assert "the bucket does not exist" in json.loads(unhealthy.value.read())["problem"]
            boto3_client(endpoint).create_bucket(Bucket="not-created-yet")
            wait_stored(env, timeout_s=120)
            assert _health(env) == 200
        finally:
            assert worker.stop() == 0, worker.log()[-3000:]
        assert worker.log().count("the store refuses writes") == 1, "the fix is logged once"
        assert "storage attempt 1/5 failed" not in worker.log(), "a terminal error is not retried"
        stored = open_storage(env["CDRPIPE_STORE"], env)
        assert len([path for path in stored.list("cdr") if path.endswith(".parquet")]) > 0
        assert len(published) == 500
