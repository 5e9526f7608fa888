"""OneRoster CSV bulk sets (1.0, 1.1, 1.2) from a folder or a .zip -> the canonical source roster.

The mapping itself (what Bookmarked's sync makes of each record) lives in
`oneroster_model.py`, shared with the REST connector; this module only reads files.

What the reader accepts, because real exports do it and the meaning stays unambiguous:

- a folder, or a .zip holding the files at its root or in one folder at any depth
  (`export/`, `a/b/`, also written `export\\users.csv`); other files beside them,
  `__MACOSX/` and dot-files are ignored; file names in any case (`Users.csv`);
- UTF-8 with or without a BOM, UTF-16 with a BOM; LF, CRLF or CR line ends; blank lines
  and rows of separators only (`,,,,`, as Excel writes them);
- RFC 4180 quoting, including comma-separated lists and line breaks inside one quoted
  field; a stray quote inside an unquoted field is kept as a character;
- header names with surrounding whitespace or in another case (`SourcedId`), the 1.0
  names (`agents`, `termSourcedId`, ...), any extra or `metadata.*` column;
- rows with extra trailing fields that are all empty (an exporter's trailing commas), and
  empty names at the end of the header (`...,orgSourcedId,,`: padding, whether the rows
  are padded too or not);
- blank or filled `status`/`dateLastModified`, `inactive` read as `tobedeleted`,
  booleans as true/false/1/0/yes/no in any case, dates with a trailing time
  (`2020-08-17T00:00:00Z` or `2020-08-17 00:00:00` count as 2020-08-17);
- no manifest (the 1.0 layout), a manifest whose `manifest.version` is `1`, a blank
  `file.*` mode (not declared), files the manifest calls absent (missing, or an empty
  file: read as empty) and files it forgets (read anyway: the files win; disagreements
  are noted in the roster's meta under `manifest_notes`);
- 1.2 sets: roles from `roles.csv`, the school from `primaryOrgSourcedId`.

What it refuses, each with ONE `SourceDataError` naming file, line, column and field:
a manifest declaring any file `delta` (a delta holds changes only; reconciliation needs
the full bulk set), a missing `users.csv` or required column, a 1.2 set without roles,
fields separated by `;`, tabs or `|`, an empty header name between named columns, a row
with the wrong number of fields (often a quote that is never closed) or with a value
under no header name, bytes that are not UTF-8 (Windows-1252 is not guessed), a
bad date, status or boolean, a blank sourcedId, an unreadable or corrupt zip, a zip that
would expand past `source.limits` (2 GiB in all, or any member over 1 MiB expanding more
than 100x: a zip bomb; checked on the declared sizes before extracting anything, and on
the bytes as they come out), a zip member compressed otherwise than stored or deflate.

Kept as they are, for the rules to judge: duplicate sourcedIds, references to records
that are not in the set, users without a role row in a 1.2 set (role `other`).

Speed: files are parsed by pyarrow's multi-threaded CSV reader straight into Arrow and
polars; a file that pyarrow finds irregular is read again with Python's csv module,
which either locates the problem exactly or accepts the tolerated quirk (slower: about
10 s per million rows, so only quirky files pay it). Memory: each file's bytes are read
whole and parsed with pyarrow's jemalloc pool; the text is never built for the fast reader
(UTF-8 is checked a slice at a time) nor kept (an error the mapping finds later reads the
file again to locate the record). Measured on the 1M-student benchmark set (800 MB of
CSV): peak RSS of the whole read 2.5 GiB, was 4.8 GiB with every file's text kept.

For a diagnosis (`read_people`, `find_people_in_bulk_set`, `fetch_records`) the files are
scanned, not loaded: parsed 4 MiB at a time (cut at line ends) by the same pyarrow
reader, the id column tested first, only the rows kept reach polars (and no
pyarrow.compute, whose first call imports pandas). Measured peak growth: 160 MB for
300,000 users and 900,000 enrollments, 230 MB at three times that (reading the 300,000
whole: 670 MB); the run's scope says how many rows of each file were kept. One
diagnosis's connector scans users.csv once, for its lookup columns (`PeopleCache`: ids,
agents, numbers, emails, names, and where each chunk of the file lies), and remembers the
rows it read by id: a later round parses only the chunks holding new ids.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import hashlib
import io
import itertools
import logging
import operator
import re
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import polars as pl

from reconciliation.audit import AuditEvent
from reconciliation.connectors import file_drops
from reconciliation.connectors.base import ConnectorError, SourceConnector, SourceDataError
from reconciliation.connectors.oneroster_model import (
    FIELDS,
    RecordError,
    build_source_roster,
    build_source_roster_from,
)
from reconciliation.connectors.people import (
    PersonMatch,
    PersonQuery,
    find_people_in,
    name_key,
    records_of,
    with_scope,
)
from reconciliation.roster import Roster
from reconciliation.settings import CREDENTIAL_REF, REF_OR_VALUE

log = logging.getLogger(__name__)

#: the files the roster is built from (academicSessions, demographics... are not needed)
TABLES = ("orgs", "users", "classes", "courses", "enrollments", "roles")

#: columns a file must have (the spec's required columns that the mapping reads)
REQUIRED: dict[str, tuple[str, ...]] = {
    "manifest": ("propertyName", "value"),
    "orgs": ("sourcedId", "name", "type"),
    "users": ("sourcedId", "givenName", "familyName"),
    "classes": ("sourcedId", "title", "courseSourcedId", "schoolSourcedId"),
    "courses": ("sourcedId",),
    "enrollments": ("sourcedId", "classSourcedId", "userSourcedId", "role"),
    "roles": ("userSourcedId", "roleType", "role"),
}
#: required in users.csv up to 1.1; 1.2 moved them to roles.csv
REQUIRED_USERS_1_1 = ("role", "orgSourcedIds")

#: 1.0 (and common variant) header names -> the 1.1/1.2 name, per file, lower-cased
ALIASES: dict[str, dict[str, str]] = {
    "users": {"agents": "agentSourcedIds", "userid": "userIds", "grade": "grades"},
    "classes": {"termsourcedid": "termSourcedIds", "grade": "grades"},
    "courses": {"grade": "grades", "schoolyearid": "schoolYearSourcedId"},
}

FILE_MODES = ("absent", "bulk", "delta")

#: file names (lower-cased) that mark the folder of a zip holding the set
ONEROSTER_FILES = frozenset(
    f"{name.lower()}.csv" for name in ("manifest", *TABLES, "academicSessions", "demographics")
)


# -- where the files are ---------------------------------------------------------------


@dataclass(frozen=True)
class BulkSet:
    """The files of one bulk set, read lazily from a folder or a zip.

    `files` maps lower-cased file names (`users.csv`) to the name in the folder or the
    member name in the zip; `label()` is how a file is named in messages (a zip member
    as `export.zip!users.csv`), `name` how the set itself is.
    """

    location: Path  # the folder or zip on this machine (for a drop: its temporary copy)
    name: str
    files: Mapping[str, str]
    _read: Callable[[str], bytes] = field(repr=False)
    _label: Callable[[str], str] = field(repr=False)

    def has(self, name: str) -> bool:
        return name.lower() in self.files

    def label(self, name: str) -> str:
        return self._label(self.files.get(name.lower(), name))

    def read(self, name: str) -> bytes:
        return self._read(self.files[name.lower()])


def _index_names(name: str, names: Collection[str], base: Callable[[str], str]) -> dict[str, str]:
    """Lower-cased base name -> name; two files differing only in case are ambiguous."""
    index: dict[str, str] = {}
    for entry in sorted(names):
        key = base(entry).lower()
        if key in index:
            raise SourceDataError(
                f"holds both {index[key]!r} and {entry!r}: which one is meant is ambiguous",
                file=name,
            )
        index[key] = entry
    return index


@dataclass(frozen=True)
class ZipLimits:
    """How far a zipped bulk set may expand (settings: `source.limits`), against zip bombs:
    a few KB that inflate to terabytes and fill the disk or the memory of the run.

    Checked twice: on the sizes the zip's central directory declares, before anything is
    extracted; and on the bytes that actually come out while a member is read (against
    the compressed bytes actually consumed), since declared sizes can lie.
    """

    #: all members together, uncompressed
    max_uncompressed_bytes: int = 2 * 1024**3
    #: uncompressed / compressed size of any one member past RATIO_GRACE_BYTES
    max_compression_ratio: float = 100.0

    @classmethod
    def from_settings(cls, limits: Mapping[str, Any] | None) -> ZipLimits:
        """From the settings' `limits` block (validated by the settings schema)."""
        return cls(**(limits or {}))


