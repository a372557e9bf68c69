"""One storage interface for local paths and ``s3://bucket/key`` URIs.

Plain functions (no Prefect) so that they can be tested and reused on their own; the Prefect
tasks wrap them. Every failure leaves as a one-line ``NSTError`` naming the URI and the
reason; no credential (access key id, secret, session token) is ever put in a message or a
log line (messages are built from error codes, and server text is redacted).

Decisions (see also each function's docstring):
- Writes are atomic. Local: copy to a temporary name in the destination folder, fsync, then
  ``os.replace``. S3: an object only becomes visible once its PUT or its multipart upload is
  complete. A failed multipart upload is aborted (s3transfer does it; we also abort every
  upload we started that did not complete, in case its abort failed). A process killed in
  the middle of a multipart upload can still leave parts behind: give the bucket a lifecycle
  rule ``AbortIncompleteMultipartUpload``.
- Retries, two layers. botocore's standard mode retries each request (throttling, 5xx,
  dropped connections) with short jittered delays, which are well under a second for
  connection errors in this botocore. On top of that, an operation whose endpoint cannot be
  reached at all is retried whole with a deterministic backoff for a time budget
  (``NST_S3_UNAVAILABLE_SECONDS``, default 10 s), then fails with one line.
- The endpoint comes from boto3 itself: botocore >= 1.31 (boto3 >= 1.28; this project needs
  boto3 >= 1.34) reads ``AWS_ENDPOINT_URL_S3`` and ``AWS_ENDPOINT_URL``; with a custom
  endpoint it addresses buckets path-style, as S3-compatible stores expect.
- Clients: functions take an optional ``client``; without one they share a cached client
  per configuration (endpoint, region, profile, credentials as seen in the environment),
  since building one costs ~0.1 s. boto3 clients are thread-safe.
- S3 has no folders: a prefix is treated as a folder (``s3://b/videos`` lists
  ``videos/...``, never ``videos2/...``), keys ending in ``/`` are folder markers, and hidden
  names (a path segment starting with ``.``) are skipped by ``list_files`` on both sides.
- A HEAD request's error has no body (bare "403"/"404"); such errors are explained by a
  one-byte ranged GET so that a missing bucket, a missing key and rejected credentials read
  differently.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import mimetypes
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import unquote

import botocore.exceptions as bexc
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.client import BaseClient
from botocore.config import Config

from nst_video.nst_core.errors import InvalidInputError, InvalidSettingsError, NSTError, one_line
from nst_video.nst_core.files import atomic_path, check_writable
from nst_video.tasks import credentials

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # botocore standard mode: attempts per request, first one included
CONNECT_TIMEOUT_S = 2.0  # a reachable endpoint accepts within milliseconds
READ_TIMEOUT_S = 60.0  # waiting for a response, e.g. after a large part was sent
UNAVAILABLE_BUDGET_S = 10.0  # default of NST_S3_UNAVAILABLE_SECONDS
UNAVAILABLE_ENV = "NST_S3_UNAVAILABLE_SECONDS"
LIST_PAGE_SIZE = 1000  # keys per ListObjectsV2 request (S3's maximum)
MAX_TEXT_BYTES = 16 * 1024 * 1024  # read_text is for manifests, not videos
MIB = 1024 * 1024
TRANSFER_CONFIG = TransferConfig(
    multipart_threshold=64 * MIB,
    multipart_chunksize=16 * MIB,
    max_concurrency=8,
    preferred_transfer_client="classic",  # s3transfer: its failure cleanup aborts uploads
)

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_RE = re.compile(r"\d+\.\d+\.\d+\.\d+")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_UNSAFE_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")
# Access key ids, and long base64-like runs (secrets, session tokens): never shown.
_SECRET_RE = re.compile(
    r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[A-Z0-9]{12,}"
    r"|[A-Za-z0-9/+=]{32,}"
)
_CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_CLIENT_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_EC2_METADATA_DISABLED",
    credentials.BLOCK_ENV,
    *_CREDENTIAL_ENV,
)
# Endpoint down, refusing, timing out or dropping the connection: worth retrying whole.
_UNREACHABLE = (bexc.ConnectionError, bexc.HTTPClientError)
_NOT_UNREACHABLE = (bexc.SSLError,)  # a certificate problem does not go away by waiting
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "InvalidClientTokenId",
    "TokenRefreshRequired",
}

T = TypeVar("T")


class StorageError(NSTError):
    """S3 or the filesystem refused an operation (credentials, permissions, disk, server)."""


class StorageUnavailableError(StorageError):
    """The S3 endpoint could not be reached or kept failing: retrying later may succeed."""


@dataclass(frozen=True)
class Location:
    """A parsed location: ``scheme`` "file" (``path`` set) or "s3" (``bucket``, ``key``)."""

    scheme: str
    bucket: str = ""
    key: str = ""
    path: Path | None = None

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"

    @property
    def uri(self) -> str:
        """The canonical string: ``s3://bucket/key`` or the local path."""
        return f"s3://{self.bucket}/{self.key}" if self.is_s3 else str(self.path)

    @property
    def name(self) -> str:
        """The last path component (the file name), "" for a bucket root."""
        return self.key.rstrip("/").rpartition("/")[2] if self.is_s3 else Path(self.uri).name

    def __str__(self) -> str:
        return self.uri


