"""A database URL that carries its password as a query value (`?password=`, libpq's
`?sslpassword=`) shows masked wherever the Bookmarked connector names its database. Settings
refuse such a URL; one read whole from the environment or Secrets Manager is never checked
by them, and SQLAlchemy's `hide_password` hides only the `user:password@` form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciliation.audit import AuditLog
from reconciliation.connectors import ConnectorError
from reconciliation.connectors.bookmarked_database import BookmarkedDatabaseConnector
from reconciliation.credentials import CredentialResolver
from reconciliation.settings import CustomerSettings
from reconciliation_tests.fixtures.aws import free_port

PASSWORD = "Query-pw-that-must-not-show-4410"


def connector(tmp_path: Path, database_url: str, environ: dict[str, str]) -> Any:
    settings = CustomerSettings(
        customer_id="springfield",
        name="Springfield USD",
        environment="staging",
        bookmarked={"customer_id": 1, "database_url": database_url},
        source={"type": "oneroster_csv", "location": "unused"},
        path=tmp_path / "springfield.json",
    )
    return BookmarkedDatabaseConnector(settings, CredentialResolver(environ), AuditLog(None))


@pytest.mark.parametrize("key", ["password", "sslpassword"])
def test_a_query_password_from_the_environment_never_shows(tmp_path: Path, key: str) -> None:
    url = f"postgresql://reader@127.0.0.1:{free_port()}/bookmarked?sslmode=disable&{key}={PASSWORD}"
    database = connector(tmp_path, "env:BOOKMARKED_DB_URL", {"BOOKMARKED_DB_URL": url})
    with pytest.raises(ConnectorError) as caught:
        database.test_connection()
    message = str(caught.value)
    assert f"{key}=****" in message and "sslmode=disable" in message
    assert PASSWORD not in message


def test_describe_masks_a_query_password(tmp_path: Path) -> None:
    url = f"postgresql://reader@db.internal/bookmarked?password={PASSWORD}"
    described = connector(tmp_path, url, {}).describe()
    assert described == "database postgresql://reader@db.internal/bookmarked?password=****"
