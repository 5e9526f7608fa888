"""The one small base class every connector sits behind (as reladiff's databases do).

A connector reads one customer's roster on one side into the canonical model
(`roster.py`). Every connector can also find a person and fetch the neighbourhood of
some people, for the launchpad diagnosis (`find_people`, `fetch_people`); the default
reads the whole roster and slices it (`narrow_lookup` False), and a connector whose
system can filter (SQL WHERE, a REST `/users/{id}`, a filtered file scan) overrides them.
`PersonQuery` and `PersonMatch` live in `people.py` with the pure matching they share.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from reconciliation.audit import AuditLog
from reconciliation.connectors.people import (
    PersonMatch,
    PersonQuery,
    find_people_in,
    records_of,
    with_scope,
)
from reconciliation.credentials import CredentialResolver
from reconciliation.roster import Roster, Side
from reconciliation.settings import CustomerSettings

__all__ = [
    "BookmarkedConnector",
    "Connector",
    "ConnectorError",
    "PersonMatch",
    "PersonQuery",
    "SourceConnector",
    "SourceDataError",
]


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
    #: True when find_people/fetch_people use the system's narrow calls (SQL WHERE,
    #: single-record endpoints, filtered file scan); False when they fall back to reading
    #: the whole roster
    narrow_lookup: ClassVar[bool] = False

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
        """One student with their parents, links, enrollments, classes and schools, cut
        from their neighbourhood (`fetch_people`: narrow where the connector can be)."""
        return self.fetch_people([student_sis_id]).for_students([student_sis_id])

    def find_people(self, query: PersonQuery) -> list[PersonMatch]:
        """Everyone on this side the query finds. Default: the whole roster, filtered."""
        return find_people_in(self.fetch_roster(), query)

    def fetch_people(self, sis_ids: Sequence[str]) -> Roster:
        """The neighbourhood of these people, from this side only (`Roster.for_people`):
        the people; for a student their links, parents, and the parents' other children
        with THEIR links; for a parent their links and children (and those children's other
        parents); every enrollment of everyone in the slice, those classes, the schools and
        orgs of all. `meta["scope"]` = {"people", "narrow", "reads"}. A person absent on
        this side gives an empty slice, not an error. Default: the whole roster, sliced."""
        ids = list(sis_ids)
        return with_scope(
            self.fetch_roster().for_people(ids),
            ids,
            narrow=False,
            reads="whole roster: this source has no narrow call",
        )

    def fetch_records(self, *, classes: Sequence[str] = (), schools: Sequence[str] = ()) -> Roster:
        """Some classes and schools by sis_id, for a diagnosis asking whether a record the
        other side holds exists here: the classes (their school named) and the schools
        asked for; an id this side lacks is simply absent. Default: the whole roster."""
        return records_of(self.fetch_roster(), classes, schools)

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
