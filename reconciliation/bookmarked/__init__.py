"""The Bookmarked platform database contract: `schema.sql` (see its header).

The reconciliation pipeline only ever READS this database. `create_schema` exists to BUILD
one (the embedded demo, tests) with an ordinary read-write engine; the connector never
calls it.
"""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

#: the tables of schema.sql, in creation (foreign key) order
TABLES: tuple[str, ...] = (
    "customers",
    "schools",
    "users",
    "parent_students",
    "classes",
    "enrollments",
    "sync_runs",
)


def schema_sql() -> str:
    return files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")


def schema_statements() -> list[str]:
    """schema.sql as single statements. Comments are dropped first, line by line, because
    they may hold apostrophes and semicolons; the file holds no string containing `--`."""
    lines = [line.split("--", 1)[0] for line in schema_sql().splitlines()]
    statements = " ".join(" ".join(lines).split()).split(";")
    return [statement.strip() for statement in statements if statement.strip()]


def create_schema(engine: Engine) -> None:
    """Create the Bookmarked tables in an empty database (SQLite or PostgreSQL)."""
    from sqlalchemy import text

    with engine.begin() as connection:
        for statement in schema_statements():
            connection.execute(text(statement))