#: a member is judged by its compression ratio only once it expands past this: a small
#: file of repeated text may compress 100x and harms nobody (Apache POI's zip-bomb guard
#: has the same kind of grace)
RATIO_GRACE_BYTES = 1 << 20
#: bytes asked of a member per read: the ratio is checked after each, and zipfile reads
#: up to this many compressed bytes ahead (counted as consumed, so a lenient ratio)
_ZIP_CHUNK = 1 << 16
#: the compression methods a member is read with in bounded steps (Python's zipfile
#: inflates bzip2 and LZMA with no output limit, so no guard could stop a bomb there)
_BOUNDED_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_METHOD_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA", 9: "Deflate64"}


def open_bulk_set(
    path: Path, *, shown_as: str | None = None, limits: ZipLimits | None = None
) -> BulkSet:
    """A local folder or .zip as a BulkSet; a zip is held to `limits` (default ZipLimits()).

    A remote drop is downloaded to a temporary file first and comes here with `shown_as`,
    its remote URL: messages then name the file on the drop (`sftp://host/drops/x.zip!
    users.csv, line 7`), which whoever fixes the export can find, and never the
    temporary copy, which is gone by the time anyone reads the message.
    """
    name = shown_as or str(path)
    if path.is_dir():
        names = [p.name for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
        return BulkSet(
            location=path,
            name=name,
            files=_index_names(name, names, lambda n: n),
            _read=lambda file: _read_file(path / file, f"{name}/{file}"),
            _label=lambda file: f"{name}/{file}",
        )
    if not path.exists():
        raise ConnectorError(f"{name}: no such folder or file")
    return _open_zip(path, name, limits or ZipLimits())


def _read_file(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConnectorError(f"{name}: cannot read ({exc.strerror})") from None


def _zip_folder(member: str) -> str:
    return member.replace("\\", "/").rpartition("/")[0]


def _zip_base(member: str) -> str:
    return member.replace("\\", "/").rpartition("/")[2]


def _check_declared_sizes(infos: list[zipfile.ZipInfo], name: str, limits: ZipLimits) -> None:
    """Refuse, before extracting anything, a zip whose central directory declares more
    than `limits` allow."""
    files = [info for info in infos if not info.is_dir()]
    total = sum(info.file_size for info in files)
    if total > limits.max_uncompressed_bytes:
        largest = max(files, key=lambda info: info.file_size)
        raise SourceDataError(
            f"the zip's members would expand to {total:,} bytes in all ({largest.filename} "
            f"alone to {largest.file_size:,}), over the limit of "
            f"{limits.max_uncompressed_bytes:,} (source.limits.max_uncompressed_bytes): "
            "refused before extracting anything, as a possible zip bomb; if the export is "
            "really this large, raise the limit",
            file=f"{name}!{largest.filename}",
        )
    for info in files:
        if info.file_size <= RATIO_GRACE_BYTES:
            continue
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.max_compression_ratio:
            raise SourceDataError(
                f"expands {ratio:,.0f}x ({info.compress_size:,} bytes to "
                f"{info.file_size:,}), over the limit of {limits.max_compression_ratio:g}x "
                "(source.limits.max_compression_ratio): refused before extracting anything, "
                "as a possible zip bomb",
                file=f"{name}!{info.filename}",
            )


class _CountingFile:
    """A file that counts the bytes read from it: the compressed bytes a member consumed."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.bytes_read = raw, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.bytes_read += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def seekable(self) -> bool:
        return True


def _read_member(path: Path, member: str, label: str, limits: ZipLimits) -> bytes:
    """One member's bytes, read in steps whose ratio is checked as they come out, against
    the compressed bytes actually consumed. (The total needs no second check: zipfile
    never yields more than a member's declared size, it stops there and checks the CRC,
    so the declared total that `_check_declared_sizes` accepted bounds what comes out.)"""
    with path.open("rb") as raw:
        counted = _CountingFile(raw)
        with zipfile.ZipFile(counted) as archive:  # type: ignore[arg-type]
            info = archive.getinfo(member)
            if info.compress_type not in _BOUNDED_METHODS:
                method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
                raise SourceDataError(
                    f"is compressed with {method}, which cannot be read with a guard against "
                    "zip bombs: zip the export again with the usual compression (deflate)",
                    file=label,
                )
            with archive.open(info) as stream:
                start = counted.bytes_read  # the central directory and the local header
                chunks: list[bytes] = []
                size = 0
                while chunk := stream.read(_ZIP_CHUNK):
                    chunks.append(chunk)
                    size += len(chunk)
                    _check_expansion(label, info, size, counted.bytes_read - start, limits)
    return b"".join(chunks)


def _check_expansion(
    label: str, info: zipfile.ZipInfo, size: int, compressed: int, limits: ZipLimits
) -> None:
    """`size` bytes out of `compressed` so far: past the declared sizes' check, so the
    zip's central directory lied about the compressed size."""
    if size > RATIO_GRACE_BYTES and size > limits.max_compression_ratio * max(compressed, 1):
        raise SourceDataError(
            f"expanded more than {limits.max_compression_ratio:g}x while being read "
            f"({compressed:,} bytes to {size:,} so far; source.limits.max_compression_ratio), "
            f"although the zip declares {info.compress_size:,} bytes expanding to "
            f"{info.file_size:,}: the zip's declared sizes are wrong; refused as a possible "
            "zip bomb",
            file=label,
        )


def _open_zip(path: Path, name: str, limits: ZipLimits) -> BulkSet:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        hint = " (a bulk set is a folder or a .zip)" if path.suffix.lower() == ".csv" else ""
        raise SourceDataError(f"not a readable zip file ({exc}){hint}", file=name) from None
    _check_declared_sizes(infos, name, limits)
    members = [
        info.filename
        for info in infos
        if not info.is_dir()
        and not info.filename.replace("\\", "/").startswith("__MACOSX/")
        and _zip_base(info.filename)[:1] not in ("", ".")
    ]
    # the set is the one folder holding OneRoster files (the root, `export/`, `a/b/`);
    # Windows tools may write `export\users.csv`
    folders = {_zip_folder(m) for m in members if _zip_base(m).lower() in ONEROSTER_FILES} or {""}
    if len(folders) > 1:
        raise SourceDataError(
            "holds OneRoster files in several folders, so which set is meant is ambiguous "
            f"(found folders: {', '.join(sorted(f or '(root)' for f in folders))})",
            file=name,
        )
    [folder] = folders
    members = [m for m in members if _zip_folder(m) == folder]

    def read(member: str) -> bytes:
        try:
            return _read_member(path, member, f"{name}!{member}", limits)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError) as exc:
            raise SourceDataError(
                f"cannot be extracted from the zip ({exc})", file=f"{name}!{member}"
            ) from None

    return BulkSet(
        location=path,
        name=name,
        files=_index_names(name, members, _zip_base),
        _read=read,
        _label=lambda member: f"{name}!{member}",
    )


# -- one CSV file -> a polars frame of strings -----------------------------------------


@dataclass(frozen=True)
class CsvTable:
    """One file as read: String columns under their canonical names (blank = "").

    `source` gives the file's bytes again, only to locate a record in an error: the
    decoded text of every file was held to the end of the read, 1 GB of a million
    students' files (users.csv's names made it 2 bytes a character).
    """

    file: str
    header: list[str]  # as written, stripped
    positions: dict[str, int]  # canonical name -> 0-based column
    frame: pl.DataFrame
    source: Callable[[], bytes] = field(repr=False)

    def line_of(self, index: int) -> int:
        """The first physical line of the `index`-th record (0-based, after the header)."""
        text = _decode(_as_utf8(self.source(), self.file), self.file)
        for position, (line, _) in enumerate(_records(text, self.file)):
            if position == index + 1:
                return line
        raise IndexError(index)

    def error(self, exc: RecordError) -> SourceDataError:
        column = self.positions.get(exc.field)
        return SourceDataError(
            exc.message,
            file=self.file,
            line=self.line_of(exc.row),
            column=None if column is None else column + 1,
            field=self.header[column] if column is not None else exc.field,
            record=exc.record,
        )


def _records(text: str, file: str) -> Iterator[tuple[int, list[str]]]:
    """(first physical line, fields) of every record, header included; blank lines are
    skipped. Python's csv in its default (lenient) mode, like pyarrow's reader."""
    reader = csv.reader(io.StringIO(text, newline=""))
    next_line = 1
    try:
        for row in reader:
            line, next_line = next_line, reader.line_num + 1
            if not "".join(row).strip():  # blank, or only separators (`,,,,` from Excel)
                continue
            yield line, row
    except csv.Error as exc:
        raise SourceDataError(f"not valid CSV ({exc})", file=file, line=next_line) from None


def _as_utf8(data: bytes, file: str) -> bytes:
    """UTF-16 with a BOM (Excel's "Unicode" files) re-encoded as UTF-8: the BOM makes the
    encoding certain. Other encodings are not guessed (see `_decode`)."""
    if not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data
    try:
        return data.decode("utf-16").encode("utf-8")
    except UnicodeDecodeError:
        raise SourceDataError("starts with a UTF-16 mark but is not UTF-16", file=file) from None


def _decode(data: bytes, file: str) -> str:
    """The file as text; a BOM is dropped, bytes that are not UTF-8 are located.

    Windows-1252/Latin-1 is refused rather than guessed: a UTF-8 file with one bad byte
    would otherwise turn every accented name into mojibake without a word."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        prefix = data[line_start : exc.start].decode("utf-8", errors="replace")
        column = len(next(csv.reader([prefix]), [""]))
        raise SourceDataError(
            f"byte 0x{data[exc.start]:02X} is not UTF-8 (is the file Windows-1252 or "
            "Latin-1?): export or save it as UTF-8",
            file=file,
            line=line,
            column=column,
        ) from None


#: bytes decoded at a time when a file is only checked to be UTF-8
_UTF8_CHUNK = 1 << 24


def _check_utf8(data: bytes, file: str) -> None:
    """Refuse, located as `_decode` does, bytes that are not UTF-8, without building the
    text of the whole file (the fast reader parses the bytes): decoded a slice at a time,
    the same decoder, so exactly the same files pass."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    try:
        for start in range(0, len(view), _UTF8_CHUNK):
            decoder.decode(view[start : start + _UTF8_CHUNK])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        _decode(data, file)  # raises, with the line and column
        raise
    finally:
        view.release()


def _first_lines(data: bytes, size: int = 1 << 16) -> str:
    """The start of the file as text, enough for the header (parsing all of it would
    copy it); the BOM dropped. Cut at a line end, so never inside a character."""
    end = data.find(b"\n", size)
    head = data if end < 0 else data[: end + 1]
    return head.removeprefix(b"\xef\xbb\xbf").decode("utf-8")


def _canonical_names(table: str, header: list[str]) -> list[str]:
    """Header names as the mapping knows them: whitespace and case forgiven for the
    names the mapping reads, 1.0 names renamed; other columns keep their own name."""
    known = {name.lower(): name for name in (*FIELDS.get(table, ()), *REQUIRED.get(table, ()))}
    known.update(ALIASES.get(table, {}))
    return [known.get(name.lower(), name) for name in header]


def read_csv_table(
    data: bytes,
    *,
    file: str,
    table: str,
    required: Collection[str] = (),
    source: Callable[[], bytes] | None = None,
) -> CsvTable:
    """Parse one OneRoster CSV file into String columns (only the ones the mapping reads).

    Raises one SourceDataError, located, for any problem (see the module docstring).
    `source` reads the file again if a record's error must be located later (without
    it the table keeps `data` for that).
    """
    original = data
    data = _as_utf8(data, file)
    _check_utf8(data, file)
    header_line, width, header, positions = _read_header(_first_lines(data), file, table, required)
    frame = _read_fast(data, header_line, width, len(header), positions)
    if frame is None and width > len(header):  # a padded header over unpadded rows
        frame = _read_fast(data, header_line, len(header), len(header), positions)
    if frame is None:
        frame = _read_exact(_decode(data, file), file, header, positions)
    return CsvTable(
        file=file,
        header=header,
        positions=positions,
        frame=frame,
        source=source or (lambda: original),
    )


def _read_header(
    text: str, file: str, table: str, required: Collection[str]
) -> tuple[int, int, list[str], dict[str, int]]:
    """The header of a file (`text`: its first lines at least): its line, its width as
    written (padding included), its names, and the column of each name the mapping
    reads. Refuses, located, what `read_csv_table` refuses in a header."""
    first = next(_records(text, file), None)
    if first is None:
        raise SourceDataError("the file is empty: no header line", file=file, line=1)
    header = [name.strip() for name in first[1]]
    separator = next((sep for sep in ";\t|" if len(header) == 1 and sep in header[0]), None)
    if separator is not None:
        raise SourceDataError(
            f"the fields are separated by {separator!r}: OneRoster CSV separates them by commas",
            file=file,
            line=first[0],
        )
    width = len(header)  # as written, padding included
    header = _named_columns(header, file, first[0])
    names = _canonical_names(table, header)
    wanted = set(FIELDS.get(table, ())) | set(REQUIRED.get(table, ())) | set(required)
    positions: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in wanted and name in positions:
            raise SourceDataError(
                f"column {name!r} appears twice (also column {positions[name] + 1})",
                file=file,
                line=first[0],
                column=index + 1,
                field=header[index],
            )
        if name in wanted:
            positions[name] = index
    for name in (*REQUIRED.get(table, ()), *required):
        if name not in positions:
            raise SourceDataError(
                f"required column {name!r} is missing", file=file, line=first[0], field=name
            )
    return first[0], width, header, positions


def _named_columns(header: list[str], file: str, line: int) -> list[str]:
    """The header without its trailing empty names: an exporter's padding
    (`...,orgSourcedId,,`), which names no column, like a row's trailing commas. An empty
    name between named columns is refused: the columns after it may be shifted."""
    named = len(header)
    while named and not header[named - 1]:
        named -= 1
    for index, name in enumerate(header[:named]):
        if name:
            continue
        neighbours = f"between {header[index - 1]!r} and " if index else "before "
        raise SourceDataError(
            f"column {index + 1} has no name in the header ({neighbours}"
            f"{header[index + 1]!r}): only empty names at the end "
            "of the header are padding; name the column, or remove it from every row",
            file=file,
            line=line,
            column=index + 1,
        )
    return header[:named]


def _arrow_pool() -> Any:
    """The memory pool of a whole file's parse: jemalloc's, when pyarrow has it. Measured
    on a million students' files, pyarrow's default (mimalloc) kept 0.8 GB more at the
    read's peak, since it hands freed pages back to the system later."""
    import pyarrow as pa

    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without it
        return pa.default_memory_pool()


def _read_fast(
    data: bytes, header_line: int, width: int, named: int, positions: Mapping[str, int]
) -> pl.DataFrame | None:
    """pyarrow's parser; None when it finds any irregular row (a row with the wrong
    number of fields, bytes that are not UTF-8, a value under a padding column past the
    `named` ones): the exact reader takes over."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # a view past the BOM, no copy
    generated = [f"c{index}" for index in range(width)]
    selected = {f"c{index}": name for name, index in positions.items()}
    padding = generated[named:]
    try:
        arrow = pa_csv.read_csv(
            pa.py_buffer(memoryview(data)[start:]),
            read_options=pa_csv.ReadOptions(column_names=generated, skip_rows=header_line),
            # Quoted line breaks are rare in rosters, and allowing them makes pyarrow
            # 3x slower. A record split at one still leaves a fragment with the wrong
            # number of fields, which sends the file to the exact reader: never misread.
            parse_options=pa_csv.ParseOptions(newlines_in_values=False),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys([*selected, *padding], pa.string()),
                include_columns=[*selected, *padding],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
            memory_pool=_arrow_pool(),
        )
    except (pa.ArrowException, ValueError):
        return None
    frame: pl.DataFrame = pl.from_arrow(arrow)  # type: ignore[assignment]
    del arrow  # polars holds its own copy of the short strings: not both while checking
    if padding:
        if frame.select(pl.any_horizontal(pl.col(padding).str.strip_chars() != "").any()).item():
            return None
        frame = frame.drop(padding)
    frame = frame.rename(selected)
    # a row of separators only (`,,,,`) is skipped by the exact reader; look for one among
    # the rows without a sourcedId first, which is cheap as there are rarely any
    key = "sourcedId" if "sourcedId" in frame.columns else frame.columns[0]
    unnamed = frame.filter(pl.col(key).str.strip_chars() == "")
    if unnamed.select(pl.all_horizontal(pl.all().str.strip_chars() == "").any()).item():
        return None
    return frame


def _read_exact(
    text: str, file: str, header: list[str], positions: Mapping[str, int]
) -> pl.DataFrame:
    """Python's csv reader: slower, but knows each record's line, so it locates the
    first irregular row; rows whose extra trailing fields are all empty are accepted."""
    width = len(header)
    names = list(positions)
    pick = operator.itemgetter(*positions.values())
    rows: list[tuple[str, ...]] = []
    records = _records(text, file)
    next(records)  # the header
    for line, row in records:
        if len(row) > width and not "".join(row[width:]).strip():
            row = row[:width]
        if len(row) != width:
            raise _wrong_width(file, header, line, row)
        picked = pick(row)
        rows.append(picked if isinstance(picked, tuple) else (picked,))
    return pl.DataFrame(rows, schema=dict.fromkeys(names, pl.String()), orient="row")


def _wrong_width(file: str, header: list[str], line: int, row: list[str]) -> SourceDataError:
    width = len(header)
    spanning = next(
        (index for index, value in enumerate(row) if "\n" in value or "\r" in value), None
    )
    if len(row) < width and spanning is not None:
        return SourceDataError(
            "a quoted field starts here and is never closed, so the record runs on "
            f"over the next lines ({len(row)} fields, the header has {width})",
            file=file,
            line=line,
            column=spanning + 1,
            field=header[spanning],
        )
    if len(row) < width:
        return SourceDataError(
            f"the row has {len(row)} fields, the header has {width}: "
            f"{header[len(row)]!r} and after are missing",
            file=file,
            line=line,
            column=len(row) + 1,
            field=header[len(row)],
        )
    extra = next(index for index, value in enumerate(row) if index >= width and value.strip())
    return SourceDataError(
        f"the row has {len(row)} fields, the header names {width}: column {extra + 1} has a "
        "value but no name in the header",
        file=file,
        line=line,
        column=extra + 1,
    )


# -- the manifest ----------------------------------------------------------------------

_VERSION = re.compile(r"^v?(\d+)(?:[.p](\d+))?")


@dataclass(frozen=True)
class Manifest:
    properties: dict[str, str]
    #: file name without .csv -> absent | bulk (delta is refused)
    modes: dict[str, str]

    @property
    def oneroster_version(self) -> str | None:
        """`1.1`, `1.2`... as declared (`v1p1`, `1.1.0` normalized); None if unclear."""
        match = _VERSION.match(self.properties.get("oneroster.version", "").strip().lower())
        if not match or match.group(2) is None:
            return None
        return f"{int(match.group(1))}.{int(match.group(2))}"


def read_manifest(bulk: BulkSet) -> Manifest | None:
    """The manifest, or None for a 1.0 set without one. Refuses delta sets."""
    if not bulk.has("manifest.csv"):
        return None
    table = read_csv_table(
        bulk.read("manifest.csv"), file=bulk.label("manifest.csv"), table="manifest"
    )
    properties: dict[str, str] = {}
    modes: dict[str, str] = {}
    value_column = table.positions["value"] + 1
    for index, (key, value) in enumerate(table.frame.select("propertyName", "value").rows()):
        key, value = (key or "").strip(), (value or "").strip()
        properties[key] = value
        if not key.lower().startswith("file."):
            continue
        mode = value.lower()
        if not mode:
            continue  # not declared: the files decide
        if mode == "delta":
            raise SourceDataError(
                f"{key} is declared 'delta': a delta set holds only changes, and "
                "reconciliation needs the full bulk set (ask for a bulk export)",
                file=table.file,
                line=table.line_of(index),
                column=value_column,
                field="value",
            )
        if mode not in FILE_MODES:
            raise SourceDataError(
                f"{key} is {value!r}: expected absent, bulk or delta",
                file=table.file,
                line=table.line_of(index),
                column=value_column,
                field="value",
            )
        modes[key[len("file.") :]] = mode
    return Manifest(properties=properties, modes=modes)


def _layout(bulk: BulkSet, manifest: Manifest | None) -> str:
    """The OneRoster layout the files follow. The files win over the manifest: a set
    with roles.csv is 1.2 whatever the manifest says."""
    declared = manifest.oneroster_version if manifest else None
    if bulk.has("roles.csv") or declared == "1.2":
        return "1.2"
    if manifest is None:
        return "1.0"
    return declared if declared in ("1.0", "1.1") else "1.1"


def _manifest_and_layout(bulk: BulkSet) -> tuple[Manifest | None, str]:
    """The manifest (if any) and the layout of a bulk set that can be reconciled: one
    without users.csv is refused before anything else is read."""
    manifest = read_manifest(bulk)
    layout = _layout(bulk, manifest)
    if not bulk.has("users.csv"):
        raise SourceDataError(
            "users.csv is missing: a bulk set without users cannot be reconciled",
            file=bulk.label("users.csv"),
        )
    return manifest, layout


def _manifest_notes(bulk: BulkSet, manifest: Manifest | None, read: Collection[str]) -> list[str]:
    """Where manifest and files disagree (the files win); `read`: the tables read."""
    if manifest is None:
        return []
    notes = []
    for table in TABLES:
        mode = manifest.modes.get(table)
        if mode == "bulk" and not bulk.has(f"{table}.csv"):
            notes.append(f"file.{table} is 'bulk' but {table}.csv is missing: read as empty")
        elif mode == "absent" and table in read:
            notes.append(f"file.{table} is 'absent' but {table}.csv is present: read anyway")
    return notes


#: a CsvTable's frame once the mapping holds it (only the error location is kept)
_NO_FRAME = pl.DataFrame()


def _read_table(
    bulk: BulkSet, name: str, table: str, required: Collection[str], *, absent: bool
) -> tuple[CsvTable, dict[str, Any]] | None:
    """One file of the set and its fingerprint; None for an empty file the manifest
    calls absent. Its bytes live only while it is parsed: an error found later (by the
    mapping) reads the file again to locate the record."""
    data = bulk.read(name)
    if absent and _is_blank(data):
        return None
    csv_table = read_csv_table(
        data,
        file=bulk.label(name),
        table=table,
        required=required,
        source=lambda: bulk.read(name),
    )
    return csv_table, {**_fingerprint(data), "records": csv_table.frame.height}


def read_bulk_set(bulk: BulkSet, customer_id: str) -> Roster:
    """Read a whole bulk set into the canonical source roster."""
    manifest, layout = _manifest_and_layout(bulk)
    files: dict[str, dict[str, Any]] = {}
    tables: dict[str, CsvTable] = {}
    if manifest is not None:
        files["manifest.csv"] = _fingerprint(bulk.read("manifest.csv"))
    for table in TABLES:
        name = f"{table}.csv"
        if not bulk.has(name):
            continue
        required = REQUIRED_USERS_1_1 if table == "users" and layout != "1.2" else ()
        read = _read_table(
            bulk,
            name,
            table,
            required,
            absent=bool(manifest) and manifest.modes.get(table) == "absent",
        )
        if read is None:
            continue  # an empty file standing for a file the manifest calls absent
        tables[table], files[bulk.files[name]] = read
        log.info("read %s: %d records", name, tables[table].frame.height)

    if layout == "1.2" and "roles" not in tables and "role" not in tables["users"].positions:
        raise SourceDataError(
            "roles.csv is missing: a OneRoster 1.2 set gives each user's role there "
            "(users.csv has no role column either)",
            file=bulk.label("roles.csv"),
        )
    meta = {
        "location": bulk.name,
        "oneroster_version": layout,
        "manifest": {
            key: value
            for key, value in (manifest.properties if manifest else {}).items()
            if not key.lower().startswith("file.")
        },
        "manifest_notes": _manifest_notes(bulk, manifest, tables),
        "files": files,
    }
    # the mapping gets the only reference to each file's frame (and drops it once
    # prepared); what locates an error stays here
    frames: dict[str, Any] = {table: csv_table.frame for table, csv_table in tables.items()}
    tables = {table: replace(csv_table, frame=_NO_FRAME) for table, csv_table in tables.items()}
    try:
        return build_source_roster_from(customer_id, frames, meta=meta)
    except RecordError as exc:
        raise tables[exc.table].error(exc) from None


# -- a filtered scan: one person's neighbourhood without reading the whole set -----------

#: which rows of a chunk a scan keeps: a polars expression, or a function of the chunk
RowFilter = pl.Expr | Callable[[pl.DataFrame], pl.DataFrame]

#: bytes of a file read to find its header
_HEAD_BYTES = 1 << 16
#: bytes parsed at a time by a filtered scan
_CHUNK_BYTES = 4 << 20


#: the columns of users.csv a lookup reads (ids and agents: the link graph; the rest: the
#: queries by student number, email and name), kept for every row by `PeopleCache`
LOOKUP_COLUMNS = ("sourcedId", "agentSourcedIds", "identifier", "email", "givenName", "familyName")


@dataclass
class PeopleCache:
    """What one connector (one diagnosis) has read of a bulk set, so its later rounds do
    not rescan a file: users.csv's lookup columns for every row (`LOOKUP_COLUMNS`: a
    scan of users.csv cost 0.2-0.9 s at 100k students, 4-6 per diagnosis) and, per file
    and id column, the whole rows read by id so far and the ids asked. Only the rows
    asked about are kept, never the whole set. `stamp` ties it to the files it read
    (names, sizes, modification times)."""

    stamp: tuple[Any, ...] = ()
    index: pl.DataFrame | None = None
    #: users.csv's chunks as the lookups scan parsed them, (start, end, rows): a read by
    #: id parses only the chunks holding the ids (empty: the file was read whole)
    spans: list[tuple[int, int, int]] = field(default_factory=list)
    graph: pl.DataFrame | None = None
    by_id: dict[tuple[str, str], tuple[pl.DataFrame | None, set[str]]] = field(default_factory=dict)


def bulk_stamp(bulk: BulkSet) -> tuple[Any, ...]:
    """What identifies a bulk set's contents for `PeopleCache`: each file's (or the
    zip's) name, size and modification time."""
    paths = (
        [bulk.location / name for name in sorted(bulk.files.values())]
        if bulk.location.is_dir()
        else [bulk.location]
    )
    stamp: list[Any] = [str(bulk.location)]
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            return ()  # unreadable: never cached (the read itself reports it)
        stamp.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(stamp)


@dataclass
class PeopleScan:
    """Filtered reads of one bulk set: each file streamed in blocks, only the rows a
    filter keeps held in memory; what was scanned and kept, per file, for the run.
    Reads by id go through `cache` (rows already read are not scanned for again)."""

    bulk: BulkSet
    cache: PeopleCache = field(default_factory=PeopleCache)
    scanned: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    reused: dict[str, int] = field(default_factory=dict)
    whole: list[str] = field(default_factory=list)  # files read whole (irregular)

    def lookups(self, required: Collection[str]) -> pl.DataFrame:
        """users.csv's `LOOKUP_COLUMNS` (String; a column the file lacks as nulls), every
        row: scanned once per cache."""
        if self.cache.index is None:
            index = self.rows(
                "users",
                columns=LOOKUP_COLUMNS,
                required=required,
                label="users.csv (ids, agents, numbers, emails, names only)",
                spans=self.cache.spans,
            )
            assert index is not None  # the callers check that users.csv is there
            self.cache.index = index
        return self.cache.index

    def graph(self, required: Collection[str]) -> pl.DataFrame:
        """(user, agent) pairs of users.csv (`_agents`), built once per cache."""
        if self.cache.graph is None:
            self.cache.graph = _agents(self.lookups(required))
        return self.cache.graph

    def by_id(
        self,
        table: str,
        column: str,
        ids: Collection[str],
        *,
        required: Collection[str] = (),
    ) -> pl.DataFrame | None:
        """`rows(table, ids=(column, ids))`, scanning only for the ids this cache was not
        asked about yet (for users.csv, only those it holds at all, by its lookups)."""
        key = (table, column)
        frame, asked = self.cache.by_id.get(key, (None, set()))
        wanted = set(ids)
        missing = wanted - asked
        ranges = None
        if table == "users" and self.cache.index is not None and missing:
            held = self.cache.index.with_row_index("row").filter(_in("sourcedId", missing))
            missing &= set(held["sourcedId"].str.strip_chars().to_list())
            ranges = self._chunks_of(held["row"].to_list())
        scanned = 0
        if missing or key not in self.cache.by_id:
            read = self.rows(table, ids=(column, missing), required=required, ranges=ranges)
            if read is None:
                self.cache.by_id[key] = (None, asked | wanted)
                return None
            scanned = read.height
            frame = read if frame is None else pl.concat([frame, read], how="vertical")
        if frame is None:
            return None
        self.cache.by_id[key] = (frame, asked | wanted)
        kept = frame.filter(_in(column, wanted)) if wanted else frame.clear()
        if kept.height > scanned:
            self._reuse(f"{table}.csv", kept.height - scanned)
        return kept

    def _chunks_of(self, rows: list[int]) -> list[tuple[int, int, int]] | None:
        """The users.csv chunks holding these rows of the lookups (None: scan it all)."""
        spans = self.cache.spans
        if not spans or self.cache.index is None:
            return None
        if sum(n for _start, _end, n in spans) != self.cache.index.height:
            return None
        ends = list(itertools.accumulate(n for _start, _end, n in spans))
        return [spans[i] for i in sorted({bisect.bisect_right(ends, row) for row in rows})]

    def _reuse(self, label: str, rows: int) -> None:
        self.reused[label] = self.reused.get(label, 0) + rows

    def rows(
        self,
        table: str,
        *,
        ids: tuple[str, Collection[str]] | None = None,
        where: RowFilter | None = None,
        columns: Collection[str] | None = None,
        required: Collection[str] = (),
        label: str | None = None,
        spans: list[tuple[int, int, int]] | None = None,
        ranges: Sequence[tuple[int, int, int]] | None = None,
    ) -> pl.DataFrame | None:
        """The rows of `table`.csv whose `ids[0]` column (trimmed) is among `ids[1]` and
        that `where` keeps (canonical String columns), None when the set has no such file.
        The id filter runs on Arrow before any row reaches polars, so a scan holds only a
        chunk and the rows kept. An irregular file (one pyarrow's reader refuses: rows
        with trailing empty fields, a bad byte, UTF-16) is read whole by
        `read_csv_table`, which locates any real error, then filtered."""
        name = f"{table}.csv"
        if not self.bulk.has(name):
            return None
        scanned = _scan_csv(self.bulk, name, table, ids, where, columns, required, spans, ranges)
        if scanned is None:
            if spans is not None:
                spans.clear()  # read whole: no chunk of the file can be parsed alone
            csv_table = read_csv_table(
                self.bulk.read(name), file=self.bulk.label(name), table=table, required=required
            )
            frame = csv_table.frame
            if columns is not None:
                frame = _with_columns(frame, columns).select(columns)
            rows = frame.height
            if ids is not None:
                frame = frame.filter(_in(*ids))
            if where is not None:
                frame = _keep(frame, where)
            self.whole.append(name)
        else:
            rows, frame = scanned
        label = label or name
        self.scanned[label] = self.scanned.get(label, 0) + rows
        self.kept[label] = self.kept.get(label, 0) + frame.height
        return frame

    def describe(self) -> str:
        """One line for the run: rows scanned and kept per file."""
        parts = [
            f"{name} {self.kept[name]:,} of {self.scanned[name]:,} rows" for name in self.scanned
        ]
        text = "filtered scan, rows kept: " + ", ".join(parts) if parts else "no file scanned"
        if self.reused:
            text += "; already read in this diagnosis: " + ", ".join(
                f"{name} {rows:,} rows" for name, rows in self.reused.items()
            )
        if self.whole:
            text += f"; read whole (irregular files): {', '.join(self.whole)}"
        return text


def _scan_csv(
    bulk: BulkSet,
    name: str,
    table: str,
    ids: tuple[str, Collection[str]] | None,
    where: RowFilter | None,
    columns: Collection[str] | None,
    required: Collection[str],
    spans: list[tuple[int, int, int]] | None = None,
    ranges: Sequence[tuple[int, int, int]] | None = None,
) -> tuple[int, pl.DataFrame] | None:
    """(rows scanned, rows kept), parsing the file `_CHUNK_BYTES` at a time (cut at line
    ends) with pyarrow's reader, as `_read_fast` does: a folder's file is read from disk
    chunk by chunk, a zip member is extracted (with the zip's limits) then parsed chunk
    by chunk. None when the fast reader cannot take the file (a record cut at a quoted
    line break fails to parse too, so nothing is misread). `spans` receives each chunk's
    (start, end, rows); `ranges`, some of those spans, limits the parse to them."""
    file = bulk.label(name)
    local = bulk.location / bulk.files[name.lower()] if bulk.location.is_dir() else None
    data = None if local is not None else bulk.read(name)
    with _opened(local, file) if local is not None else io.BytesIO(data) as handle:
        head = handle.read(_HEAD_BYTES)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\n" not in head:
            return None  # UTF-16, or a header longer than the head: the whole read handles it
        text = head.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="replace")
        header_line, width, header, positions = _read_header(text, file, table, required)
        names = [n for n in (columns if columns is not None else positions) if n in positions]
        if ids is not None and ids[0] not in names:
            if ids[0] not in positions:
                return None  # no such column: the whole read says so, or keeps nothing
            names.append(ids[0])
        selected = {f"c{positions[n]}": n for n in names}
        id_filter = None if ids is None else (f"c{positions[ids[0]]}", ids[1])
        source: BinaryIO = handle
        if ranges is not None:
            # only these chunks (each cut at a line end): the header is in the first one
            parts = []
            for start, end, _rows in ranges:
                handle.seek(start)
                parts.append(handle.read(end - start))
            source = io.BytesIO(b"".join(parts))
            header_line = header_line if ranges and ranges[0][0] == 0 else 0
        for columns_written in dict.fromkeys([width, len(header)]):
            source.seek(0)
            kept = _scan_chunks(
                source,
                header_line,
                columns_written,
                len(header),
                selected,
                id_filter,
                where,
                columns,
                spans,
            )
            if kept is not None:
                return kept
    return None


