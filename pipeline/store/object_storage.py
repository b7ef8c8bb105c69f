"""Objects of an S3-compatible store, through ``pyarrow.fs``, and the choice of storage for a location.

Contract: as :class:`~pipeline.store.storage.Storage`; every object is written by
one PUT of its complete content, so there are no temporary objects. Stamps
carry the object's ETag (from the PUT's answer, the listing, or a HEAD), so a
manifest entry is matched to its object's content, not to a time of whole
seconds. An
exclusive create is a conditional PUT (``If-None-Match: *``) through boto3, as
``pyarrow.fs`` cannot send one: the store itself refuses to overwrite, so two
writers cannot both create one name. :meth:`ObjectStorage.default_encryption`
reads the bucket's default encryption (``GetBucketEncryption``).
"""

from __future__ import annotations

import os
import time
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

    def _key(self, relative_path: str) -> str:
        return self._path(relative_path).split("/", 1)[1]

    def publish(self, relative_path: str, data: bytes) -> Stamp:
        # One PutObject through boto3: its answer carries the ETag of exactly this version.
        try:
            answer = self._client.put_object(Bucket=self._bucket, Key=self._key(relative_path), Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise storage_error(f"publishing {relative_path}", exc) from exc
        return Stamp(len(data), time.time_ns(), str(answer["ETag"]))

    def create_exclusive(self, relative_path: str, data: bytes) -> bool:
        try:
            self._client.put_object(
                Bucket=self._bucket, Key=self._key(relative_path), Body=data, IfNoneMatch="*"
            )
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
        # ListObjectsV2 through boto3: unlike pyarrow's listing it reports each object's ETag.
        prefix = self._key(relative_dir).rstrip("/") + "/"
        stamps: dict[str, Stamp] = {}
        base = self._key("")
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=prefix
            ):
                for item in page.get("Contents", ()):
                    key = str(item["Key"])
                    if key.endswith("/") or key.rsplit("/", 1)[-1].startswith("."):
                        continue
                    modified = int(item["LastModified"].timestamp()) * 1_000_000_000
                    stamps[key.removeprefix(base)] = Stamp(int(item["Size"]), modified, str(item["ETag"]))
        except (ClientError, BotoCoreError) as exc:
            raise storage_error(f"listing {relative_dir}", exc) from exc
        return dict(sorted(stamps.items()))

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
            answer = self._client.head_object(Bucket=self._bucket, Key=self._key(relative_path))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return None
            raise storage_error(f"reading the size of {relative_path}", exc) from exc
        except BotoCoreError as exc:
            raise storage_error(f"reading the size of {relative_path}", exc) from exc
        modified = int(answer["LastModified"].timestamp()) * 1_000_000_000
        return Stamp(int(answer["ContentLength"]), modified, str(answer["ETag"]))


_EXISTS_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
"""What S3 answers a conditional PUT of an existing key (412), or one racing another (409)."""
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
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
    if variables.get("AWS_ACCESS_KEY_ID") and variables.get("AWS_SECRET_ACCESS_KEY"):
        # The same credentials for both clients: objects are now written through boto3, and a
        # pyarrow reader without them would be refused the objects boto3 wrote.
        options.update(
            access_key=variables["AWS_ACCESS_KEY_ID"],
            secret_key=variables["AWS_SECRET_ACCESS_KEY"],
            session_token=variables.get("AWS_SESSION_TOKEN"),
        )
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