# --- parsing -------------------------------------------------------------------------------


def parse_uri(uri: str | os.PathLike[str], *, object_required: bool = False) -> Location:
    """Parse a local path, ``file://`` URI or ``s3://bucket/key`` into a Location.

    With ``object_required`` an S3 URI must name an object (non-empty key, not ending in
    ``/``). Malformed URIs raise InvalidInputError naming the URI and the reason, so that a
    typo fails at planning time rather than after an hour of GPU work.
    """
    text = os.fspath(uri)
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(f"empty storage location {text!r}")
    if text[:3].lower() == "s3:" and text[3:5] != "//":
        raise _bad_uri(text, "malformed S3 URI; write s3://bucket/key")
    match = _SCHEME_RE.match(text)
    if match is None:
        return Location("file", path=Path(text))
    scheme = match.group(1).lower()
    if scheme == "file":
        return _parse_file_uri(text)
    if scheme != "s3":
        raise _bad_uri(text, f"unsupported scheme {scheme!r}; use a local path or s3://bucket/key")
    bucket, _, key = text[match.end() :].partition("/")
    _check_bucket(text, bucket)
    _check_key(text, key, object_required)
    return Location("s3", bucket=bucket, key=key)


def _parse_file_uri(text: str) -> Location:
    """``file:///abs/path`` (or ``file://localhost/...``) to a local Location."""
    host, slash, rest = text[len("file://") :].partition("/")
    if host not in ("", "localhost") or not slash:
        raise _bad_uri(text, "file URIs must be file:///absolute/path")
    return Location("file", path=Path("/" + unquote(rest)))


def _check_bucket(uri: str, bucket: str) -> None:
    """Apply S3's bucket naming rules (also enforced by S3-compatible stores)."""
    if not bucket:
        raise _bad_uri(uri, "no bucket name")
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket or _IP_RE.fullmatch(bucket):
        raise _bad_uri(
            uri,
            f"invalid bucket name {bucket!r} (3-63 characters of a-z, 0-9, "
            "'.', '-', starting and ending with a letter or digit)",
        )


def _check_key(uri: str, key: str, object_required: bool) -> None:
    """Reject keys S3 would refuse or that are almost certainly typos."""
    if _CONTROL_RE.search(key):
        raise _bad_uri(uri, "key contains control characters")
    if len(key.encode("utf-8")) > 1024:
        raise _bad_uri(uri, "key longer than 1024 bytes")
    if key.startswith("/"):
        raise _bad_uri(uri, "key starts with '/' (double slash after the bucket?)")
    if object_required and (not key or key.endswith("/")):
        raise _bad_uri(uri, "empty key: an object is needed here, not a bucket or prefix")


def _bad_uri(uri: str, reason: str) -> InvalidInputError:
    shown = uri if len(uri) <= 200 else uri[:197] + "..."
    return InvalidInputError(f"invalid storage location {shown!r}: {reason}")


def join_uri(base: str, *parts: str) -> str:
    """Append path components to a local folder or an S3 prefix (``/`` separated)."""
    loc = parse_uri(base)
    if not loc.is_s3:
        return str(Path(loc.uri).joinpath(*parts))
    key = "/".join(p.strip("/") for p in (loc.key, *parts) if p.strip("/"))
    return parse_uri(f"s3://{loc.bucket}/{key}").uri