def _opened(path: Path, file: str) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        raise ConnectorError(f"{file}: cannot read ({exc.strerror})") from None


def _scan_chunks(
    handle: BinaryIO,
    header_line: int,
    width: int,
    named: int,
    selected: Mapping[str, str],
    ids: tuple[str, Collection[str]] | None,
    where: RowFilter | None,
    columns: Collection[str] | None,
    spans: list[tuple[int, int, int]] | None = None,
) -> tuple[int, pl.DataFrame] | None:
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    # no pyarrow.compute here: its first call imports pandas (a second in a run worker)
    wanted = None if ids is None else pl.Series(sorted(ids[1]), dtype=pl.String()).implode()

    generated = [f"c{index}" for index in range(width)]
    padding = generated[named:]

    def converting(names: Collection[str]) -> Any:
        return pa_csv.ConvertOptions(
            column_types=dict.fromkeys([*names, *padding], pa.string()),
            include_columns=[*names, *padding],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )

    convert = converting(selected)
    # with ids, each chunk's id column is converted alone first: most chunks hold none
    # of the ids, and converting every column of users.csv doubled a lookup's time
    convert_ids = None if ids is None or len(selected) == 1 else converting([ids[0]])
    kept: list[pl.DataFrame] = []
    rows, skip, rest, position = 0, header_line, b"", 0
    if spans is not None:
        spans.clear()
    while True:
        block = handle.read(_CHUNK_BYTES)
        chunk = rest + block
        cut = len(chunk) if not block else chunk.rfind(b"\n") + 1
        chunk, rest = chunk[:cut], chunk[cut:]
        start, position = position, position + len(chunk)
        if chunk.strip():
            read_options = pa_csv.ReadOptions(column_names=generated, skip_rows=skip)
            parse_options = pa_csv.ParseOptions(newlines_in_values=False)
            try:
                arrow = pa_csv.read_csv(
                    pa.py_buffer(chunk),
                    read_options=read_options,
                    parse_options=parse_options,
                    convert_options=convert_ids or convert,
                )
            except (pa.ArrowException, ValueError):
                return None
            skip = 0
            for column in padding:
                if _series(arrow.column(column)).str.strip_chars().ne("").any():
                    return None  # a value under no header name: the exact reader locates it
            rows += arrow.num_rows
            if spans is not None:
                spans.append((start, position, arrow.num_rows))
            mask = None
            if ids is not None:
                mask = _series(arrow.column(ids[0])).str.strip_chars().is_in(wanted)
                if not mask.any():
                    continue
                if convert_ids is not None:
                    try:
                        arrow = pa_csv.read_csv(
                            pa.py_buffer(chunk),
                            read_options=read_options,
                            parse_options=parse_options,
                            convert_options=convert,
                        )
                    except (pa.ArrowException, ValueError):
                        return None
            frame: pl.DataFrame = pl.from_arrow(arrow.drop_columns(padding))  # type: ignore[assignment]
            if mask is not None:
                frame = frame.filter(mask)
            frame = _with_columns(frame.rename(dict(selected)), columns)
            kept.append(frame if where is None else _keep(frame, where))
        if not block:
            break
    if not kept:
        empty = pl.DataFrame(schema=dict.fromkeys(selected.values(), pl.String()))
        return rows, _with_columns(empty, columns)
    return rows, pl.concat(kept)


