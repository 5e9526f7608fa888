"""The audit trail in the application database: who signed in (or failed to), who launched,
re-executed or terminated which job for which customer and person, who downloaded what, and
every read from Bookmarked (tables and row counts, never row data). Append-only: rows are
inserted and searched, never changed (the table's triggers refuse it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa

from reconciliation.gateway import store


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class AuditRow:
    actor: str
    action: str
    customer_id: str | None = None
    person: str | None = None
    job: str | None = None
    system: str | None = None
    tables: tuple[str, ...] = ()
    row_count: int | None = None
    outcome: str | None = None
    detail: str = ""
    at: str = field(default_factory=now_iso)


def record(engine: sa.Engine, row: AuditRow) -> None:
    with engine.begin() as connection:
        connection.execute(
            store.audit_events.insert().values(
                at=row.at,
                actor=row.actor,
                action=row.action,
                customer_id=row.customer_id,
                person=row.person,
                job=row.job,
                system=row.system,
                tables=",".join(row.tables) or None,
                row_count=row.row_count,
                outcome=row.outcome,
                detail=row.detail,
            )
        )


def parse_since(text: str) -> str:
    """`--since`: an ISO date or time (UTC when no zone), or a span back from now: 30m, 12h,
    7d. Returned as the ISO string the rows are compared with."""
    text = text.strip()
    units = {"m": 60, "h": 3600, "d": 86400}
    if text[:-1].isdigit() and text[-1:] in units:
        moment = datetime.now(UTC).timestamp() - int(text[:-1]) * units[text[-1]]
        return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--since {text!r}: give an ISO date or time (2026-12-01, 2026-12-01T08:00) "
            "or a span (30m, 12h, 7d)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat(timespec="milliseconds")


def search(
    engine: sa.Engine,
    *,
    user: str | None = None,
    customer: str | None = None,
    since: str | None = None,
    limit: int | None = None,
) -> Sequence[sa.Row]:
    """Rows oldest first; `since` as returned by `parse_since`."""
    table = store.audit_events
    query = sa.select(table).order_by(table.c.id)
    if user:
        query = query.where(table.c.actor == user)
    if customer:
        query = query.where(table.c.customer_id == customer)
    if since:
        query = query.where(table.c.at >= since)
    if limit:
        query = query.limit(limit)
    with engine.connect() as connection:
        return connection.execute(query).all()


def format_rows(rows: Sequence[sa.Row]) -> str:
    lines = []
    for r in rows:
        parts = [r.at, r.actor, r.action]
        for label, value in (
            ("customer", r.customer_id),
            ("job", r.job),
            ("person", r.person),
            ("system", r.system),
            ("tables", r.tables),
            ("rows", r.row_count),
            ("outcome", r.outcome),
        ):
            if value not in (None, ""):
                parts.append(f"{label}={value}")
        if r.detail:
            parts.append(f"- {r.detail}")
        lines.append("  ".join(str(p) for p in parts))
    return "\n".join(lines)
