"""Remote file drops: fetch the newest roster export a SIS left on FTP, FTPS, SFTP or S3.

Many SIS vendors deliver a nightly zip into a folder instead of offering an API. Given the
folder as a URL and a glob, we list the folder, pick the newest matching file (modification
time, then name, so `roster_0802.zip` beats `roster_0801.zip` written in the same second)
and stream it to a local file while hashing it: a large export never sits in memory, and
the report can say exactly which file it read (name, size, SHA-256). `list_matching` only
lists (a connection test need not fetch a large export). Messages name the remote file
(`DroppedFile.url`), never the temporary copy; `downloaded` deletes that copy afterwards.

A file still being uploaded must not be read as the night's export:

- names that upload tools give a file in progress (`.part`, `.partial`, `.filepart`,
  `.tmp`, `.temp`, or a leading `.` as rsync and some FTP servers use) are never chosen;
- the file is looked at twice, in the listing and again after the download: if the bytes
  that arrived differ from the listed size, or size or time changed meanwhile, the read
  fails ("still being uploaded?") and the next run takes the finished file;
- an upload stalled with the final name and the same size at both looks goes through, but a
  zip is written with its index last, so a truncated one fails to open, naming the file.

Locations:

    ftp://host[:port]/folder     plain FTP, passive mode unless `passive` is false
    ftps://host[:port]/folder    explicit TLS (AUTH TLS) with a protected data channel (PROT P)
    sftp://host[:port]/folder    SSH file transfer
    s3://bucket/prefix           the objects directly under `prefix/`

A folder path is absolute; `/~/folder` is relative to the login folder, and no path at all
means the login folder itself.

Whom we trust, because a drop carries student data:

- FTPS verifies the server's certificate and host name against the system CAs, or against
  `tls_ca_file` (a CA bundle, or the server's own self-signed certificate). Never skipped.
- SFTP checks the server's key against `host_key` (its `SHA256:...` fingerprint as
  `ssh-keygen -lf` prints it, or its public key line `ssh-ed25519 AAAA...`, which also
  makes a server with keys of several types offer that type) or, without it, against the
  system known_hosts. An unknown key is refused, never trusted on first use; the error
  shows the offered fingerprint, to confirm with the provider and pin.
- S3 uses boto3's standard configuration (region, credentials, `AWS_ENDPOINT_URL`); a
  `username`/`password` pair, when given, is the access key id and secret access key of a
  bucket the customer owns.
"""

from __future__ import annotations

import errno
import fnmatch
import ftplib
import glob
import hashlib
import itertools
import socket
import ssl
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import SplitResult, unquote, urlsplit

from reconciliation.connectors.base import ConnectorError
from reconciliation.credentials import CredentialError, CredentialResolver, Secret, redact
from reconciliation.settings import CustomerSettings

DEFAULT_PATTERN = "*.zip"
#: name endings of files still being uploaded (WinSCP, FileZilla, curl, lftp, most scripts)
IN_PROGRESS_SUFFIXES = (".part", ".partial", ".filepart", ".tmp", ".temp")
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.EADDRNOTAVAIL}
DEFAULT_TIMEOUT = 30.0
_CHUNK = 1 << 20


def is_remote(location: str) -> bool:
    """A location with a URL scheme is remote; a local path (even `C:\\exports`) has none."""
    return "://" in location


@dataclass(frozen=True)
class RemoteFile:
    """One regular file of a remote folder, as its listing describes it."""

    name: str
    modified: datetime  # UTC
    size: int | None = None  # None where the listing does not say


def newest(files: list[RemoteFile]) -> RemoteFile | None:
    """The most recently modified file; a tie in time goes to the greater name."""
    return max(files, key=lambda f: (f.modified, f.name), default=None)


def is_in_progress(name: str) -> bool:
    """A name an upload tool gives a file it is still writing (see the module docstring)."""
    return name.startswith(".") or name.lower().endswith(IN_PROGRESS_SUFFIXES)


@dataclass(frozen=True)
class DroppedFile:
    """The downloaded copy of the chosen file, and what identifies it."""

    path: Path
    remote_name: str
    size: int
    sha256: str
    modified: datetime
    #: the remote file as messages name it (`sftp://host/drops/export.zip`), never the
    #: temporary local copy, which means nothing to whoever fixes the file
    url: str

    def meta(self) -> dict[str, Any]:
        """Provenance for `Roster.meta` (no local path: the copy is temporary)."""
        return {
            "remote_name": self.remote_name,
            "size": self.size,
            "sha256": self.sha256,
            "modified": self.modified.isoformat(),
        }


