"""Where reports, settings and stored rosters live: a local folder or an `s3://` URL.

One small interface for both, so the report, settings and roster code has one code path:
a local folder is a `pathlib.Path`; an S3 prefix is an `S3Path`, which answers the part of
`Path`'s interface that code uses (`/`, `name`, `parent(s)`, `exists`, `is_dir`,
`iterdir`, `stat`, `read_bytes`/`read_text`, `write_bytes`/`write_text`, `mkdir`,
`unlink`), plus the functions below for what differs (`move`, `copy_file`, `remove_tree`,
`read_parquet`, `write_parquet`, `open_chunks`, `link`).

Why boto3 and not s3fs: boto3 is pinned already (Secrets Manager, file drops); s3fs rides
on aiobotocore, whose exact botocore pin fights boto3's.

S3 has no folders and no rename: a "folder" is a key prefix, `mkdir` does nothing, and
`move` copies every object (server-side) then deletes the source, the object named `last`
copied last, so a reader that trusts a folder with that file (reports: `summary.json`)
never sees half a folder. Every object is written with server-side encryption: SSE-KMS
with `RECONCILIATION_S3_KMS_KEY_ID` when set, else SSE-S3 (AES256). S3 errors become
`OSError`s (`FileNotFoundError`, `PermissionError`) naming the `s3://` URL, so callers
handle a bucket like a disk. boto3 takes its endpoint, region and credentials from the
standard AWS settings (a task role in production; `AWS_ENDPOINT_URL` for moto in tests).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

S3_SCHEME = "s3://"
KMS_KEY_ENV = "RECONCILIATION_S3_KMS_KEY_ID"
#: how long a report link in the Dagster UI works: short, the files hold student data
LINK_SECONDS = 3600


def location(value: str | os.PathLike[str]) -> Location:
    """`s3://bucket/prefix` as an S3Path, anything else as an absolute local Path."""
    text = os.fspath(value)
    if text.startswith(S3_SCHEME):
        return S3Path.from_url(text)
    return Path(text).expanduser().resolve()


def is_s3(where: object) -> bool:
    return isinstance(where, S3Path)


# -- S3 ------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _client_for(endpoint: str | None, region: str | None) -> Any:
    import boto3
    from botocore.config import Config

    # SigV4 presigned links (X-Amz-Expires), as every region requires
    config = Config(signature_version="s3v4")
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=region, config=config
    )


def _client() -> Any:
    """One client per endpoint and region (boto3 clients are thread-safe)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return _client_for(endpoint or None, region or None)


def encryption() -> dict[str, str]:
    """The server-side encryption every write requests."""
    key = os.environ.get(KMS_KEY_ENV)
    if key:
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key}
    return {"ServerSideEncryption": "AES256"}