# --- client and errors ---------------------------------------------------------------------


def s3_client(
    *,
    max_attempts: int = MAX_ATTEMPTS,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    read_timeout: float = READ_TIMEOUT_S,
) -> BaseClient:
    """A new S3 client (default credential chain, or a block: tasks.credentials), retrying.

    A fresh boto3 Session each time: sessions are not thread-safe and cache credentials, so a
    shared default session would miss a change of environment. The endpoint comes from
    ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (read by botocore itself) or the block.
    """
    config = Config(
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max(10, TRANSFER_CONFIG.max_request_concurrency + 2),
    )
    session, client_args = credentials.s3_session(config)
    return session.client("s3", **client_args)


_clients: dict[str, BaseClient] = {}
_clients_lock = threading.Lock()


def _client(client: BaseClient | None) -> BaseClient:
    """The given client, else a shared one for the current environment's configuration."""
    if client is not None:
        return client
    fingerprint = hashlib.sha256(
        "\0".join(os.environ.get(name, "\1") for name in _CLIENT_ENV).encode()
    ).hexdigest()
    with _clients_lock:
        if fingerprint not in _clients:
            if len(_clients) >= 8:
                _clients.clear()
            _clients[fingerprint] = s3_client()
            _watch_uploads(_clients[fingerprint])  # before any thread can use the client
        return _clients[fingerprint]


def _redacted_line(text: str) -> str:
    """`text` on one short line with anything credential-like redacted."""
    for name in _CREDENTIAL_ENV:
        value = os.environ.get(name)
        if value:
            text = text.replace(value, "[redacted]")
    return one_line(_SECRET_RE.sub("[redacted]", one_line(text, limit=None)))


def _unwrap(exc: BaseException) -> BaseException:
    """The botocore error inside boto3's transfer wrappers (they hide the error code)."""
    if isinstance(exc, RetriesExceededError) and exc.last_exception is not None:
        return exc.last_exception
    if isinstance(exc, S3UploadFailedError):
        inner = exc.__cause__ or exc.__context__
        if isinstance(inner, bexc.ClientError):
            return inner
    return exc


def _is_unreachable(exc: BaseException) -> bool:
    exc = _unwrap(exc)
    return isinstance(exc, _UNREACHABLE) and not isinstance(exc, _NOT_UNREACHABLE)


def _error_code(exc: BaseException) -> tuple[str, int]:
    """(error code, HTTP status) of a ClientError; ("", 0) for anything else."""
    if not isinstance(exc, bexc.ClientError):
        return "", 0
    response = exc.response
    return (
        str(response.get("Error", {}).get("Code", "")),
        int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0),
    )


def _s3_error(exc: BaseException, uri: str, action: str, client: BaseClient) -> NSTError:
    """Translate a botocore/boto3 failure into a one-line NSTError naming ``uri``."""
    exc = _unwrap(exc)
    where = f"cannot {action} {uri}"
    if isinstance(exc, (bexc.NoCredentialsError, bexc.PartialCredentialsError)):
        return StorageError(
            f"{where}: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or use an instance role)"
        )
    if isinstance(exc, bexc.SSLError):
        return StorageError(f"{where}: TLS error talking to {client.meta.endpoint_url}")
    if isinstance(exc, _UNREACHABLE):
        return StorageUnavailableError(
            f"{where}: cannot reach S3 endpoint {client.meta.endpoint_url} ({type(exc).__name__})"
        )
    if isinstance(exc, bexc.BotoCoreError):
        return StorageError(f"{where}: {type(exc).__name__}: {_redacted_line(str(exc))}")
    code, status = _error_code(exc)
    if code == "NoSuchBucket":
        return InvalidInputError(f"{where}: bucket {parse_uri(uri).bucket!r} does not exist")
    if code in ("NoSuchKey", "404", "NotFound"):
        return InvalidInputError(f"{where}: no such object")
    if code in _CREDENTIAL_CODES:
        return StorageError(f"{where}: credentials rejected by S3 ({code})")
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        return StorageError(
            f"{where}: access denied (HTTP 403); check the credentials' "
            "permissions (a missing object reads as 403 without s3:ListBucket)"
        )
    message = _redacted_line(exc.response.get("Error", {}).get("Message", "") or "")
    error_cls = StorageUnavailableError if status >= 500 else StorageError
    return error_cls(
        f"{where}: S3 error {code or '?'} (HTTP {status})" + (f": {message}" if message else "")
    )


