"""Object storage for docflow: a small store over the `minio` SDK, for MinIO and SeaweedFS alike.

Every failure is turned into one of a few typed errors so callers can decide what to do:

- `ObjectMissing`      the bucket or key does not exist (permanent: retrying will not help);
- `ObjectTooLarge`     an object is bigger than the caller allows (found by `stat`, before reading,
                       and again while reading, which never takes more than the limit + 1 bytes);
- `InvalidName`        a bucket or key this client cannot address (a `..` path segment, say);
- `StorageAccessDenied` wrong or missing credentials (permanent);
- `StorageUnavailable` connection refused, timeouts, 5xx (transient: flows retry only these).

The secret key lives only inside the SDK client; no message, repr or log line of this module
contains it.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, TypeVar

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from minio.helpers import check_bucket_name, check_object_name

if TYPE_CHECKING:
    from flows.settings import Settings

T = TypeVar("T")

# S3 error codes that mean "not there" and "not allowed"; anything else from the server is
# treated as a fault of the server (transient) when it is a 5xx, or a plain StorageError.
_MISSING_CODES = {"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound", "NotFound"}
_DENIED_CODES = {
    "AccessDenied",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidToken",
    "ExpiredToken",
    "AllAccessDisabled",
}
_TRANSIENT_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "XMinioServerNotInitialized",
    "PreconditionFailed",  # the object changed between stat and read: reading again is correct
}


class StorageError(Exception):
    """Base class of every object-storage error raised by this module."""


class ObjectMissing(StorageError):
    def __init__(self, bucket: str, key: str | None = None):
        self.bucket, self.key = bucket, key
        what = f"s3://{bucket}/{key}" if key is not None else f"bucket {bucket!r}"
        super().__init__(f"{what} does not exist")


class ObjectTooLarge(StorageError):
    def __init__(self, bucket: str, key: str, size: int, max_bytes: int, at_least: bool = False):
        self.bucket, self.key, self.size, self.max_bytes = bucket, key, size, max_bytes
        size_text = f"at least {size}" if at_least else f"{size}"
        super().__init__(
            f"s3://{bucket}/{key} is {size_text} bytes, more than the limit of {max_bytes}"
        )


class InvalidName(StorageError):
    """A bucket or key the S3 client refuses to address, such as a key with a `.` or `..` path
    segment (`../etc/passwd`): permanent, and no request is sent for it."""


class StorageAccessDenied(StorageError):
    """Credentials missing, wrong, or without the right to do this."""


class StorageUnavailable(StorageError):
    """The server could not be reached or failed (connection refused, timeout, 5xx): retry."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    etag: str
    size: int
    last_modified: datetime | None