def _series(column: Any) -> pl.Series:
    """One Arrow column as a polars String series."""
    return pl.Series(pl.from_arrow(column), dtype=pl.String())  # type: ignore[arg-type]


def _with_columns(frame: pl.DataFrame, columns: Collection[str] | None) -> pl.DataFrame:
    """The frame with every asked column, those the file lacks as nulls (as `prepare`
    reads a missing column), so a filter on an optional column keeps nobody."""
    missing = [c for c in columns or () if c not in frame.columns]
    return frame.with_columns(pl.lit(None, pl.String()).alias(c) for c in missing)


def _in(column: str, values: Collection[str]) -> pl.Expr:
    return pl.col(column).str.strip_chars().is_in(list(values))


def _agents(frame: pl.DataFrame) -> pl.DataFrame:
    """(user, agent) pairs of a users frame's `agentSourcedIds` lists."""
    if "agentSourcedIds" not in frame.columns:
        return pl.DataFrame(schema={"user": pl.String(), "agent": pl.String()})
    return (
        frame.select(
            pl.col("sourcedId").str.strip_chars().alias("user"),
            pl.col("agentSourcedIds").str.split(",").alias("agent"),
        )
        .explode("agent")
        .with_columns(pl.col("agent").str.strip_chars())
        .filter(pl.col("agent").is_not_null() & (pl.col("agent") != ""))
    )


