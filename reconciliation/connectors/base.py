"""The one small base class every connector sits behind (as reladiff's databases do).

A connector reads one customer's roster on one side into the canonical model
(`roster.py`). Every connector can also fetch a single student cheaply, for the
launchpad diagnosis; the default falls back to slicing the whole roster, and a
connector whose system can filter (SQL, a REST `/students/{id}`) overrides it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from reconciliation.audit import AuditLog
from reconciliation.credentials import CredentialResolver
from reconciliation.roster import Roster, Side
from reconciliation.settings import CustomerSettings


class ConnectorError(Exception):
    """A connection or read that failed. Messages never hold credentials or student data."""


class SourceDataError(ConnectorError):
    """Bad input, located: file (or URL), line, column and field, so it can be fixed."""

    def __init__(
        self,
        message: str,
        *,
        file: str,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
        record: str | None = None,
    ) -> None:
        self.file, self.line, self.column = file, line, column
        self.field, self.record, self.message = field, record, message
        where = file
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column}"
        if field:
            where += f" ({field})"
        if record:
            where += f", record {record}"
        super().__init__(f"{where}: {message}")


class Connector(ABC):
    """Reads one customer's roster from one system."""

    #: the `type` value that selects this connector in the settings
    kind: ClassVar[str]
    side: ClassVar[Side]
    #: JSON Schema of the settings block this connector reads
    settings_schema: ClassVar[Mapping[str, Any]]

    def __init__(
        self,
        settings: CustomerSettings,
        credentials: CredentialResolver | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.settings = settings
        self.credentials = credentials or CredentialResolver()
        self.audit = audit or AuditLog.default()

    @property
    def config(self) -> Mapping[str, Any]:
        """This connector's block of the customer's settings."""
        return self.settings.source if self.side == "source" else self.settings.bookmarked

    @abstractmethod
    def fetch_roster(self) -> Roster:
        """The whole customer's roster."""

    def fetch_student(self, student_sis_id: str) -> Roster:
        """One student with their parents, links, enrollments, classes and schools."""
        return self.fetch_roster().for_students([student_sis_id])

    @abstractmethod
    def test_connection(self) -> str:
        """Open the connection and say what was reached (raise ConnectorError if not)."""

    def describe(self) -> str:
        """Where this connector reads from, without credentials (for logs and the CLI)."""
        return self.kind


class SourceConnector(Connector):
    side: ClassVar[Side] = "source"


class BookmarkedConnector(Connector):
    side: ClassVar[Side] = "bookmarked"