def _explain_head_error(client: BaseClient, loc: Location, exc: BaseException) -> BaseException:
    """Replace a bodiless HEAD error ("403", "404") by the coded error of a 1-byte GET."""
    code, _ = _error_code(exc)
    if not code.isdigit():
        return exc
    try:
        client.get_object(Bucket=loc.bucket, Key=loc.key, Range="bytes=0-0")
    except bexc.ClientError as detailed:
        return detailed
    except Exception:  # the original error is the one to report
        return exc
    return exc


def _unavailable_budget() -> float:
    """Seconds for which an unreachable endpoint is retried (``NST_S3_UNAVAILABLE_SECONDS``)."""
    raw = os.environ.get(UNAVAILABLE_ENV, "")
    try:
        budget = float(raw) if raw else UNAVAILABLE_BUDGET_S
    except ValueError:
        raise InvalidSettingsError(f"{UNAVAILABLE_ENV}={raw!r} is not a number") from None
    if budget < 0:
        raise InvalidSettingsError(f"{UNAVAILABLE_ENV}={raw!r} must be >= 0")
    return budget


def _call(client: BaseClient, uri: str, action: str, operation: Callable[[], T]) -> T:
    """Run ``operation``; retry it whole while the endpoint is unreachable, map errors.

    botocore has already retried each request; this layer covers an endpoint that is down
    for a few seconds (restart, failover) with delays 0.2, 0.4, 0.8, 1, 1, ... s until the
    budget is spent.
    """
    deadline = time.monotonic() + _unavailable_budget()
    delay = 0.2
    while True:
        try:
            return operation()
        except NSTError:
            raise
        except (
            bexc.BotoCoreError,
            bexc.ClientError,
            S3UploadFailedError,
            RetriesExceededError,
        ) as exc:
            if not _is_unreachable(exc) or time.monotonic() + delay > deadline:
                raise _s3_error(exc, uri, action, client) from exc
            log.warning(
                "S3 endpoint %s unreachable (%s); will try again to %s %s in %.1f s",
                client.meta.endpoint_url,
                type(_unwrap(exc)).__name__,
                action,
                uri,
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        except OSError as exc:  # the local side: staging folder full, source unreadable
            where = f" ({exc.filename})" if exc.filename else ""
            raise StorageError(
                f"cannot {action} {uri}: local file error: {exc.strerror or exc}{where}"
            ) from exc


# --- queries -------------------------------------------------------------------------------


def exists(uri: str, *, client: BaseClient | None = None) -> bool:
    """Whether a file (local) or an object (S3) exists at ``uri``; folders do not count.

    A missing bucket raises InvalidInputError rather than answering False: a misspelt output
    bucket must not make a batch job redo every video.
    """
    loc = parse_uri(uri, object_required=True)
    if loc.path is not None:
        return loc.path.is_file()
    s3 = _client(client)

    def head() -> bool:
        try:
            s3.head_object(Bucket=loc.bucket, Key=loc.key)
        except bexc.ClientError as exc:
            detailed = _explain_head_error(s3, loc, exc)
            if _error_code(detailed)[0] in ("NoSuchKey", "404", "NotFound"):
                return False
            raise detailed from None
        return True

    return _call(s3, loc.uri, "check", head)


def identity(uri: str, *, client: BaseClient | None = None) -> dict:
    """What identifies the content at ``uri`` without reading it: for job ids and manifests.

    Local files: name, size and modification time; S3 objects: URI, size and ETag. A changed
    input gives a new identity, hence a new job.
    """
    loc = parse_uri(uri, object_required=True)
    if loc.path is not None:
        stat = _existing_file(loc, "read").stat()
        return {"name": loc.path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    s3 = _client(client)

    def head() -> dict:
        try:
            meta = s3.head_object(Bucket=loc.bucket, Key=loc.key)
        except bexc.ClientError as exc:
            raise _explain_head_error(s3, loc, exc) from None
        return {"uri": loc.uri, "size": meta["ContentLength"], "etag": meta["ETag"].strip('"')}

    return _call(s3, loc.uri, "read", head)


def list_files(uri: str, pattern: str = "*", *, client: BaseClient | None = None) -> list[str]:
    """Sorted URIs of all files under a local folder or S3 prefix (recursive).

    ``pattern`` is an fnmatch pattern (case-sensitive) on the file name, like
    ``find -name``. Hidden names (a segment starting with ``.``) and S3 folder markers are
    skipped. An S3 prefix is a folder: ``s3://b/in`` lists ``in/...``, not ``inbox/...``.
    """
    loc = parse_uri(uri)
    if loc.is_s3:
        return _list_s3(loc, pattern, _client(client))
    folder = loc.path
    assert folder is not None
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "folder not found"
        raise InvalidInputError(f"cannot list {folder}: {what}")
    found = []
    for root, dirs, files in os.walk(folder, onerror=None):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [
            os.path.join(root, f)
            for f in files
            if not f.startswith(".") and fnmatch.fnmatchcase(f, pattern)
        ]
    return sorted(found)


def _list_s3(loc: Location, pattern: str, s3: BaseClient) -> list[str]:
    """list_objects_v2 over a prefix, filtered like the local listing."""
    prefix = loc.key if not loc.key or loc.key.endswith("/") else loc.key + "/"

    def listing() -> list[str]:
        keys = []
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=loc.bucket, Prefix=prefix, PaginationConfig={"PageSize": LIST_PAGE_SIZE}
        )
        for page in pages:
            keys += [item["Key"] for item in page.get("Contents", [])]
        return keys

    keys = _call(s3, f"s3://{loc.bucket}/{prefix}", "list", listing)
    return sorted(
        f"s3://{loc.bucket}/{key}"
        for key in keys
        if not key.endswith("/")
        and not any(part.startswith(".") for part in key[len(prefix) :].split("/"))
        and fnmatch.fnmatchcase(key.rpartition("/")[2], pattern)
    )


@dataclass(frozen=True)
class FileStat:
    """A file under a folder or prefix: its path relative to it (``/`` separated), size in
    bytes and modification time (UTC)."""

    relative: str
    size: int
    modified: datetime


def list_stats(uri: str, *, client: BaseClient | None = None) -> list[FileStat]:
    """Every file under a local folder or S3 prefix, hidden ones included (a missing folder
    or prefix is empty), sorted by relative path."""
    loc = parse_uri(uri)
    if not loc.is_s3:
        assert loc.path is not None
        return sorted(_local_stats(loc.path), key=lambda stat: stat.relative)
    s3 = _client(client)
    prefix = loc.key if not loc.key or loc.key.endswith("/") else loc.key + "/"

    def listing() -> list[FileStat]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix)
        return [
            FileStat(item["Key"][len(prefix) :], item["Size"], item["LastModified"])
            for page in pages
            for item in page.get("Contents", [])
            if not item["Key"].endswith("/")
        ]

    return _call(s3, f"s3://{loc.bucket}/{prefix}", "list", listing)


