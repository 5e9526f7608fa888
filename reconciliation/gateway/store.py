"""The application database: accounts, sessions and the audit trail, in one SQLAlchemy URL
(`RECONCILIATION_APP_DB`; default SQLite `app.db` under the storage folder).

The audit table is append-only for the application: triggers refuse UPDATE and DELETE (and
TRUNCATE on PostgreSQL), so a compromised gateway cannot rewrite history; production may
also grant the application's role INSERT/SELECT only (`deploy/` notes in docs/gateway.md).
"""

from __future__ import annotations

import os
import threading

import sqlalchemy as sa

from reconciliation.paths import storage_dir

APP_DB_ENV = "RECONCILIATION_APP_DB"

metadata = sa.MetaData()

users = sa.Table(
    "gateway_users",
    metadata,
    sa.Column("name", sa.String(320), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(100)),  # NULL: an OIDC-only account
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

sessions = sa.Table(
    "gateway_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),  # never the cookie itself
    sa.Column("user_name", sa.String(320), nullable=False, index=True),
    sa.Column("method", sa.String(16), nullable=False),  # 'password' | 'oidc'
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("auth_time", sa.Float, nullable=False),  # the last sign-in (step-up)
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("ended", sa.Boolean, nullable=False, default=False),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(32), nullable=False, index=True),  # ISO 8601 UTC
    sa.Column("actor", sa.String(320), nullable=False, index=True),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("customer_id", sa.String(120), index=True),
    sa.Column("person", sa.String(200)),  # the student/person id of a diagnosis
    sa.Column("job", sa.String(200)),
    sa.Column("system", sa.String(40)),
    sa.Column("tables", sa.String(400)),
    sa.Column("row_count", sa.Integer),
    sa.Column("outcome", sa.String(40)),
    sa.Column("detail", sa.Text),
)

_SQLITE_APPEND_ONLY = (
    "CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
)
_POSTGRES_APPEND_ONLY = (
    "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN "
    "RAISE EXCEPTION 'audit_events is append-only'; END $$",
    "CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events "
    "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()",
    "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()",
)


def app_db_url() -> str:
    configured = os.environ.get(APP_DB_ENV)
    if configured:
        return configured
    return f"sqlite:///{storage_dir() / 'app.db'}"


_engines: dict[str, sa.Engine] = {}
_lock = threading.Lock()


def engine(url: str | None = None) -> sa.Engine:
    """One engine per URL and process, its tables and append-only triggers created once."""
    url = url or app_db_url()
    with _lock:
        if url not in _engines:
            _engines[url] = _create(url)
        return _engines[url]


def _create(url: str) -> sa.Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            os.makedirs(os.path.dirname(os.path.abspath(database)), exist_ok=True)
        created = sa.create_engine(url, connect_args={"timeout": 30})
    else:
        created = sa.create_engine(url, pool_pre_ping=True)
    for attempt in (1, 2):
        try:
            _create_tables(created)
            break
        except sa.exc.OperationalError as exc:
            # two run workers creating a fresh SQLite file at once: the loser retries and
            # finds the tables
            if attempt == 2 or "already exists" not in str(exc):
                raise
    return created


def _create_tables(created: sa.Engine) -> None:
    with created.begin() as connection:
        if created.dialect.name == "postgresql":
            # one process at a time; a role without DDL rights finds everything in place
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(4242013)")
        metadata.create_all(connection)
        if created.dialect.name == "sqlite":
            for statement in _SQLITE_APPEND_ONLY:
                connection.exec_driver_sql(statement)
        elif created.dialect.name == "postgresql":
            present = connection.execute(
                sa.text(
                    "SELECT count(*) FROM pg_trigger WHERE tgname IN "
                    "('audit_events_no_change', 'audit_events_no_truncate')"
                )
            ).scalar()
            if not present:
                for statement in _POSTGRES_APPEND_ONLY:
                    connection.exec_driver_sql(statement)


def dispose_all() -> None:
    """Forget every engine (tests that switch databases)."""
    with _lock:
        for created in _engines.values():
            created.dispose()
        _engines.clear()
