"""The artifact store on an S3 prefix (``STRATUS_ARTIFACTS__STORE_URI=s3://bucket/prefix``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar, cast

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

from app.artifacts import KEY, ArtifactMissing, ArtifactStream, ArtifactUnreadable, content_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


T = TypeVar("T")


def _call(what: str, fn: Callable[[], T]) -> T:
    """One S3 call; a missing object is ArtifactMissing, any other failure ArtifactUnreadable."""
    try:
        return fn()
    except ClientError as exc:
        if _missing(exc):
            raise ArtifactMissing(f"no object at {what}") from exc
        code = exc.response.get("Error", {}).get("Code", "")
        raise ArtifactUnreadable(f"S3 refused {what}: {code}") from exc
    except (BotoCoreError, S3UploadFailedError) as exc:
        raise ArtifactUnreadable(f"cannot reach S3 for {what}: {exc}") from exc


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _client(region: str | None) -> S3Client:
    return boto3.session.Session().client("s3", region_name=region)


def _missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket")


def _open(client: S3Client, bucket: str, key: str) -> ArtifactStream:
    answer = _call(f"s3://{bucket}/{key}", lambda: client.get_object(Bucket=bucket, Key=key))
    body = cast(BinaryIO, answer["Body"])
    return ArtifactStream(body, answer.get("ContentLength"))


def open_s3_uri(uri: str, *, region: str | None = None) -> ArtifactStream:
    """Stream the object at ``uri``; ArtifactMissing when it is not there."""
    bucket, key = _split(uri)
    return _open(_client(region), bucket, key)


class S3ArtifactStore:
    """Objects under ``s3://bucket/prefix/``, uploaded whole (S3 never shows half an object)."""

    is_s3 = True

    def __init__(self, location: str, *, region: str | None = None) -> None:
        self.bucket, prefix = _split(location.rstrip("/"))
        self.prefix = f"{prefix}/" if prefix else ""
        self.s3 = _client(region)

    def _key(self, key: str) -> str:
        if not KEY.match(key):
            raise ValueError(f"not a key of this store: {key[:120]!r}")
        return self.prefix + key

    def put(self, source: Path, sha256: str, suffix: str = "") -> str:
        key = content_key(sha256, suffix)
        if not self.exists(key):
            target = self._key(key)
            _call(self.uri(key), lambda: self.s3.upload_file(str(source), self.bucket, target))
        return key

    def exists(self, key: str) -> bool:
        target = self._key(key)
        try:
            _call(self.uri(key), lambda: self.s3.head_object(Bucket=self.bucket, Key=target))
        except ArtifactMissing:
            return False
        return True

    def open(self, key: str) -> ArtifactStream:
        return _open(self.s3, self.bucket, self._key(key))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def key_of(self, uri: str) -> str | None:
        bucket, full = _split(uri)
        if bucket != self.bucket or not full.startswith(self.prefix):
            return None
        key = full[len(self.prefix) :]
        return key if KEY.match(key) else None
