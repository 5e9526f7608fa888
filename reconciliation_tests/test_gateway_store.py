"""The secured UI's application database: local accounts (bcrypt), the append-only audit
trail on SQLite and PostgreSQL (refused UPDATE/DELETE/TRUNCATE, and an application role
with INSERT/SELECT only), Bookmarked reads landing in it through `AuditLog`, and the
`reconcile users` / `reconcile audit` / `reconcile gateway` commands."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from reconciliation.audit import AuditEvent, AuditLog
from reconciliation.cli import main
from reconciliation.gateway import accounts, audit_trail, store

PASSWORD = "h13-store-password-Tz8q"


@pytest.fixture
def app_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    monkeypatch.setenv(store.APP_DB_ENV, url)
    yield url
    store.dispose_all()


def test_local_accounts_hash_with_bcrypt_and_check_passwords(app_db: str) -> None:
    engine = store.engine(app_db)
    accounts.add_user(engine, "ann", "engineer", PASSWORD)
    with engine.connect() as connection:
        stored = connection.execute(sa.select(store.users.c.password_hash)).scalar_one()
    assert stored.startswith("$2b$") and PASSWORD not in stored
    assert accounts.verify_password(engine, "ann", PASSWORD).role == "engineer"
    assert accounts.verify_password(engine, "ann", PASSWORD + "x") is None
    assert accounts.verify_password(engine, "nobody", PASSWORD) is None
    assert accounts.verify_password(engine, "ann", "x" * 100) is None
    with pytest.raises(accounts.AccountError, match="at least 12"):
        accounts.add_user(engine, "bob", "viewer", "short")
    with pytest.raises(accounts.AccountError, match="unknown role 'root'"):
        accounts.add_user(engine, "bob", "root", PASSWORD)
    with pytest.raises(accounts.AccountError, match="exists already"):
        accounts.add_user(engine, "ann", "viewer", PASSWORD)
    accounts.disable(engine, "ann")
    assert accounts.verify_password(engine, "ann", PASSWORD) is None


def _refused_changes(engine: sa.Engine, statements: list[str]) -> None:
    for statement in statements:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as c:
            c.exec_driver_sql(statement)


def test_the_sqlite_audit_trail_is_append_only(app_db: str) -> None:
    engine = store.engine(app_db)
    audit_trail.record(engine, audit_trail.AuditRow(actor="ann", action="login"))
    _refused_changes(engine, ["UPDATE audit_events SET actor = 'eve'", "DELETE FROM audit_events"])
    assert [r.actor for r in audit_trail.search(engine)] == ["ann"]


@pytest.fixture
def pg_app_db(pg_server_url: sa.URL) -> Iterator[tuple[str, str]]:
    """A throwaway database (owner URL) and an application role with rights to read and
    append the audit trail, and to keep accounts and sessions (its URL)."""
    name = f"h13_gateway_{uuid.uuid4().hex[:10]}"
    role = f"h13_app_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        c.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
    owner_url = pg_server_url.set(database=name)
    try:
        yield (
            owner_url.render_as_string(hide_password=False),
            owner_url.set(username=role, password=None).render_as_string(hide_password=False),
        )
    finally:
        store.dispose_all()
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            c.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
        admin.dispose()


@pytest.mark.postgres
def test_the_postgres_audit_trail_is_append_only_for_the_applications_role(
    pg_app_db: tuple[str, str],
) -> None:
    owner_url, app_url = pg_app_db
    owner = store.engine(owner_url)  # creates the tables and the triggers
    role = sa.make_url(app_url).username
    with owner.begin() as c:
        c.exec_driver_sql(f'GRANT SELECT, INSERT ON audit_events TO "{role}"')
        c.exec_driver_sql(f'GRANT USAGE ON SEQUENCE audit_events_id_seq TO "{role}"')
        c.exec_driver_sql(
            f'GRANT SELECT, INSERT, UPDATE ON gateway_users, gateway_sessions TO "{role}"'
        )
    # the runs' Bookmarked reads, through the application's role
    log = AuditLog(None, database=app_url)
    log.record(AuditEvent("maple-charter", "bookmarked-database", "query", ("users",), 42))
    app = store.engine(app_url)
    rows = audit_trail.search(app, customer="maple-charter")
    assert [(r.action, r.tables, r.row_count) for r in rows] == [("query", "users", 42)]
    # the role may not change history, and the triggers stop even the owner
    for engine in (app, owner):
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as c:
            c.exec_driver_sql("UPDATE audit_events SET actor = 'eve'")
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as c:
            c.exec_driver_sql("DELETE FROM audit_events")
    _refused_changes(owner, ["TRUNCATE audit_events"])
    assert len(audit_trail.search(owner)) == 1


def test_bookmarked_reads_land_in_the_app_database_by_default(
    app_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AuditLog, "_default", None)  # the class's cache, not our logic
    log = AuditLog.default()
    assert log.database == app_db
    log.record(
        AuditEvent(
            "maple-charter",
            "bookmarked-database",
            "query",
            ("users", "enrollments"),
            7,
            actor="run-123",
            detail="whole customer",
        )
    )
    (row,) = audit_trail.search(store.engine(app_db), user="run-123")
    assert (row.customer_id, row.system, row.tables, row.row_count) == (
        "maple-charter",
        "bookmarked-database",
        "users,enrollments",
        7,
    )


def test_users_and_audit_commands(
    app_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["users", "add", "ann", "--role", "viewer"]) == 0
    assert main(["users", "add", "eve@example.org", "--role", "engineer", "--oidc"]) == 0
    assert main(["users", "set-role", "ann", "--role", "engineer"]) == 0
    assert main(["users", "disable", "eve@example.org"]) == 0
    assert main(["users", "set-role", "nobody", "--role", "admin"]) == 1
    assert main(["users", "list"]) == 0
    out = capsys.readouterr()
    assert "ERROR no user 'nobody'" in out.err
    assert "ann                              engineer  local  enabled" in out.out
    assert "eve@example.org                  engineer  oidc   disabled" in out.out
    assert PASSWORD not in out.out + out.err
    engine = store.engine(app_db)
    assert accounts.verify_password(engine, "ann", PASSWORD) is not None

    audit_trail.record(
        engine,
        audit_trail.AuditRow(
            actor="ann", action="launch", customer_id="maple-charter", at="2026-12-01T08:00:00Z"
        ),
    )
    audit_trail.record(
        engine, audit_trail.AuditRow(actor="bob", action="login", at="2026-12-05T08:00:00Z")
    )
    assert main(["audit", "--user", "ann"]) == 0
    assert "ann  launch  customer=maple-charter" in capsys.readouterr().out
    assert main(["audit", "--since", "2026-12-03"]) == 0
    out = capsys.readouterr().out
    assert "bob  login" in out and "ann" not in out
    assert main(["audit", "--customer", "lincoln-usd"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["audit", "--since", "yesterday"]) == 1
    assert "give an ISO date" in capsys.readouterr().err


def test_reconcile_gateway_serves_the_sign_in(app_db: str, tmp_path: Path) -> None:
    """The documented command starts the gateway; a local account signs in by form post;
    a webserver that does not answer is a clear 502, not a hang."""
    engine = store.engine(app_db)
    accounts.add_user(engine, "ann", "viewer", PASSWORD)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(Path(sys.executable).with_name("reconcile")), "gateway", "--port", str(port)]
    command += ["--upstream", "http://127.0.0.1:9"]  # the discard port: nothing listens
    stderr = tmp_path / "gateway.stderr"
    with stderr.open("wb") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, stderr.read_text()
            try:
                if requests.get(f"{url}/auth/login", timeout=2).ok:
                    break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, stderr.read_text()
                time.sleep(0.1)
        session = requests.Session()
        signed_in = session.post(
            f"{url}/auth/login",
            data={"username": "ann", "password": PASSWORD},
            allow_redirects=False,
        )
        assert signed_in.status_code == 303 and session.cookies.get("reconciliation_session")
        down = session.post(f"{url}/graphql", json={"query": "{ version }"})
        assert down.status_code == 502 and "did not answer" in down.text
    finally:
        process.terminate()
        process.wait(10)
    assert "RECONCILIATION_GATEWAY_SECRET is not set" in stderr.read_text()
    assert PASSWORD not in stderr.read_text()