@dataclass(frozen=True)
class DropAccess:
    """How to log in and whom to trust (see the module docstring)."""

    username: str | None = None
    password: Secret | None = None
    private_key: Secret | None = None
    host_key: str | None = None
    tls_ca_file: Path | None = None
    passive: bool = True
    timeout: float = DEFAULT_TIMEOUT


@contextmanager
def downloaded(
    settings: CustomerSettings, credentials: CredentialResolver
) -> Iterator[DroppedFile]:
    """The customer's newest drop in a temporary folder, deleted when the block ends."""
    with tempfile.TemporaryDirectory(prefix="reconciliation-drop-") as folder:
        yield download_from_settings(settings, credentials, Path(folder))


def download_from_settings(
    settings: CustomerSettings, credentials: CredentialResolver, dest_dir: Path
) -> DroppedFile:
    """Download the newest file of the customer's `source.location` into `dest_dir`."""
    location, pattern, access = _from_settings(settings, credentials)
    return download_newest(location, dest_dir, pattern=pattern, access=access)


def list_from_settings(
    settings: CustomerSettings, credentials: CredentialResolver
) -> list[RemoteFile]:
    """The files of the customer's `source.location` matching its `pattern`, as the
    listing describes them; nothing is downloaded."""
    location, pattern, access = _from_settings(settings, credentials)
    return list_matching(location, pattern=pattern, access=access)


def _from_settings(
    settings: CustomerSettings, credentials: CredentialResolver
) -> tuple[str, str, DropAccess]:
    """The `source` block -> location, pattern and access (credentials resolved now)."""
    source = settings.source
    location = str(source["location"])
    try:
        username = source.get("username")
        access = DropAccess(
            username=credentials.value(username).reveal() if username else None,
            password=credentials.resolve(source["password"]) if source.get("password") else None,
            private_key=(
                credentials.resolve(source["private_key"]) if source.get("private_key") else None
            ),
            host_key=source.get("host_key"),
            tls_ca_file=(
                settings.resolve_path(source["tls_ca_file"]) if source.get("tls_ca_file") else None
            ),
            passive=bool(source.get("passive", True)),
        )
    except CredentialError as exc:
        raise ConnectorError(f"{_display(urlsplit(location))}: {exc}") from None
    return location, str(source.get("pattern") or DEFAULT_PATTERN), access


def download_newest(
    location: str,
    dest_dir: Path,
    *,
    pattern: str = DEFAULT_PATTERN,
    access: DropAccess | None = None,
) -> DroppedFile:
    """List the folder at `location`, download its newest file matching `pattern`.

    Every failure (unreachable host, refused login, untrusted server, missing folder, no
    matching file) is a ConnectorError that names the location, never the password.
    """
    with _opened(location, access) as (drop, where):
        chosen = newest(_complete(drop.list(pattern)))
        if chosen is None:
            raise ConnectorError(_no_match(where, pattern, drop.seen))
        return _download(drop, chosen, Path(dest_dir), where)


def list_matching(
    location: str, *, pattern: str = DEFAULT_PATTERN, access: DropAccess | None = None
) -> list[RemoteFile]:
    """The regular files directly in the folder at `location` that match `pattern`, with
    their size and modification time; nothing is downloaded. Failures as in
    `download_newest`; no matching file is an empty list."""
    with _opened(location, access) as (drop, _where):
        return _complete(drop.list(pattern))


def _complete(files: list[RemoteFile]) -> list[RemoteFile]:
    """The files that are not uploads in progress by their name."""
    return [f for f in files if not is_in_progress(f.name)]


def _no_match(where: str, pattern: str, names: list[str], shown: int = 5) -> str:
    """Why nothing was chosen, with a few of the names that are there, for a pattern typo."""
    message = f"{where}: no file matching {pattern!r}"
    if not names:
        return f"{message}; the folder is empty"
    skipped = sorted(n for n in names if is_in_progress(n) and fnmatch.fnmatchcase(n, pattern))
    if skipped:
        message += f" but uploads in progress ({', '.join(skipped[:shown])})"
    first = sorted(names)[:shown]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{message}; found {', '.join(first)}{more}"


