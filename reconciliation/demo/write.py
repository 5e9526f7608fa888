"""Writing worlds to disk: OneRoster CSV bulk sets (folder or zip) and one SQLite database.

Output is byte-for-byte deterministic for a given world: CSV rows in model order, zip
entries with a fixed timestamp, database rows in id order.
"""

from __future__ import annotations

import shutil
import sqlite3
import zipfile
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from reconciliation.demo.sync import BOOKMARKED_SCHEMAS
from reconciliation.demo.world import World

DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.000Z"  # OneRoster dateLastModified
DATE_FORMAT = "%Y-%m-%d"
SQL_DATETIME = "%Y-%m-%d %H:%M:%S"  # what SQLAlchemy's SQLite DateTime reads back


def csv_bytes(frame: pl.DataFrame, *, bom: bool = False) -> bytes:
    """One OneRoster file: UTF-8, CRLF line ends (RFC 4180), quoting where needed."""
    text = frame.write_csv(
        line_terminator="\r\n", datetime_format=DATETIME_FORMAT, date_format=DATE_FORMAT
    )
    data = text.encode("utf-8")
    return b"\xef\xbb\xbf" + data if bom else data


def write_oneroster(world: World, target: Path) -> Path:
    """Write the world's OneRoster tables as `target` (a `.zip` file, else a folder).

    An existing target is replaced: it is the generator's own output.
    """
    files = {
        f"{name}.csv": csv_bytes(frame, bom=world.profile.bom)
        for name, frame in world.source.items()
    }
    if target.exists():
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix == ".zip":
        stamp = (world.today.year, world.today.month, world.today.day, 5, 0, 0)
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in files.items():
                info = zipfile.ZipInfo(name, date_time=stamp)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, data)
    else:
        target.mkdir()
        for name, data in files.items():
            (target / name).write_bytes(data)
    return target


#: the tables with an `id` column, and the table each foreign key points at
_IDS = ("schools", "users", "classes", "enrollments", "sync_runs")
_FOREIGN = {
    "users": {"school_id": "schools"},
    "parent_students": {"parent_id": "users", "student_id": "users"},
    "classes": {"school_id": "schools"},
    "enrollments": {"class_id": "classes", "user_id": "users"},
}


def shifted_tables(worlds: Sequence[World]) -> dict[str, pl.DataFrame]:
    """All customers' Bookmarked tables in one id space: each world's local ids are
    shifted past the previous world's, foreign keys along with them."""
    out: dict[str, list[pl.DataFrame]] = {name: [] for name in BOOKMARKED_SCHEMAS}
    offset = dict.fromkeys(_IDS, 0)
    for world in worlds:
        tables = world.bookmarked.as_dict()
        shifted: dict[str, pl.DataFrame] = {}
        for name, frame in tables.items():
            exprs = []
            if name in _IDS:
                exprs.append(pl.col("id") + offset[name])
            for column, target in _FOREIGN.get(name, {}).items():
                exprs.append(pl.col(column) + offset[target])
            shifted[name] = frame.with_columns(exprs) if exprs else frame
        for name in _IDS:
            top = tables[name].get_column("id").max()
            # leave a gap between customers, as ids of a shared database interleave
            offset[name] += int(top or 0) + 1000
        for name, frame in shifted.items():
            out[name].append(frame)
    return {name: pl.concat(frames) for name, frames in out.items()}


def _sql_values(frame: pl.DataFrame) -> pl.DataFrame:
    """Values sqlite3 stores as the schema means them: 0/1, ISO dates and timestamps."""
    exprs = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Enum):
            exprs.append(pl.col(name).cast(pl.String))
        elif dtype == pl.Boolean:
            exprs.append(pl.col(name).cast(pl.Int8))
        elif dtype == pl.Date:
            exprs.append(pl.col(name).dt.strftime(DATE_FORMAT))
        elif isinstance(dtype, pl.Datetime):
            exprs.append(pl.col(name).dt.strftime(SQL_DATETIME))
        else:
            exprs.append(pl.col(name))
    return frame.select(exprs)


def create_database(path: Path) -> None:
    """An empty Bookmarked database from `reconciliation/bookmarked/schema.sql`."""
    from sqlalchemy import create_engine

    from reconciliation.bookmarked import create_schema

    engine = create_engine(f"sqlite:///{path}")
    try:
        create_schema(engine)
    finally:
        engine.dispose()


def write_bookmarked_sqlite(worlds: Sequence[World], path: Path) -> dict[str, int]:
    """One SQLite Bookmarked database holding every world's customer; returns row counts.

    An existing file is replaced (it is the generator's own output).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    create_database(path)
    tables = shifted_tables(worlds)
    counts = {}
    connection = sqlite3.connect(path)
    try:
        with connection:
            for name in BOOKMARKED_SCHEMAS:
                frame = _sql_values(tables[name])
                if "id" in frame.columns:
                    frame = frame.sort("id")
                columns = ", ".join(frame.columns)
                marks = ", ".join("?" * len(frame.columns))
                connection.executemany(
                    f"INSERT INTO {name} ({columns}) VALUES ({marks})", frame.iter_rows()
                )
                counts[name] = frame.height
    finally:
        connection.close()
    return counts


def write_ground_truth(worlds: Sequence[World], path: Path) -> pl.DataFrame:
    truth = pl.concat([world.ground_truth for world in worlds])
    path.parent.mkdir(parents=True, exist_ok=True)
    truth.write_csv(path)
    return truth