def read_people(
    bulk: BulkSet,
    customer_id: str,
    sis_ids: Collection[str],
    cache: PeopleCache | None = None,
) -> Roster:
    """The neighbourhood of some people (`Roster.for_people`) from a bulk set, by filtered
    scans: users.csv's ids and agents first (the link graph: a link may be listed on
    either side), three steps out from the people; then only those users' rows, their
    roles and enrollments, those classes, courses and orgs. Never the whole roster.
    With a `cache` (one diagnosis's), what an earlier call read is not scanned again."""
    ids = list(dict.fromkeys(sis_ids))
    layout = _manifest_and_layout(bulk)[1]
    scan = PeopleScan(bulk, cache or PeopleCache())
    required = REQUIRED_USERS_1_1 if layout != "1.2" else ()
    graph = scan.graph(required)
    people, frontier = set(ids), set(ids)
    for _step in range(3):
        out = graph.filter(pl.col("user").is_in(list(frontier)))["agent"]
        back = graph.filter(pl.col("agent").is_in(list(frontier)))["user"]
        frontier = set(out.to_list()) | set(back.to_list())
        people |= frontier
    users = scan.by_id("users", "sourcedId", people, required=required)
    roles = scan.by_id("roles", "userSourcedId", people)
    if layout == "1.2" and roles is None and users is not None and "role" not in users.columns:
        raise SourceDataError(
            "roles.csv is missing: a OneRoster 1.2 set gives each user's role there "
            "(users.csv has no role column either)",
            file=bulk.label("roles.csv"),
        )
    enrollments = scan.by_id("enrollments", "userSourcedId", people)
    class_ids = _values(enrollments, "classSourcedId")
    classes = scan.by_id("classes", "sourcedId", class_ids)
    courses = scan.by_id("courses", "sourcedId", _values(classes, "courseSourcedId"))
    org_ids = (
        _values(users, "orgSourcedIds", split=True)
        | _values(users, "primaryOrgSourcedId")
        | _values(roles, "orgSourcedId")
        | _values(classes, "schoolSourcedId")
    )
    orgs = scan.by_id("orgs", "sourcedId", org_ids)
    meta = {"location": bulk.name, "oneroster_version": layout}
    tables = {
        "orgs": orgs,
        "users": users,
        "classes": classes,
        "courses": courses,
        "enrollments": enrollments,
        "roles": roles,
    }
    try:
        roster = build_source_roster(
            customer_id,
            meta=meta,
            **{table: () if frame is None else frame for table, frame in tables.items()},
        )
    except RecordError:
        # a bad record in the neighbourhood: the whole read says exactly where it is
        roster = read_bulk_set(bulk, customer_id)
        return with_scope(roster.for_people(ids), ids, narrow=False, reads="whole bulk set")
    return with_scope(roster.for_people(ids), ids, narrow=not scan.whole, reads=scan.describe())