@contextmanager
def _opened(location: str, access: DropAccess | None) -> Iterator[tuple[_Drop, str]]:
    """A logged-in connection to the folder at `location`, and how to name it in
    messages. Any failure inside becomes a ConnectorError naming the location."""
    url = urlsplit(location)
    try:
        url.port  # noqa: B018 (validates the port)
    except ValueError:
        raise ConnectorError(f"{url.scheme}://{url.hostname}: invalid port") from None
    where = _display(url)
    drop_class = _DROPS.get(url.scheme.lower())
    if drop_class is None:
        raise ConnectorError(f"{where}: unsupported scheme {url.scheme!r} (ftp, ftps, sftp or s3)")
    if url.password:
        raise ConnectorError(
            f"{where}: the location holds a password; put a credential reference in `password`"
        )
    access = access or DropAccess()
    if not access.username and url.username:
        access = replace(access, username=unquote(url.username))
    drop = drop_class(url, access)
    try:
        with drop:
            yield drop, where
    except ConnectorError:
        raise
    except Exception as exc:
        reason = drop.explain(exc)
        if reason is None:
            raise
        raise ConnectorError(redact(f"{where}: {reason}")) from None


def _display(url: SplitResult) -> str:
    """The location without any password, for messages."""
    user = f"{url.username}@" if url.username else ""
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{user}{url.hostname or ''}{port}{url.path}"