class ObjectStore:
    """Buckets and objects on one S3 endpoint. Thread-safe: share one per process."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        *,
        secure: bool = False,
        region: str | None = None,
        max_connections: int = 16,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
    ):
        self.endpoint = endpoint
        self.access_key = access_key
        self.secure = secure
        # The SDK's own default retries a refused connection five times with backoff; one quick
        # retry is enough here because the flows retry `StorageUnavailable` at the task level.
        http = urllib3.PoolManager(
            maxsize=max_connections,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            retries=urllib3.Retry(
                total=3, connect=1, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
        )
        self._client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=http,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ObjectStore:
        from flows.settings import reveal

        return cls(
            settings.s3_endpoint,
            settings.s3_access_key,
            reveal(settings.s3_secret_key),
            secure=settings.s3_secure,
            region=settings.s3_region,
        )

    def __repr__(self) -> str:
        return f"ObjectStore(endpoint={self.endpoint!r}, access_key={self.access_key!r}, secure={self.secure})"

    # -- buckets ----------------------------------------------------------------------------

    def ensure_bucket(self, name: str) -> bool:
        """Create the bucket unless it exists. Returns True when it was created."""

        def make() -> bool:
            if self._client.bucket_exists(name):
                return False
            try:
                self._client.make_bucket(name)
            except S3Error as exc:  # created by someone else in the meantime
                if exc.code in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    return False
                raise
            return True

        return self._call(make, name)

    def list_buckets(self) -> list[str]:
        return self._call(lambda: [b.name for b in self._client.list_buckets()], "")

    # -- reading ----------------------------------------------------------------------------

    def list_objects(
        self, bucket: str, prefix: str = "", recursive: bool = True
    ) -> Iterator[ObjectInfo]:
        """Objects under `prefix`, lazily, page by page as the server returns them."""
        pages = self._client.list_objects(bucket, prefix=prefix or None, recursive=recursive)
        try:
            for obj in pages:
                if obj.is_dir:
                    continue
                yield ObjectInfo(
                    obj.object_name, (obj.etag or "").strip('"'), obj.size or 0, obj.last_modified
                )
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _translate(exc, bucket, None) from exc

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        info = self._call(lambda: self._client.stat_object(bucket, key), bucket, key)
        return ObjectInfo(key, (info.etag or "").strip('"'), info.size or 0, info.last_modified)

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self.stat(bucket, key)
        except ObjectMissing:
            return False
        return True

    @contextmanager
    def open_stream(self, bucket: str, key: str, max_bytes: int) -> Iterator[IO[bytes]]:
        """A readable binary stream of the object; `ObjectTooLarge` before any byte is read.

        The read is pinned to the ETag seen by the size check (`If-Match`), so an object replaced
        by a bigger one in between is not read either (that surfaces as `StorageUnavailable`, and
        a retry checks the new size).
        """
        info = self.stat(bucket, key)
        if info.size > max_bytes:
            raise ObjectTooLarge(bucket, key, info.size, max_bytes)
        headers = {"If-Match": f'"{info.etag}"'} if info.etag else None
        response = self._call(
            lambda: self._client.get_object(bucket, key, request_headers=headers), bucket, key
        )
        try:
            yield response
        finally:
            response.close()
            response.release_conn()

    def read_bytes(self, bucket: str, key: str, max_bytes: int) -> bytes:
        """The object's bytes; `ObjectTooLarge` when it has more than `max_bytes`.

        The size is checked by `stat` before the GET, and the body is read in pieces that stop
        at `max_bytes + 1`: a server whose size was wrong, or a body longer than announced,
        costs at most that much memory, never the whole object.
        """
        with self.open_stream(bucket, key, max_bytes) as stream:
            try:
                return read_at_most(stream, max_bytes, bucket, key)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise _translate(exc, bucket, key) from exc

    def get_json(self, bucket: str, key: str, max_bytes: int = 64 * 1024 * 1024) -> Any:
        return json.loads(self.read_bytes(bucket, key, max_bytes))

    # -- writing ----------------------------------------------------------------------------

    def put_bytes(
        self,
        bucket: str,
        key: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> str:
        """Store `data` under `key` (multipart above 5 MiB). Returns the new ETag."""
        result = self._call(
            lambda: self._client.put_object(
                bucket,
                key,
                io.BytesIO(data),
                len(data),
                content_type=content_type,
                metadata=metadata,
            ),
            bucket,
            key,
        )
        return (result.etag or "").strip('"')

    def put_json(self, bucket: str, key: str, value: Any) -> str:
        data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        return self.put_bytes(bucket, key, data, content_type="application/json")

    def put_file(
        self, bucket: str, key: str, path: str | os.PathLike, content_type: str | None = None
    ) -> str:
        """Upload a local file, streaming it in parts rather than reading it into memory."""
        kwargs = {"content_type": content_type} if content_type else {}
        result = self._call(
            lambda: self._client.fput_object(bucket, key, str(path), **kwargs), bucket, key
        )
        return (result.etag or "").strip('"')

    def get_file(self, bucket: str, key: str, path: str | os.PathLike) -> None:
        self._call(lambda: self._client.fget_object(bucket, key, str(path)), bucket, key)

    def remove(self, bucket: str, key: str) -> None:
        self._call(lambda: self._client.remove_object(bucket, key), bucket, key)

    # -- folders (model versions) -----------------------------------------------------------

    def upload_folder(self, local_dir: str | os.PathLike, bucket: str, prefix: str) -> list[str]:
        """Upload every file under `local_dir` to `prefix/<relative path>`. Returns the keys."""
        root = Path(local_dir)
        if not root.is_dir():
            raise NotADirectoryError(root)
        prefix = prefix.strip("/")
        keys = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = (
                f"{prefix}/{path.relative_to(root).as_posix()}"
                if prefix
                else path.relative_to(root).as_posix()
            )
            self.put_file(bucket, key, path)
            keys.append(key)
        return keys

    def download_folder(self, bucket: str, prefix: str, local_dir: str | os.PathLike) -> list[Path]:
        """Download every object under `prefix/` into `local_dir`, keeping relative paths."""
        root = Path(local_dir).resolve()
        prefix = prefix.strip("/")
        listing_prefix = f"{prefix}/" if prefix else ""
        paths = []
        for obj in self.list_objects(bucket, listing_prefix, recursive=True):
            relative = PurePosixPath(obj.key[len(listing_prefix) :])
            # A key such as "a/../../etc/x" must not write outside the target folder.
            target = (root / relative).resolve()
            if not target.is_relative_to(root) or target == root:
                raise StorageError(f"refusing to download s3://{bucket}/{obj.key} outside {root}")
            target.parent.mkdir(parents=True, exist_ok=True)
            self.get_file(bucket, obj.key, target)
            paths.append(target)
        if not paths and not self._call(lambda: self._client.bucket_exists(bucket), bucket):
            raise ObjectMissing(bucket)
        return paths

    # -- sharing ----------------------------------------------------------------------------

    def presigned_get(
        self, bucket: str, key: str, expires: timedelta | int = timedelta(hours=1)
    ) -> str:
        """A URL that lets anyone holding it GET the object until it expires."""
        if isinstance(expires, int):
            expires = timedelta(seconds=expires)
        return self._call(
            lambda: self._client.presigned_get_object(bucket, key, expires=expires), bucket, key
        )

    # -- errors -----------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T], bucket: str, key: str | None = None) -> T:
        check_name(bucket, key)
        try:
            return fn()
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _translate(exc, bucket, key) from exc


def check_name(bucket: str, key: str | None = None) -> None:
    """Raise `InvalidName` for a bucket or key no S3 request can address: an empty or blank
    key, a key with a `.` or `..` path segment, a bucket name S3 forbids. Sends nothing; every
    call of the store checks this first (the SDK would raise a bare ValueError from inside)."""
    try:
        if bucket:
            check_bucket_name(bucket)
        if key is not None:
            if not key.strip():  # the SDK's own check says nothing about why
                raise ValueError("an object key cannot be empty or blank")
            check_object_name(key)
    except ValueError as exc:
        raise InvalidName(f"{_where(bucket, key)}: {exc}") from exc


READ_PIECE_BYTES = 1024 * 1024


def read_at_most(stream: IO[bytes], max_bytes: int, bucket: str, key: str) -> bytes:
    """Everything `stream` holds, or `ObjectTooLarge` as soon as it has given more than
    `max_bytes` (having read at most `max_bytes + 1` of them)."""
    pieces: list[bytes] = []
    total = 0
    while total <= max_bytes:
        piece = stream.read(min(READ_PIECE_BYTES, max_bytes + 1 - total))
        if not piece:
            return b"".join(pieces)
        pieces.append(piece)
        total += len(piece)
    raise ObjectTooLarge(bucket, key, total, max_bytes, at_least=True)


def _where(bucket: str, key: str | None) -> str:
    return f"s3://{bucket}/{key}" if key else (f"bucket {bucket!r}" if bucket else "object storage")


def _translate(exc: Exception, bucket: str, key: str | None) -> Exception:
    """Map an SDK or network exception to this module's typed errors."""
    if isinstance(exc, StorageError):
        return exc
    where = _where(bucket, key)
    if isinstance(exc, S3Error):
        if exc.code in _MISSING_CODES:
            # A missing bucket reports NoSuchBucket even when a key was asked for.
            return ObjectMissing(bucket, None if exc.code == "NoSuchBucket" else key)
        if exc.code in _DENIED_CODES:
            return StorageAccessDenied(f"access denied to {where}: {exc.code}")
        status = getattr(exc.response, "status", 0) or 0
        if exc.code in _TRANSIENT_CODES or status >= 500:
            return StorageUnavailable(f"{where}: server error {exc.code}")
        return StorageError(f"{where}: {exc.code}: {exc.message}")
    if isinstance(exc, ServerError):
        return StorageUnavailable(f"{where}: server error (HTTP {exc.status_code})")
    if isinstance(exc, InvalidResponseError):
        code = getattr(exc, "_code", 0) or 0
        if code >= 500:
            return StorageUnavailable(f"{where}: server error (HTTP {code})")
        if code in {401, 403}:
            return StorageAccessDenied(f"access denied to {where} (HTTP {code})")
        return StorageError(f"{where}: unexpected response (HTTP {code})")
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
        # Connection refused, reset, DNS failure, timeout, retries exhausted on 5xx.
        return StorageUnavailable(f"{where}: cannot reach the server ({type(exc).__name__})")
    return StorageError(f"{where}: {type(exc).__name__}")
