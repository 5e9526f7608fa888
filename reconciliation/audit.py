"""Audit trail of every read from Bookmarked: when, which customer, which tables, how many
rows. Never row data. The connectors record `AuditEvent`s on an `AuditLog`; the default log
(`AuditLog.default()`, what runs use) appends them to the application database's audit
table (`RECONCILIATION_APP_DB`, reconciliation/gateway/store.py), beside the UI's sign-ins
and launches, so one append-only trail answers "who read what, when" without trusting log
retention. `AuditLog(None)` keeps events in memory only (tests); `AuditLog(path)` appends
JSON lines to a file (a log without a database).
"""

from __future__ import annotations

import getpass
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy as sa


@dataclass(frozen=True)
class AuditEvent:
    customer_id: str
    system: str  # 'bookmarked-database' | 'bookmarked-api' | source kinds
    action: str  # 'query' | 'request' | 'connect'
    tables: tuple[str, ...]
    row_count: int
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))
    actor: str = field(
        default_factory=lambda: os.environ.get("DAGSTER_RUN_ID") or getpass.getuser()
    )
    detail: str = ""


class AuditLog:
    """Records audit events (database, JSON-lines file, or neither) and keeps them in memory
    for the run."""

    _default: AuditLog | None = None

    def __init__(self, path: Path | None, *, database: str | None = None) -> None:
        self.path = path
        self.database = database  # a SQLAlchemy URL: the application database
        self.events: list[AuditEvent] = []
        self._lock = threading.Lock()

    @classmethod
    def default(cls) -> AuditLog:
        """The application database's audit trail (default SQLite under the storage folder)."""
        if cls._default is None:
            from reconciliation.gateway.store import app_db_url

            cls._default = cls(None, database=app_db_url())
        return cls._default

    def record(self, event: AuditEvent) -> None:
        with self._lock:
            self.events.append(event)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(asdict(event)) + "\n")
            if self.database is not None:
                self._insert(event)

    def _insert(self, event: AuditEvent) -> None:
        from reconciliation.gateway import audit_trail, store

        engine: sa.Engine = store.engine(self.database)
        audit_trail.record(
            engine,
            audit_trail.AuditRow(
                actor=event.actor,
                action=event.action,
                customer_id=event.customer_id,
                system=event.system,
                tables=event.tables,
                row_count=event.row_count,
                detail=event.detail,
                at=event.at,
            ),
        )