def find_people_in_bulk_set(
    bulk: BulkSet, customer_id: str, query: PersonQuery, cache: PeopleCache | None = None
) -> list[PersonMatch]:
    """The people a query finds in users.csv, by a filtered scan: a vectorized
    prefilter on the raw column (ids and numbers trimmed, emails lower-cased, names
    accent- and case-folded) of users.csv's lookup columns, then the shared matching on
    the rows it keeps (with a `cache`, the lookup columns and rows read earlier are
    reused)."""
    layout = _manifest_and_layout(bulk)[1]
    scan = PeopleScan(bulk, cache or PeopleCache())
    value = query.value.strip()
    required = REQUIRED_USERS_1_1 if layout != "1.2" else ()
    # the lookup columns first, also for a sourcedId: a miss then costs no scan for it,
    # and the diagnosis's neighbourhood reads need them anyway
    lookups = scan.lookups(required)
    if query.kind == "sourced_id":
        found = {value}
    else:
        if query.kind == "student_number":
            columns, where = ("identifier",), pl.col("identifier").str.strip_chars() == value
        elif query.kind in ("email", "parent_email"):
            email = pl.col("email").str.strip_chars().str.to_lowercase()
            columns, where = ("email",), email == value.lower()
        else:
            columns, where = ("givenName", "familyName"), _name_filter(name_key(value))
        # the column the query is about (and the ids) first; whole rows only for those found
        found = _values(_keep(lookups.select("sourcedId", *columns), where), "sourcedId")
    users = scan.by_id("users", "sourcedId", found, required=required)
    if users is None or users.is_empty():
        return []
    found = set(users["sourcedId"].str.strip_chars().to_list())
    roles = scan.by_id("roles", "userSourcedId", found)
    org_ids = (
        _values(users, "orgSourcedIds", split=True)
        | _values(users, "primaryOrgSourcedId")
        | _values(roles, "orgSourcedId")
    )
    orgs = scan.by_id("orgs", "sourcedId", org_ids)
    try:
        roster = build_source_roster(
            customer_id,
            orgs=() if orgs is None else orgs,
            users=users,
            roles=() if roles is None else roles,
            classes=(),
            enrollments=(),
        )
    except RecordError:
        roster = read_bulk_set(bulk, customer_id)
    return find_people_in(roster, query)


