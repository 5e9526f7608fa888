"""Connector registry: adding a connector is one new module and one line here."""

from __future__ import annotations

from reconciliation.audit import AuditLog
from reconciliation.connectors.base import (
    BookmarkedConnector,
    Connector,
    ConnectorError,
    SourceConnector,
    SourceDataError,
)
from reconciliation.connectors.bookmarked_api import BookmarkedApiConnector
from reconciliation.connectors.bookmarked_database import BookmarkedDatabaseConnector
from reconciliation.connectors.classlink import ClassLinkConnector
from reconciliation.connectors.oneroster_api import OneRosterApiConnector
from reconciliation.connectors.oneroster_csv import OneRosterCsvConnector
from reconciliation.credentials import CredentialResolver
from reconciliation.settings import CustomerSettings

#: settings `source.type` -> connector
SOURCE_CONNECTORS: dict[str, type[SourceConnector]] = {
    OneRosterCsvConnector.kind: OneRosterCsvConnector,
    OneRosterApiConnector.kind: OneRosterApiConnector,
    ClassLinkConnector.kind: ClassLinkConnector,
}

#: settings `bookmarked.type` -> connector
BOOKMARKED_CONNECTORS: dict[str, type[BookmarkedConnector]] = {
    BookmarkedDatabaseConnector.kind: BookmarkedDatabaseConnector,
    BookmarkedApiConnector.kind: BookmarkedApiConnector,
}

__all__ = [
    "BOOKMARKED_CONNECTORS",
    "SOURCE_CONNECTORS",
    "BookmarkedConnector",
    "Connector",
    "ConnectorError",
    "SourceConnector",
    "SourceDataError",
    "bookmarked_connector",
    "source_connector",
]


def source_connector(
    settings: CustomerSettings,
    credentials: CredentialResolver | None = None,
    audit: AuditLog | None = None,
) -> SourceConnector:
    """The connector of the customer's SIS, as its settings' `source.type` names it."""
    return SOURCE_CONNECTORS[settings.source_type](settings, credentials, audit)


def bookmarked_connector(
    settings: CustomerSettings,
    credentials: CredentialResolver | None = None,
    audit: AuditLog | None = None,
) -> BookmarkedConnector:
    """The connector of the customer's Bookmarked side (`bookmarked.type`, default database)."""
    return BOOKMARKED_CONNECTORS[settings.bookmarked_type](settings, credentials, audit)
