"""Objects of an S3-compatible store, through ``pyarrow.fs``, and the choice of storage for a location.

Contract: as :class:`~pipeline.store.storage.Storage`; every object is written by
one PUT of its complete content, so there are no temporary objects. An
exclusive create is a conditional PUT (``If-None-Match: *``) through boto3, as
``pyarrow.fs`` cannot send one: the store itself refuses to overwrite, so two
writers cannot both create one name. :meth:`ObjectStorage.default_encryption`
reads the bucket's default encryption (``GetBucketEncryption``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.fs as pafs
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.store.errors import TerminalStorageError, storage_error
from pipeline.store.storage import LocalStorage, Stamp, Storage


class ObjectStorage:
    """Objects under ``bucket/prefix`` of an S3-compatible store (one PUT per object)."""

    def __init__(self, filesystem: pafs.FileSystem, client: Any, base: str, display: str) -> None:
        self._fs = filesystem
        self._client = client  # a boto3 S3 client of the same endpoint and credentials
        self._base = base.rstrip("/")
        self._bucket = self._base.split("/", 1)[0]
        self._display = display

    def describe(self) -> str:
        return self._display

    def _path(self, relative_path: str) -> str:
        return f"{self._base}/{relative_path}"

    def publish(self, relative_path: str, data: bytes) -> None:
        try:
            with self._fs.open_output_stream(self._path(relative_path)) as stream:
                stream.write(data)
        except OSError as exc:
            raise storage_error(f"publishing {relative_path}", exc) from exc

    def create_exclusive(self, relative_path: str, data: bytes) -> bool:
        key = self._path(relative_path).split("/", 1)[1]
        try:
            self._client.put_object(Bucket=self._bucket, Key=key, Body=data, IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _EXISTS_CODES:
                return False
            raise storage_error(f"creating {relative_path}", exc) from exc
        except BotoCoreError as exc:
            raise storage_error(f"creating {relative_path}", exc) from exc
        return True

    def default_encryption(self) -> str | None:
        """The bucket's default encryption algorithm (``AES256``, ``aws:kms``...), or None if it has none."""
        try:
            answer = self._client.get_bucket_encryption(Bucket=self._bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == _NO_ENCRYPTION:
                return None
            if code in _DENIED_CODES:
                raise EncryptionUnreadableError(
                    f"the credentials may not read the default encryption of bucket {self._bucket}: "
                    "grant s3:GetEncryptionConfiguration on it"
                ) from exc
            raise storage_error(f"reading the default encryption of bucket {self._bucket}", exc) from exc
        except BotoCoreError as exc:
            raise storage_error(f"reading the default encryption of bucket {self._bucket}", exc) from exc
        rules = answer.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        algorithms = [
            rule.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for rule in rules
        ]
        return next((str(algorithm) for algorithm in algorithms if algorithm), None)

    def read(self, relative_path: str) -> bytes | None:
        try:
            with self._fs.open_input_stream(self._path(relative_path)) as stream:
                return bytes(stream.read())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise storage_error(f"reading {relative_path}", exc) from exc

    def open_input(self, relative_path: str) -> pa.NativeFile:
        try:
            return self._fs.open_input_file(self._path(relative_path))
        except OSError as exc:
            raise storage_error(f"opening {relative_path}", exc) from exc

    def sweep_temporaries(self, relative_dir: str, older_than: datetime | None = None) -> int:
        return 0  # an object is written by one PUT: there are no temporary objects

    def delete(self, relative_path: str) -> None:
        try:
            self._fs.delete_file(self._path(relative_path))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise storage_error(f"deleting {relative_path}", exc) from exc

    def list(self, relative_dir: str, modified_since: datetime | None = None) -> list[str]:
        return [
            path
            for path, info in self._files(relative_dir)
            if modified_since is None or info.mtime is None or info.mtime >= modified_since
        ]

    def list_stamped(self, relative_dir: str) -> dict[str, Stamp]:
        return {path: Stamp(info.size or 0, info.mtime_ns or 0) for path, info in self._files(relative_dir)}

    def _files(self, relative_dir: str) -> Sequence[tuple[str, pafs.FileInfo]]:
        """The objects under ``relative_dir`` not named ``.*``, sorted by store-relative path."""
        selector = pafs.FileSelector(self._path(relative_dir), recursive=True, allow_not_found=True)
        try:
            infos = self._fs.get_file_info(selector)
        except OSError as exc:
            raise storage_error(f"listing {relative_dir}", exc) from exc
        prefix = self._base + "/"
        return sorted(
            (info.path.removeprefix(prefix), info)
            for info in infos
            if info.type == pafs.FileType.File and not info.base_name.startswith(".")
        )

    def stamp(self, relative_path: str) -> Stamp | None:
        try:
            info = self._fs.get_file_info(self._path(relative_path))
        except OSError as exc:
            raise storage_error(f"reading the size of {relative_path}", exc) from exc
        if info.type != pafs.FileType.File:
            return None
        return Stamp(info.size or 0, info.mtime_ns or 0)


_EXISTS_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
"""What S3 answers a conditional PUT of an existing key (412), or one racing another (409)."""
_NO_ENCRYPTION = "ServerSideEncryptionConfigurationNotFoundError"
_DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled"})


class EncryptionUnreadableError(TerminalStorageError):
    """The credentials may not read the bucket's default encryption: the start check cannot be made."""


def open_storage(location: str, env: dict[str, str] | None = None, group_read: bool = False) -> Storage:
    """The storage for a ``CDRPIPE_STORE`` value: a local path or ``s3://bucket/prefix``.

    A local store creates owner-only files, or group-readable ones with
    ``group_read`` (``CDRPIPE_STORE_GROUP_READ``). For S3 the endpoint comes
    from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (for MinIO and other
    S3-compatible stores), the region from ``AWS_REGION`` or
    ``AWS_DEFAULT_REGION``; credentials from the AWS SDK's standard chain.
    """
    if not location.startswith("s3://"):
        return LocalStorage(Path(location), group_read)
    variables = os.environ if env is None else env
    endpoint = variables.get("AWS_ENDPOINT_URL_S3") or variables.get("AWS_ENDPOINT_URL")
    region = variables.get("AWS_REGION") or variables.get("AWS_DEFAULT_REGION") or "us-east-1"
    options: dict[str, object] = {"region": region, "retry_strategy": pafs.AwsStandardS3RetryStrategy(3)}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        options.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
        options["force_virtual_addressing"] = False
    filesystem = pafs.S3FileSystem(**options)
    # the credentials of ``env`` if it has any, else boto3's standard chain (IRSA, EKS Pod Identity...)
    session = boto3.session.Session(
        aws_access_key_id=variables.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=variables.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=variables.get("AWS_SESSION_TOKEN"),
        region_name=region,
    )
    client = session.client("s3", endpoint_url=endpoint or None)
    base = location.removeprefix("s3://")
    return ObjectStorage(filesystem, client, base, location)