def _keep(frame: pl.DataFrame, where: RowFilter) -> pl.DataFrame:
    return where(frame) if callable(where) else frame.filter(where)


def _name_filter(key: str) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """The rows whose givenName and familyName, in either order, have this `name_key`.
    A printable-ASCII name folds by lower-casing, commas as spaces, spaces collapsed
    (exactly what `name_key` does to it), vectorized; any other name goes through
    `name_key` itself, once per distinct value, remembered across chunks."""
    folded: dict[str, str] = {}

    def fold(column: pl.Series) -> pl.Series:
        values = column.fill_null("")
        plain = values.str.contains(r"^[ -~]*$")
        fast = (
            values.str.replace_all(",", " ")
            .str.to_lowercase()
            .str.replace_all(" +", " ")
            .str.strip_chars(" ")
        )
        other = values.filter(~plain).unique().to_list()
        if not other:
            return fast
        folded.update((v, name_key(v)) for v in other if v not in folded)
        slow = values.replace_strict(
            {v: folded[v] for v in other}, default=None, return_dtype=pl.String
        )
        return fast.zip_with(plain, slow)

    def keep(frame: pl.DataFrame) -> pl.DataFrame:
        if frame.is_empty():
            return frame
        given, family = fold(frame["givenName"]), fold(frame["familyName"])
        either = pl.concat_str([pl.lit(given), pl.lit(family)], separator=" ").str.strip_chars()
        other = pl.concat_str([pl.lit(family), pl.lit(given)], separator=" ").str.strip_chars()
        return frame.filter((either == key) | (other == key))

    return keep


def _values(frame: pl.DataFrame | None, column: str, *, split: bool = False) -> set[str]:
    """The distinct non-blank values of a column (a comma-separated list when `split`)."""
    if frame is None or column not in frame.columns:
        return set()
    values = frame[column].str.split(",").explode() if split else frame[column]
    return {v.strip() for v in values.drop_nulls().to_list() if v and v.strip()}


def _is_blank(data: bytes) -> bool:
    return len(data) < 64 and not data.removeprefix(b"\xef\xbb\xbf").strip()