def _local_stats(folder: Path) -> Iterator[FileStat]:
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root, name)
            stat = path.stat()
            modified = datetime.fromtimestamp(stat.st_mtime, timezone.utc)
            yield FileStat(path.relative_to(folder).as_posix(), stat.st_size, modified)


def remove_tree(uri: str, *, client: BaseClient | None = None) -> None:
    """Remove a local folder or every object under an S3 prefix (nothing there is fine)."""
    loc = parse_uri(uri)
    if not loc.is_s3:
        shutil.rmtree(str(loc.path), ignore_errors=True)
        return
    if not loc.key.strip("/"):
        raise InvalidInputError(f"cannot remove {loc.uri}: refusing to empty a whole bucket")
    s3 = _client(client)
    prefix = loc.key.rstrip("/") + "/"
    keys = [prefix + stat.relative for stat in list_stats(loc.uri, client=s3)]

    def delete() -> None:
        for start in range(0, len(keys), LIST_PAGE_SIZE):  # DeleteObjects takes 1000 keys
            batch = [{"Key": key} for key in keys[start : start + LIST_PAGE_SIZE]]
            s3.delete_objects(Bucket=loc.bucket, Delete={"Objects": batch, "Quiet": True})

    _call(s3, loc.uri, "remove", delete)


# --- small text files ------------------------------------------------------------------------