_NOT_FOUND = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}
_DENIED = {"403", "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "ExpiredToken"}


@contextmanager
def _s3_errors(path: S3Path) -> Iterator[None]:
    """An S3 failure as the OSError a disk would raise, naming the URL (no credentials)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _NOT_FOUND:
            raise FileNotFoundError(errno.ENOENT, f"not found on S3 ({code})", str(path)) from None
        if code in _DENIED:
            raise PermissionError(errno.EACCES, f"S3 refused access ({code})", str(path)) from None
        raise OSError(errno.EIO, f"S3 error {code}", str(path)) from None
    except BotoCoreError as exc:
        raise OSError(errno.EIO, f"S3 unreachable ({type(exc).__name__})", str(path)) from None


@dataclass(frozen=True, order=True)
class _Stat:
    st_mode: int
    st_size: int


class S3Path:
    """A key (or key prefix) in a bucket, with the `Path` methods our code uses."""

    def __init__(self, bucket: str, key: str = "") -> None:
        if not bucket:
            raise ValueError("an s3:// URL needs a bucket: s3://bucket/prefix")
        self.bucket = bucket
        self.key = str(PurePosixPath(key.strip("/"))) if key.strip("/") else ""

    @classmethod
    def from_url(cls, url: str) -> S3Path:
        bucket, _, key = url[len(S3_SCHEME) :].partition("/")
        return cls(bucket, key)

    # -- naming
    def __str__(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.key}" if self.key else f"{S3_SCHEME}{self.bucket}"

    def __repr__(self) -> str:
        return f"S3Path({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, S3Path) and (self.bucket, self.key) == (other.bucket, other.key)

    def __hash__(self) -> int:
        return hash((self.bucket, self.key))

    def __lt__(self, other: S3Path) -> bool:
        return str(self) < str(other)

    def __truediv__(self, part: str | os.PathLike[str]) -> S3Path:
        child = os.fspath(part).strip("/")
        return S3Path(self.bucket, f"{self.key}/{child}" if self.key else child)

    def joinpath(self, *parts: str) -> S3Path:
        path = self
        for part in parts:
            path = path / part
        return path

    @property
    def name(self) -> str:
        return PurePosixPath(self.key).name if self.key else ""

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.key).suffix

    @property
    def parent(self) -> S3Path:
        parent = PurePosixPath(self.key).parent
        return S3Path(self.bucket, "" if str(parent) == "." else str(parent))

    @property
    def parents(self) -> list[S3Path]:
        found, path = [], self
        while path.key:
            path = path.parent
            found.append(path)
        return found

    def resolve(self) -> S3Path:
        return self

    def expanduser(self) -> S3Path:
        return self

    def is_absolute(self) -> bool:
        return True

    # -- reading
    def _prefix(self) -> str:
        return f"{self.key}/" if self.key else ""

    def _keys(self) -> Iterator[str]:
        """Every key under this prefix (the object itself excluded)."""
        pages = _client().get_paginator("list_objects_v2")
        with _s3_errors(self):
            for page in pages.paginate(Bucket=self.bucket, Prefix=self._prefix()):
                for item in page.get("Contents", []):
                    yield item["Key"]

    def _head(self) -> dict[str, Any] | None:
        if not self.key:
            return None
        try:
            with _s3_errors(self):
                return _client().head_object(Bucket=self.bucket, Key=self.key)
        except FileNotFoundError:
            return None

    def is_file(self) -> bool:
        return self._head() is not None

    def is_dir(self) -> bool:
        if not self.key:
            try:
                with _s3_errors(self):
                    _client().head_bucket(Bucket=self.bucket)
                return True
            except FileNotFoundError:
                return False
        try:
            with _s3_errors(self):
                listed = _client().list_objects_v2(
                    Bucket=self.bucket, Prefix=self._prefix(), MaxKeys=1
                )
        except FileNotFoundError:  # no bucket: no folder either
            return False
        return bool(listed.get("KeyCount"))

    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def stat(self) -> _Stat:
        head = self._head()
        if head is not None:
            return _Stat(stat.S_IFREG | 0o600, int(head.get("ContentLength", 0)))
        if self.is_dir():
            return _Stat(stat.S_IFDIR | 0o700, 0)
        raise FileNotFoundError(errno.ENOENT, "not found on S3", str(self))

    def iterdir(self) -> Iterator[S3Path]:
        """The objects and "folders" right under this prefix."""
        prefix = self._prefix()
        pages = _client().get_paginator("list_objects_v2")
        with _s3_errors(self):
            for page in pages.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    yield S3Path(self.bucket, common["Prefix"])
                for item in page.get("Contents", []):
                    if item["Key"] != prefix:
                        yield S3Path(self.bucket, item["Key"])

    def read_bytes(self) -> bytes:
        with _s3_errors(self):
            return _client().get_object(Bucket=self.bucket, Key=self.key)["Body"].read()

    def read_text(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.read_bytes().decode(encoding, errors)

    # -- writing
    def write_bytes(self, data: bytes) -> int:
        with _s3_errors(self):
            _client().put_object(Bucket=self.bucket, Key=self.key, Body=data, **encryption())
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """S3 has no folders: a prefix exists once an object is under it."""

    def unlink(self, missing_ok: bool = False) -> None:
        if not missing_ok and not self.is_file():
            raise FileNotFoundError(errno.ENOENT, "not found on S3", str(self))
        with _s3_errors(self):
            _client().delete_object(Bucket=self.bucket, Key=self.key)

    def rename(self, target: S3Path) -> S3Path:
        move(self, target)
        return target

    def _copy_to(self, target: S3Path) -> None:
        with _s3_errors(target):
            _client().copy_object(
                Bucket=target.bucket,
                Key=target.key,
                CopySource={"Bucket": self.bucket, "Key": self.key},
                **encryption(),
            )


Location = Path | S3Path


# -- what differs between a disk and a bucket ------------------------------------------------


def move(source: Location, target: Location, *, last: str | None = None) -> None:
    """Move a file or a folder. Local: one atomic rename (`os.replace`). S3: copy every
    object then delete the source; the object named `last` is copied last, so a folder
    holding it is complete."""
    if isinstance(source, Path) and isinstance(target, Path):
        os.replace(source, target)
        return
    if not (isinstance(source, S3Path) and isinstance(target, S3Path)):
        raise ValueError(f"cannot move {source} to {target}: one is local, one on S3")
    if source.is_file():
        source._copy_to(target)
        source.unlink(missing_ok=True)
        return
    keys = sorted(source._keys(), key=lambda k: (PurePosixPath(k).name == last, k))
    if not keys:
        raise FileNotFoundError(errno.ENOENT, "not found on S3", str(source))
    prefix = source._prefix()
    for key in keys:
        S3Path(source.bucket, key)._copy_to(target / key[len(prefix) :])
    _delete(source.bucket, keys, source)


def _delete(bucket: str, keys: list[str], where: S3Path) -> None:
    client = _client()
    for start in range(0, len(keys), 1000):
        batch = [{"Key": key} for key in keys[start : start + 1000]]
        with _s3_errors(where):
            client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})


def copy_file(source: Location, target: Location) -> None:
    if isinstance(source, Path) and isinstance(target, Path):
        shutil.copy2(source, target)
    elif isinstance(source, S3Path) and isinstance(target, S3Path):
        source._copy_to(target)
    else:
        target.write_bytes(source.read_bytes())


def remove_tree(where: Location) -> None:
    """Remove a folder and everything in it; a failure is ignored (like
    `shutil.rmtree(ignore_errors=True)`): it is only ever cleanup."""
    if isinstance(where, Path):
        shutil.rmtree(where, ignore_errors=True)
        return
    with suppress(OSError):
        keys = list(where._keys())
        if where.key and where.is_file():
            keys.append(where.key)
        if keys:
            _delete(where.bucket, keys, where)


def read_parquet(where: Location) -> pl.DataFrame:
    import polars as pl

    if isinstance(where, Path):
        return pl.read_parquet(where)
    return pl.read_parquet(BytesIO(where.read_bytes()))


def write_parquet(frame: pl.DataFrame, where: Location) -> None:
    if isinstance(where, Path):
        frame.write_parquet(where)
        return
    buffer = BytesIO()
    frame.write_parquet(buffer)
    where.write_bytes(buffer.getvalue())


def open_chunks(where: Location, chunk_size: int = 1 << 20) -> tuple[int, Iterator[bytes]]:
    """A file's size and its bytes in chunks, for streaming it out (a report of a million
    students is never held in memory whole). Opened at once, so a missing file raises
    FileNotFoundError here, before anything is sent; the chunks close the file when done."""
    if isinstance(where, Path):
        handle = where.open("rb")
        size = os.fstat(handle.fileno()).st_size

        def local() -> Iterator[bytes]:
            with handle:
                while chunk := handle.read(chunk_size):
                    yield chunk

        return size, local()
    if not where.key:
        raise IsADirectoryError(errno.EISDIR, "a bucket is not a file", str(where))
    with _s3_errors(where):
        answer = _client().get_object(Bucket=where.bucket, Key=where.key)
    body = answer["Body"]

    def remote() -> Iterator[bytes]:
        try:
            with _s3_errors(where):
                yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    return int(answer.get("ContentLength", 0)), remote()


def link(where: Location, *, seconds: int = LINK_SECONDS) -> str:
    """What the Dagster UI shows for a report file: its local path, or a presigned HTTPS
    URL that works for `seconds` (a link that outlives it is refused by S3)."""
    if isinstance(where, Path):
        return str(where)
    with _s3_errors(where):
        return _client().generate_presigned_url(
            "get_object", Params={"Bucket": where.bucket, "Key": where.key}, ExpiresIn=seconds
        )