def _fingerprint(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


# -- the connector ---------------------------------------------------------------------


class OneRosterCsvConnector(SourceConnector):
    """A OneRoster CSV bulk set: a folder or a .zip (remote locations: see `bulk_path`)."""

    kind = "oneroster_csv"
    #: filtered scans of the set's files (see `read_people`)
    narrow_lookup: ClassVar[bool] = True
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["type", "location"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": "oneroster_csv"},
            "location": {
                "type": "string",
                "minLength": 1,
                "description": "a folder or .zip (relative to this file), or ftp://, ftps://, "
                "sftp://host/path, s3://bucket/prefix",
            },
            "pattern": {"type": "string", "description": "glob of the file to pick (newest wins)"},
            "username": REF_OR_VALUE,
            "password": CREDENTIAL_REF,
            "private_key": CREDENTIAL_REF,
            # remote drops, see file_drops.py
            "host_key": {
                "type": "string",
                "description": "sftp: the server's key fingerprint (SHA256:...) or public key "
                "line; without it the server must be in the system known_hosts",
            },
            "tls_ca_file": {
                "type": "string",
                "description": "ftps: PEM file of the CA (or self-signed certificate) to trust "
                "instead of the system CAs",
            },
            "passive": {"type": "boolean", "default": True, "description": "ftp/ftps passive mode"},
            "limits": {
                "type": "object",
                "additionalProperties": False,
                "description": "how far a zipped bulk set may expand (against zip bombs)",
                "properties": {
                    "max_uncompressed_bytes": {
                        "type": "integer",
                        "minimum": 1,
                        "default": ZipLimits.max_uncompressed_bytes,
                        "description": "all members together, uncompressed (default 2 GiB)",
                    },
                    "max_compression_ratio": {
                        "type": "number",
                        "exclusiveMinimum": 1,
                        "default": ZipLimits.max_compression_ratio,
                        "description": "uncompressed / compressed size of any member larger "
                        "than 1 MiB (default 100)",
                    },
                },
            },
        },
    }

    def describe(self) -> str:
        return f"{self.kind} {self.config['location']}"

    @property
    def zip_limits(self) -> ZipLimits:
        return ZipLimits.from_settings(self.config.get("limits"))

    def bulk_path(self) -> Path:
        """The bulk set as a local folder or zip. With `pattern`, the newest entry of the
        location folder that matches it (a folder of nightly zips)."""
        location = str(self.config["location"])
        if "://" in location:
            scheme = location.split("://", 1)[0]
            raise ConnectorError(f"{self.kind}: {scheme}:// locations are not supported yet")
        path = self.settings.resolve_path(location)
        pattern = self.config.get("pattern")
        if not pattern:
            return path
        if not path.is_dir():
            raise ConnectorError(f"{path}: `pattern` needs a folder as location")
        matches = [p for p in path.glob(pattern) if not p.name.startswith(".")]
        if not matches:
            raise ConnectorError(f"{path}: nothing matches {pattern!r}")
        return max(matches, key=lambda p: (p.stat().st_mtime, p.name))

    def fetch_roster(self) -> Roster:
        location = str(self.config["location"])
        if file_drops.is_remote(location):
            with file_drops.downloaded(self.settings, self.credentials) as dropped:
                bulk = open_bulk_set(dropped.path, shown_as=dropped.url, limits=self.zip_limits)
                roster = read_bulk_set(bulk, self.settings.customer_id)
            roster.meta.update(location=location, drop=dropped.meta())
        else:
            bulk = open_bulk_set(self.bulk_path(), limits=self.zip_limits)
            roster = read_bulk_set(bulk, self.settings.customer_id)
        self.audit.record(
            AuditEvent(
                customer_id=self.settings.customer_id,
                system=self.kind,
                action="read",
                tables=tuple(roster.meta["files"]),
                row_count=sum(f.get("records", 0) for f in roster.meta["files"].values()),
                detail=str(roster.meta["location"]),
            )
        )
        return roster

    def find_people(self, query: PersonQuery) -> list[PersonMatch]:
        """The people a query finds, by a filtered scan of users.csv
        (`find_people_in_bulk_set`)."""
        with self._bulk_set() as (bulk, _meta):
            return find_people_in_bulk_set(
                bulk, self.settings.customer_id, query, self._people_cache(bulk)
            )

    def fetch_people(self, sis_ids: Sequence[str]) -> Roster:
        """The people's neighbourhood by filtered scans (`read_people`): a folder's files
        are streamed from disk, a zip's members extracted one at a time; only the rows
        of the neighbourhood are kept. A remote drop is downloaded first (whole: a file
        server has no narrower call), which `meta["scope"]["reads"]` says."""
        ids = list(sis_ids)
        with self._bulk_set() as (bulk, meta):
            roster = read_people(bulk, self.settings.customer_id, ids, self._people_cache(bulk))
        roster.meta.update(meta)
        scope = roster.meta["scope"]
        if "drop" in meta:
            scope["reads"] = f"the drop's file downloaded, then {scope['reads']}"
        self.audit.record(
            AuditEvent(
                customer_id=self.settings.customer_id,
                system=self.kind,
                action="read",
                tables=("users", "roles", "enrollments", "classes", "courses", "orgs"),
                row_count=sum(roster.row_counts().values()),
                detail=f"neighbourhood of {len(ids)} person(s): {scope['reads']}",
            )
        )
        return roster

    def fetch_records(self, *, classes: Sequence[str] = (), schools: Sequence[str] = ()) -> Roster:
        """Classes and schools by sis_id, by filtered scans of classes.csv, courses.csv
        and orgs.csv."""
        with self._bulk_set() as (bulk, meta):
            scan = PeopleScan(bulk, self._people_cache(bulk))
            class_rows = scan.by_id("classes", "sourcedId", set(classes))
            courses = scan.by_id("courses", "sourcedId", _values(class_rows, "courseSourcedId"))
            org_ids = set(schools) | _values(class_rows, "schoolSourcedId")
            orgs = scan.by_id("orgs", "sourcedId", org_ids)
            roster = build_source_roster(
                self.settings.customer_id,
                meta={"location": bulk.name, **meta},
                orgs=() if orgs is None else orgs,
                users=(),
                classes=() if class_rows is None else class_rows,
                courses=() if courses is None else courses,
                enrollments=(),
            )
        return records_of(roster, classes, schools)

    _cache: PeopleCache | None = None

    def _people_cache(self, bulk: BulkSet) -> PeopleCache:
        """What this connector's lookups have read of `bulk` (a connector is built per
        diagnosis, so per diagnosis): reused while the files are unchanged; a downloaded
        drop's copy is new at each read, so never reused."""
        stamp = bulk_stamp(bulk)
        if self._cache is None or not stamp or self._cache.stamp != stamp:
            self._cache = PeopleCache(stamp)
        return self._cache

    @contextmanager
    def _bulk_set(self) -> Iterator[tuple[BulkSet, dict[str, Any]]]:
        """The bulk set, local or downloaded from its drop (for as long as it is read)."""
        location = str(self.config["location"])
        if file_drops.is_remote(location):
            with file_drops.downloaded(self.settings, self.credentials) as dropped:
                bulk = open_bulk_set(dropped.path, shown_as=dropped.url, limits=self.zip_limits)
                yield bulk, {"location": location, "drop": dropped.meta()}
        else:
            yield open_bulk_set(self.bulk_path(), limits=self.zip_limits), {}

    def test_connection(self) -> str:
        """A local set is opened and its manifest read; a remote drop is only listed (an
        export can be large): what it reports is the file the next read would take."""
        location = str(self.config["location"])
        if file_drops.is_remote(location):
            return self._test_drop(location)
        bulk = open_bulk_set(self.bulk_path(), limits=self.zip_limits)
        manifest = read_manifest(bulk)
        if not bulk.has("users.csv"):
            raise SourceDataError("users.csv is missing", file=bulk.label("users.csv"))
        layout = _layout(bulk, manifest)
        return f"OneRoster {layout} bulk set at {bulk.name}: " + ", ".join(
            sorted(bulk.files.values())
        )

    def _test_drop(self, location: str) -> str:
        pattern = str(self.config.get("pattern") or file_drops.DEFAULT_PATTERN)
        files = file_drops.list_from_settings(self.settings, self.credentials)
        chosen = file_drops.newest(files)
        if chosen is None:
            raise ConnectorError(f"{location}: logged in, but no file matches {pattern!r}")
        size = "size not listed" if chosen.size is None else f"{chosen.size:,} bytes"
        return (
            f"{location}: {len(files)} file(s) match {pattern!r}; the newest, {chosen.name} "
            f"({size}, modified {chosen.modified.isoformat(timespec='seconds')}), is the one "
            "the next read will download"
        )