def read_text(uri: str, *, encoding: str = "utf-8", client: BaseClient | None = None) -> str:
    """The content of a small text file (a JSON manifest, say), at most 16 MiB."""
    loc = parse_uri(uri, object_required=True)
    if loc.is_s3:
        s3 = _client(client)

        def get() -> bytes:
            response = s3.get_object(Bucket=loc.bucket, Key=loc.key)
            if response["ContentLength"] > MAX_TEXT_BYTES:
                response["Body"].close()
                raise InvalidInputError(
                    f"cannot read {loc.uri}: larger than "
                    f"{MAX_TEXT_BYTES // MIB} MiB, not a small text file"
                )
            return response["Body"].read()

        data = _call(s3, loc.uri, "read", get)
    else:
        path = _existing_file(loc, "read")
        if path.stat().st_size > MAX_TEXT_BYTES:
            raise InvalidInputError(
                f"cannot read {path}: larger than "
                f"{MAX_TEXT_BYTES // MIB} MiB, not a small text file"
            )
        data = path.read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        raise InvalidInputError(f"cannot read {loc.uri}: not {encoding} text") from None


def write_text(
    uri: str, text: str, *, encoding: str = "utf-8", client: BaseClient | None = None
) -> str:
    """Write a small text file atomically (readers see the old or the new content); -> URI."""
    loc = parse_uri(uri, object_required=True)
    data = text.encode(encoding)
    if not loc.is_s3:
        with _atomic_local(loc) as out:
            out.write(data)
        return loc.uri
    s3 = _client(client)
    content_type = (mimetypes.guess_type(loc.key)[0] or "text/plain") + f"; charset={encoding}"
    _call(
        s3,
        loc.uri,
        "write",
        lambda: s3.put_object(Bucket=loc.bucket, Key=loc.key, Body=data, ContentType=content_type),
    )
    return loc.uri


# --- fetch and publish -------------------------------------------------------------------------


def staged_name(loc: Location) -> str:
    """A flat, safe local file name for an S3 object: ``<hash>-<sanitized base name>``.

    The key never becomes a path: ``../../etc/passwd``, ``/abs`` or ``a/../../b`` cannot
    leave the staging folder, and the hash of bucket and key keeps distinct objects apart.
    """
    digest = hashlib.sha256(f"{loc.bucket}/{loc.key}".encode()).hexdigest()[:12]
    base = _UNSAFE_NAME_RE.sub("_", loc.key.rpartition("/")[2]).lstrip(".")[-100:]
    return f"{digest}-{base or 'object'}"


def fetch(
    uri: str,
    staging_dir: str | os.PathLike[str],
    *,
    client: BaseClient | None = None,
    transfer_config: TransferConfig | None = None,
) -> Path:
    """A local path holding the file at ``uri``.

    Local files are returned as they are (checked, not copied). S3 objects are downloaded
    into ``staging_dir`` (created if needed) under ``staged_name``: first to a hidden temp
    name, then renamed, so the staged name only ever holds a complete download.
    """
    loc = parse_uri(uri, object_required=True)
    if not loc.is_s3:
        return _existing_file(loc, "fetch")
    staging = Path(staging_dir)
    try:
        staging.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"cannot use staging folder {staging}: {exc.strerror}") from None
    target = staging / staged_name(loc)
    if target.resolve().parent != staging.resolve():  # belt and braces; cannot happen
        raise InvalidInputError(f"cannot fetch {loc.uri}: unsafe local name {target.name!r}")
    s3 = _client(client)
    config = transfer_config or TRANSFER_CONFIG

    def download() -> Path:
        with atomic_path(target) as tmp:
            try:
                s3.download_file(loc.bucket, loc.key, str(tmp), Config=config)
            except bexc.ClientError as exc:
                raise _explain_head_error(s3, loc, exc) from None
        return target

    return _call(s3, loc.uri, "fetch", download)


def publish(
    local_file: str | os.PathLike[str],
    destination_uri: str,
    *,
    client: BaseClient | None = None,
    transfer_config: TransferConfig | None = None,
) -> str:
    """Copy a finished local file to its destination atomically; -> the destination URI.

    The destination names the file (not a folder) and is overwritten if present. Local: the
    destination folder must exist and be writable. S3: managed transfer, multipart above
    ``transfer_config.multipart_threshold`` (64 MiB by default); see the module docstring
    for atomicity and the abort of failed multipart uploads.
    """
    source = Path(local_file)
    if not source.is_file():
        what = "is not a file" if source.exists() else "not found"
        raise InvalidInputError(f"cannot publish {source}: {what}")
    loc = parse_uri(destination_uri, object_required=True)
    if not loc.is_s3:
        try:
            src = source.open("rb")
        except OSError as exc:
            raise InvalidInputError(f"cannot publish {source}: {exc.strerror}") from None
        with src, _atomic_local(loc) as out:
            shutil.copyfileobj(src, out, 4 * MIB)
        return loc.uri
    _upload(source, loc, _client(client), transfer_config or TRANSFER_CONFIG)
    return loc.uri