def _download(drop: _Drop, chosen: RemoteFile, dest_dir: Path, where: str) -> DroppedFile:
    """Stream one file to `dest_dir`, hashing as it arrives; keep it only when complete."""
    name = PurePosixPath(chosen.name).name
    if name != chosen.name or name in ("", ".", ".."):
        raise ConnectorError(f"{where}: refusing the odd file name {chosen.name!r}")
    target = dest_dir / name
    partial = target.with_name(f"{name}.part")
    digest = hashlib.sha256()
    size = 0

    def write(chunk: bytes) -> None:
        nonlocal size
        out.write(chunk)
        digest.update(chunk)
        size += len(chunk)

    try:
        with partial.open("wb") as out:
            drop.retrieve(chosen.name, write)
        if chosen.size is not None and size != chosen.size:
            raise ConnectorError(
                f"{where}: {name} was listed with {chosen.size} bytes but {size} arrived "
                "(is it still being uploaded?)"
            )
        if drop.list(glob.escape(chosen.name)) != [chosen]:
            raise ConnectorError(
                f"{where}: {name} changed while it was read (is it still being uploaded?)"
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    url = f"{where.rstrip('/')}/{name}"
    return DroppedFile(target, name, size, digest.hexdigest(), chosen.modified, url)


def _folder(url_path: str) -> str:
    """URL path -> remote folder: absolute as written, `/~/x` relative to the login folder."""
    path = unquote(url_path)
    if path in ("", "/~", "/~/"):
        return ""
    return path[3:] if path.startswith("/~/") else path


def _network_reason(exc: BaseException, host: str, port: int, timeout: float) -> str | None:
    """The reason of a network failure, or None when `exc` is not one (a local disk
    error, say, keeps its own traceback)."""
    if isinstance(exc, TimeoutError):
        return f"no answer from {host}:{port} within {timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host {host!r}"
    if isinstance(exc, ConnectionError) or (isinstance(exc, OSError) and exc.errno in _UNREACHABLE):
        return f"cannot reach {host}:{port} ({exc.strerror or type(exc).__name__})"
    return None


class _Drop(Protocol):
    def __enter__(self) -> _Drop: ...
    def __exit__(self, *exc: object) -> None: ...

    #: the names of the folder's files in the last listing, matching or not (for messages)
    seen: list[str]

    def list(self, pattern: str) -> list[RemoteFile]: ...
    def retrieve(self, name: str, write: Callable[[bytes], None]) -> None: ...
    def explain(self, exc: Exception) -> str | None: ...


# -- FTP and FTPS ------------------------------------------------------------------------


class _FtpDrop:
    """ftplib; MLSD for the listing, or NLST + MDTM + SIZE on servers without it (vsftpd)."""

    def __init__(self, url: SplitResult, access: DropAccess) -> None:
        self.tls = url.scheme.lower() == "ftps"
        self.host, self.port = url.hostname or "", url.port or 21
        self.folder = _folder(url.path)
        self.access = access
        self.target = f"folder {self.folder or '(login folder)'!r}"  # what an error is about
        self.seen: list[str] = []

    def __enter__(self) -> _FtpDrop:
        access = self.access
        if self.tls:
            context = ssl.create_default_context(cafile=access.tls_ca_file)
            self.ftp: ftplib.FTP = _FtpTls(context=context, timeout=access.timeout)
        else:
            self.ftp = ftplib.FTP(timeout=access.timeout)
        try:
            self.ftp.connect(self.host, self.port)
            password = access.password.reveal() if access.password else ""
            self.ftp.login(access.username or "anonymous", password)
            if isinstance(self.ftp, ftplib.FTP_TLS):
                self.ftp.prot_p()
            self.ftp.set_pasv(access.passive)
            if self.folder:
                self.ftp.cwd(self.folder)
        except BaseException:
            self.ftp.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.ftp.quit()
        except Exception:
            self.ftp.close()

    def list(self, pattern: str) -> list[RemoteFile]:
        try:
            entries = list(self.ftp.mlsd(facts=["type", "size", "modify"]))
        except ftplib.error_perm as exc:
            if str(exc)[:3] not in ("500", "501", "502"):  # not "unknown command or option"
                raise
            return self._list_without_mlsd(pattern)
        self.seen = [name for name, facts in entries if facts.get("type") == "file"]
        files = []
        for name, facts in entries:
            if facts.get("type") != "file" or not fnmatch.fnmatchcase(name, pattern):
                continue
            modified = _ftp_time(facts["modify"]) if "modify" in facts else self._mdtm(name)
            size = int(facts["size"]) if "size" in facts else None
            files.append(RemoteFile(name, modified, size))
        return files

    def _list_without_mlsd(self, pattern: str) -> list[RemoteFile]:
        # some servers answer NLST with paths; folders are among the names
        self.seen = [PurePosixPath(name).name for name in self.ftp.nlst()]
        self.ftp.voidcmd("TYPE I")  # after NLST, which switches to ASCII: SIZE wants binary
        files = []
        for name in self.seen:
            if not fnmatch.fnmatchcase(name, pattern):
                continue
            try:
                modified = self._mdtm(name)
            except ftplib.error_perm:  # a folder, or a file we may not read
                continue
            files.append(RemoteFile(name, modified, self.ftp.size(name)))
        return files

    def _mdtm(self, name: str) -> datetime:
        return _ftp_time(self.ftp.voidcmd(f"MDTM {name}").split()[1])

    def retrieve(self, name: str, write: Callable[[bytes], None]) -> None:
        self.target = f"file {name!r}"
        self.ftp.retrbinary(f"RETR {name}", write, blocksize=_CHUNK)

    def explain(self, exc: Exception) -> str | None:
        if isinstance(exc, ftplib.error_perm) and str(exc).startswith("530"):
            return f"login refused for user {self.access.username or 'anonymous'!r} ({exc})"
        if isinstance(exc, ftplib.error_perm) and str(exc).startswith("550"):
            return f"no access to {self.target} ({exc})"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (
                f"the server's TLS certificate is not trusted ({exc.verify_message}); "
                "set `tls_ca_file` to its CA or certificate"
            )
        if isinstance(exc, ssl.SSLError):
            return f"TLS failed ({exc.reason or exc})"
        if isinstance(exc, ftplib.Error):
            return f"FTP error: {exc}"
        if isinstance(exc, EOFError):
            return "the server closed the connection"
        return _network_reason(exc, self.host, self.port, self.access.timeout)


class _FtpTls(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS session, which
    vsftpd (`require_ssl_reuse`, on by default) and FileZilla Server demand: it proves the
    data connection comes from the client that logged in."""

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            session = self.sock.session  # type: ignore[attr-defined]
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size


def _ftp_time(value: str) -> datetime:
    """An RFC 3659 time value (`YYYYMMDDHHMMSS[.sss]`, always UTC)."""
    whole, _, fraction = value.partition(".")
    moment = datetime.strptime(whole, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    return moment.replace(microsecond=int(fraction.ljust(6, "0")[:6])) if fraction else moment


# -- SFTP --------------------------------------------------------------------------------


class HostKeyError(Exception):
    """The SFTP server offered a key we do not trust. The message shows its fingerprint."""


@dataclass(frozen=True)
class PinnedHostKey:
    """`host_key` read: the fingerprints and the public keys it names (either may be empty)."""

    fingerprints: tuple[str, ...]
    keys: tuple[Any, ...]  # paramiko.PKey

    @classmethod
    def parse(cls, text: str) -> PinnedHostKey:
        """`SHA256:...` (alone or in an `ssh-keygen -lf` line), or public key / known_hosts
        lines (`ssh-ed25519 AAAA...`); anything else is refused, not silently unmatched."""
        import base64
        import binascii

        import paramiko

        words = text.split()
        fingerprints = tuple(w.rstrip("=") for w in words if w.startswith("SHA256:"))
        kinds = {kind for key_class in paramiko.key_classes for kind in key_class.identifiers()}
        keys = []
        for kind, blob in itertools.pairwise(words):
            if kind not in kinds:
                continue
            try:
                data = base64.b64decode(blob, validate=True)
                keys.append(paramiko.PKey.from_type_string(kind, data))
            except (paramiko.SSHException, binascii.Error, ValueError):
                continue  # not a key of that type: the message below, unless another is
        if not fingerprints and not keys:
            raise HostKeyError(
                "`host_key` must be the server key's fingerprint `SHA256:...` or its public "
                "key line `ssh-ed25519 AAAA...`"
            )
        return cls(fingerprints, tuple(keys))

    def matches(self, key: Any) -> bool:
        return key.fingerprint in self.fingerprints or any(
            key.get_name() == pinned.get_name() and key.asbytes() == pinned.asbytes()
            for pinned in self.keys
        )


class _HostKeyCheck:
    """paramiko's missing-host-key policy: accept the pinned key only, never trust on first use."""

    def __init__(self, pinned: PinnedHostKey | None) -> None:
        self.pinned = pinned

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        if self.pinned and self.pinned.matches(key):
            return
        offered = f"{key.get_name()} {key.fingerprint}"
        if self.pinned:
            raise HostKeyError(
                f"the server's host key {offered} does not match `host_key` (a server with "
                "keys of several types: pin the public key line of the type you were given)"
            )
        raise HostKeyError(
            f"the server's host key {offered} is not in known_hosts; confirm it with the "
            "provider and set it as `host_key`"
        )


class _SftpDrop:
    """paramiko's SSHClient with our host key policy; no agent, no keys from ~/.ssh."""

    def __init__(self, url: SplitResult, access: DropAccess) -> None:
        self.host, self.port = url.hostname or "", url.port or 22
        self.folder = _folder(url.path) or "."
        self.access = access
        self.target = f"folder {self.folder!r}"  # what an error is about
        self.seen: list[str] = []

    def __enter__(self) -> _SftpDrop:
        import paramiko

        access = self.access
        if not access.username:
            raise ConnectorError(f"sftp://{self.host}: set `username` (sftp needs one)")
        pinned = PinnedHostKey.parse(access.host_key) if access.host_key is not None else None
        self.client = paramiko.SSHClient()
        if pinned is None:
            self.client.load_system_host_keys()
        else:  # pinned keys as known hosts: paramiko then asks the server for their type
            known_as = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
            for key in pinned.keys:
                self.client.get_host_keys().add(known_as, key.get_name(), key)
        self.client.set_missing_host_key_policy(_HostKeyCheck(pinned))
        try:
            self.client.connect(
                self.host,
                port=self.port,
                username=access.username,
                password=access.password.reveal() if access.password else None,
                pkey=_private_key(access.private_key),
                timeout=access.timeout,
                banner_timeout=access.timeout,
                auth_timeout=access.timeout,
                channel_timeout=access.timeout,
                look_for_keys=False,
                allow_agent=False,
            )
            self.sftp = self.client.open_sftp()
            self.sftp.get_channel().settimeout(access.timeout)
        except BaseException:
            self.client.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def list(self, pattern: str) -> list[RemoteFile]:
        import stat

        entries = [e for e in self.sftp.listdir_attr(self.folder) if stat.S_ISREG(e.st_mode or 0)]
        self.seen = [entry.filename for entry in entries]
        return [
            RemoteFile(
                entry.filename, datetime.fromtimestamp(entry.st_mtime or 0, UTC), entry.st_size
            )
            for entry in entries
            if fnmatch.fnmatchcase(entry.filename, pattern)
        ]

    def retrieve(self, name: str, write: Callable[[bytes], None]) -> None:
        self.target = f"file {name!r}"
        with self.sftp.open(f"{self.folder}/{name}", "rb") as remote:
            remote.prefetch()
            while chunk := remote.read(_CHUNK):
                write(chunk)

    def explain(self, exc: Exception) -> str | None:
        import paramiko

        if isinstance(exc, HostKeyError):
            return str(exc)
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            exc = next(iter(exc.errors.values()), exc)  # one error per address tried
        if isinstance(exc, paramiko.BadHostKeyException):
            trusted = "`host_key`" if self.access.host_key is not None else "known_hosts"
            offered = f"{exc.key.get_name()} {exc.key.fingerprint}"
            return f"the server's host key {offered} differs from {trusted}"
        if isinstance(exc, paramiko.AuthenticationException):
            return f"login refused for user {self.access.username!r}"
        if isinstance(exc, paramiko.SSHException):
            return f"SSH error: {exc}"
        if isinstance(exc, FileNotFoundError):
            return f"{self.target} not found"
        if isinstance(exc, PermissionError):
            return f"permission denied on {self.target}"
        return _network_reason(exc, self.host, self.port, self.access.timeout)


def _private_key(secret: Secret | None) -> Any:
    """A paramiko key from the text of an OpenSSH or PEM private key (not passphrase-protected)."""
    if secret is None:
        return None
    import io

    import paramiko

    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(io.StringIO(secret.reveal()))
        except paramiko.SSHException:
            continue
    raise ConnectorError(
        f"{secret.reference}: not an unencrypted Ed25519, ECDSA or RSA private key"
    )


# -- S3 ----------------------------------------------------------------------------------


class _S3Drop:
    """boto3 with its standard configuration; the prefix is a folder, not a name start."""

    def __init__(self, url: SplitResult, access: DropAccess) -> None:
        self.bucket = url.hostname or ""
        prefix = unquote(url.path).lstrip("/")
        self.prefix = prefix if not prefix or prefix.endswith("/") else f"{prefix}/"
        self.access = access
        self.seen: list[str] = []

    def __enter__(self) -> _S3Drop:
        import boto3
        from botocore.config import Config

        access = self.access
        keys = {}
        if access.username and access.password:
            keys = {
                "aws_access_key_id": access.username,
                "aws_secret_access_key": access.password.reveal(),
            }
        config = Config(connect_timeout=access.timeout, read_timeout=access.timeout)
        self.client = boto3.client("s3", config=config, **keys)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def list(self, pattern: str) -> list[RemoteFile]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"
        )
        objects = [
            (name, item)
            for page in pages
            for item in page.get("Contents", [])
            if (name := item["Key"][len(self.prefix) :])  # not the folder's own marker
        ]
        self.seen = [name for name, _item in objects]
        return [
            RemoteFile(name, item["LastModified"].astimezone(UTC), item["Size"])
            for name, item in objects
            if fnmatch.fnmatchcase(name, pattern)
        ]

    def retrieve(self, name: str, write: Callable[[bytes], None]) -> None:
        body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + name)["Body"]
        for chunk in body.iter_chunks(_CHUNK):
            write(chunk)

    def explain(self, exc: Exception) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = error.get("Code", "error")
            if code == "NoSuchBucket":
                return f"bucket {self.bucket!r} not found"
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                return f"access denied ({code})"
            return f"S3 error {code}: {error.get('Message', '')}".rstrip(": ")
        if isinstance(exc, NoCredentialsError):
            return "no AWS credentials (boto3's standard configuration found none)"
        if isinstance(exc, BotoCoreError):
            return f"S3 error: {exc}"
        return None


_DROPS: dict[str, type[_FtpDrop] | type[_SftpDrop] | type[_S3Drop]] = {
    "ftp": _FtpDrop,
    "ftps": _FtpDrop,
    "sftp": _SftpDrop,
    "s3": _S3Drop,
}
