"""Shared fixtures live in `fixtures/`, one module per kind of local server."""

pytest_plugins = [
    "reconciliation_tests.fixtures.aws",
    "reconciliation_tests.fixtures.postgres",
    "reconciliation_tests.fixtures.oneroster_server",
    "reconciliation_tests.fixtures.file_servers",
    "reconciliation_tests.fixtures.bookmarked_api_server",
    "reconciliation_tests.fixtures.hubspot_server",
    "reconciliation_tests.fixtures.webhook_server",
    "reconciliation_tests.fixtures.smtp_server",
]
