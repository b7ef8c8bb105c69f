"""An S3 store at rest (moto in server mode): encryption checked at start, no object overwritten."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from pipeline.config.settings import Settings, load_settings
from pipeline.errors import ConfigError
from pipeline.lifecycle.requests.audit import append_audit, read_audit, verify_audit
from pipeline.store.object_storage import ObjectStorage, open_storage
from pipeline.worker import app as app_module
from pipeline.worker.app import create_app
from tests.conftest import SEALING_KEYRING
from tests.support.s3_support import BUCKET, CREDENTIALS, boto3_client, moto_server, s3_store_env

pytestmark = pytest.mark.integration


def _storage(endpoint: str) -> ObjectStorage:
    env = s3_store_env(endpoint)
    storage = open_storage(env["CDRPIPE_STORE"], env)
    assert isinstance(storage, ObjectStorage)
    return storage


def test_conditional_writes_refuse_an_overwrite(monkeypatch: pytest.MonkeyPatch) -> None:
    with moto_server() as endpoint:
        for (
            name,
            value,
        ) in CREDENTIALS.items():  # pyarrow's AWS SDK reads its credentials from the environment
            monkeypatch.setenv(name, value)
        storage = _storage(endpoint)
        assert storage.create_exclusive("_cdrpipe/receipts/r-1.json", b'{"first": true}')
        assert not storage.create_exclusive("_cdrpipe/receipts/r-1.json", b'{"second": true}')
        assert storage.read("_cdrpipe/receipts/r-1.json") == b'{"first": true}'
        append_audit(storage, "erasure", {"request_id": "r-1"}, datetime.now(UTC))
        append_audit(storage, "erasure", {"request_id": "r-2"}, datetime.now(UTC))
        assert [entry["request_id"] for entry in read_audit(storage)] == ["r-1", "r-2"]
        assert verify_audit(storage, SEALING_KEYRING).intact


def test_default_encryption_is_read_from_the_bucket() -> None:
    with moto_server() as endpoint:
        assert _storage(endpoint).default_encryption() == "AES256"
        boto3_client(endpoint).delete_bucket_encryption(Bucket=BUCKET)
        assert _storage(endpoint).default_encryption() is None
    with moto_server(encrypted=False) as endpoint:
        assert _storage(endpoint).default_encryption() is None


EnvOn = Callable[[str], dict[str, str]]


def _worker_settings(worker_env_on: EnvOn, endpoint: str, **extra: str) -> Settings:
    return load_settings({**worker_env_on("127.0.0.1:9"), **s3_store_env(endpoint), **extra})


@pytest.mark.parametrize("encrypted", [True, False])
def test_the_worker_refuses_a_bucket_that_does_not_encrypt(
    worker_env_on: EnvOn, encrypted: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with moto_server(encrypted=encrypted) as endpoint:
        for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}.items():  # the worker reads these
            monkeypatch.setenv(name, value)
        settings = _worker_settings(worker_env_on, endpoint)
        if encrypted:
            with caplog.at_level(logging.INFO, logger="pipeline.worker.app"):
                create_app(settings)
            assert "encrypts at rest by default with AES256" in caplog.text
            assert app_module._store_encryption == {"store_encryption": "AES256"}  # shown in /health
        else:
            with pytest.raises(ConfigError, match="has no default encryption: enable it"):
                create_app(settings)
            allowed = _worker_settings(worker_env_on, endpoint, CDRPIPE_S3_ALLOW_UNENCRYPTED="true")
            with caplog.at_level(logging.WARNING, logger="pipeline.worker.app"):
                create_app(allowed)
            assert "DOES NOT ENCRYPT AT REST" in caplog.text
