"""Audit trail of every read from Bookmarked: when, which customer, which tables, how many
rows. Never row data. One JSON object per line, appended to `$RECONCILIATION_AUDIT_LOG`
(default `storage/audit.jsonl` under the project), so a security review can answer
"who read what, when" without trusting log retention.
"""

from __future__ import annotations

import getpass
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

AUDIT_LOG_ENV = "RECONCILIATION_AUDIT_LOG"


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
    """Appends audit events to a JSON-lines file and keeps them in memory for the run."""

    _default: AuditLog | None = None

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.events: list[AuditEvent] = []
        self._lock = threading.Lock()

    @classmethod
    def default(cls) -> AuditLog:
        if cls._default is None:
            from reconciliation.paths import storage_dir

            configured = os.environ.get(AUDIT_LOG_ENV)
            cls._default = cls(Path(configured) if configured else storage_dir() / "audit.jsonl")
        return cls._default

    def record(self, event: AuditEvent) -> None:
        with self._lock:
            self.events.append(event)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(asdict(event)) + "\n")