def _upload(source: Path, loc: Location, s3: BaseClient, config: TransferConfig) -> None:
    """upload_file with our retries, then abort any multipart upload we left incomplete.

    The case this covers: the endpoint goes away in the middle of a multipart upload, so
    s3transfer's own abort fails too; the whole upload is retried once it is back, and the
    abandoned upload is aborted then (its parts would otherwise be stored and billed).
    """
    _watch_uploads(s3)
    started: list[str] = []
    target = (loc.bucket, loc.key)
    with _uploads_lock:
        _open_uploads.setdefault(target, []).append(started)
    content_type = mimetypes.guess_type(loc.key)[0] or "application/octet-stream"
    completed = False
    try:
        _call(
            s3,
            loc.uri,
            "publish to",
            lambda: s3.upload_file(
                str(source),
                loc.bucket,
                loc.key,
                ExtraArgs={"ContentType": content_type},
                Config=config,
            ),
        )
        completed = True
    finally:
        with _uploads_lock:
            others = [ids for ids in _open_uploads.pop(target) if ids is not started]
            if others:
                _open_uploads[target] = others
        _abort_uploads(s3, loc, started[:-1] if completed else started)


# Upload ids of multipart uploads started by publishes in progress, by (bucket, key).
_open_uploads: dict[tuple[str, str], list[list[str]]] = {}
_uploads_lock = threading.Lock()


def _record_upload(parsed: dict, **_: object) -> None:
    """botocore hook: note the id of every multipart upload created by a publish."""
    target = (parsed.get("Bucket"), parsed.get("Key"))
    if parsed.get("UploadId"):
        with _uploads_lock:
            for started in _open_uploads.get(target, []):  # type: ignore[arg-type]
                started.append(parsed["UploadId"])


def _watch_uploads(s3: BaseClient) -> None:
    """Hook _record_upload into ``s3`` (a no-op after the first time for a client)."""
    s3.meta.events.register(
        "after-call.s3.CreateMultipartUpload", _record_upload, unique_id="nst-storage-uploads"
    )


def _abort_uploads(s3: BaseClient, loc: Location, upload_ids: list[str]) -> None:
    """Abort multipart uploads that did not complete (already aborted ones are fine)."""
    for upload_id in upload_ids:
        try:
            s3.abort_multipart_upload(Bucket=loc.bucket, Key=loc.key, UploadId=upload_id)
        except bexc.ClientError as exc:
            if _error_code(exc)[0] != "NoSuchUpload":
                log.warning(
                    "could not abort multipart upload %s of %s: %s",
                    upload_id,
                    loc.uri,
                    _error_code(exc)[0],
                )
        except bexc.BotoCoreError as exc:
            log.warning(
                "could not abort multipart upload %s of %s: %s",
                upload_id,
                loc.uri,
                type(exc).__name__,
            )


# --- local helpers -----------------------------------------------------------------------------


def _existing_file(loc: Location, action: str) -> Path:
    """The local path of ``loc`` if it is a file, else InvalidInputError naming it."""
    path = loc.path
    assert path is not None
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "file not found"
        raise InvalidInputError(f"cannot {action} {path}: {what}")
    return path


@contextmanager
def _atomic_local(loc: Location) -> Iterator[BinaryIO]:
    """Write ``loc``'s file atomically (nst_core.files): a complete file or nothing.

    The destination must be writable (InvalidInputError naming it otherwise); a failure
    while writing is a StorageError, and an existing destination is left untouched.
    """
    dest = loc.path
    assert dest is not None
    check_writable(dest)
    try:
        with atomic_path(dest) as tmp, open(tmp, "xb") as out:
            yield out
    except OSError as exc:
        raise StorageError(f"cannot write {dest}: {exc.strerror or exc}") from exc
