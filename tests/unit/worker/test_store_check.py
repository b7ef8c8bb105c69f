"""The worker's start check of an S3 bucket's default encryption, against answers S3 can give."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from pipeline.config.settings import StoreSettings
from pipeline.errors import ConfigError
from pipeline.store.object_storage import ObjectStorage
from pipeline.worker import app as app_module


class _Client:
    """A boto3 S3 client that answers GetBucketEncryption with ``answer`` (a dict, or an error code)."""

    def __init__(self, answer: dict[str, Any] | str) -> None:
        self.answer = answer

    def get_bucket_encryption(self, Bucket: str) -> dict[str, Any]:  # noqa: N803 - boto3's spelling
        del Bucket
        if isinstance(self.answer, str):
            raise ClientError({"Error": {"Code": self.answer, "Message": self.answer}}, "GetBucketEncryption")
        return self.answer


def _check(answer: dict[str, Any] | str, **settings: Any) -> str:
    storage = ObjectStorage(None, _Client(answer), "lake/cdrpipe", "s3://lake/cdrpipe")
    app_module._store_encryption.clear()
    app_module._check_store(storage, StoreSettings.model_validate(settings))
    return app_module._store_encryption["store_encryption"]


def _rule(algorithm: str) -> dict[str, Any]:
    rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": algorithm}}
    return {"ServerSideEncryptionConfiguration": {"Rules": [rule]}}


def test_kms_and_sse_s3_buckets_pass() -> None:
    assert _check(_rule("aws:kms")) == "aws:kms"
    assert _check(_rule("AES256")) == "AES256"


def test_a_bucket_without_encryption_is_refused() -> None:
    with pytest.raises(ConfigError, match="no default encryption"):
        _check("ServerSideEncryptionConfigurationNotFoundError")


def test_a_bucket_not_created_yet_is_unknown() -> None:
    assert _check("NoSuchBucket").startswith("unknown")


def test_a_role_that_may_not_read_the_encryption_is_refused() -> None:
    # Without s3:GetEncryptionConfiguration the check would be waved through as "unknown".
    with pytest.raises(ConfigError, match="GetEncryptionConfiguration"):
        _check("AccessDenied")
    assert _check("AccessDenied", CDRPIPE_S3_ALLOW_UNENCRYPTED=True).startswith("unknown")
