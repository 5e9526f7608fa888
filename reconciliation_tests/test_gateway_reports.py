"""Report downloads through the gateway (`GET /reports/<customer>/<run>/<file>`): signed in,
the role's rule (`policy.may_read_report`), no way out of the report folder, the file's
bytes as an uncached attachment, an audit row for every download and refusal (and
`reconcile audit` showing them), the same from S3 (moto's server), and the UI's links.

The gateway is built with an upstream nobody listens on: downloads never reach the
Dagster webserver. Sessions are started on the gateway's own store (the sign-in itself,
with bcrypt, is test_gateway_ui.py's).
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import polars as pl
import pytest
import sqlalchemy as sa
import uvicorn
from starlette.testclient import TestClient

from reconciliation.cli import main
from reconciliation.gateway import accounts, audit_trail, policy, report_files, store
from reconciliation.gateway.app import GatewayConfig, create_app
from reconciliation.gateway.sessions import COOKIE_NAME
from reconciliation.reports import run_stamp, write_report
from reconciliation.storage import Location, S3Path

STAGING, PRODUCTION, ORPHAN = "maple-charter", "riverside-usd", "gone-usd"
ENVIRONMENTS = {STAGING: "staging", PRODUCTION: "production"}
ROLES = {"vera": "viewer", "eng": "engineer", "ada": "admin"}
AT = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
UNREACHABLE = "http://127.0.0.1:9"


def _findings(*sis_ids: str) -> pl.DataFrame:
    n = len(sis_ids)
    return pl.DataFrame(
        {
            "rule": ["student_mismatch"] * n,
            "entity_type": ["user"] * n,
            "sis_id": list(sis_ids),
            "bookmarked_id": [None] * n,
            "status": ["ISSUE_IN_SOURCE"] * n,
            "severity": ["high"] * n,
            "detail": [f"Student {s} has no school." for s in sis_ids],
            "remediation": ["District data admin: add the school."] * n,
            "details_json": ["{}"] * n,
        },
        schema_overrides={"bookmarked_id": pl.Int64},
    )


def _write_reports(folder: Location) -> dict[str, str]:
    """One run for each customer (the orphan has a folder but no settings); its stamp."""
    return {
        customer: write_report(customer, _findings("s-1", "s-2"), folder=folder, at=AT).run
        for customer in (STAGING, PRODUCTION, ORPHAN)
    }


@contextlib.contextmanager
def _gateway(reports: Location, url: str) -> Iterator[tuple[TestClient, sa.Engine, dict]]:
    engine = store.engine(url)
    for name, role in ROLES.items():
        accounts.add_user(engine, name, role, None)
    config = GatewayConfig(
        upstream=UNREACHABLE, engine=engine, environments=lambda: ENVIRONMENTS, reports=reports
    )
    app = create_app(config)
    cookies = {name: app.state.gateway.sessions.start(name, "password") for name in ROLES}
    with TestClient(app, base_url="http://127.0.0.1:8080", follow_redirects=False) as client:
        yield client, engine, cookies


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("gateway-reports")
    runs = _write_reports(root / "reports")
    with _gateway(root / "reports", f"sqlite:///{root / 'app.db'}") as (client, engine, cookies):
        yield client, engine, cookies, runs, root
    store.dispose_all()


def _get(client: TestClient, cookie: str | None, path: str, **headers: str) -> Any:
    client.cookies.clear()
    if cookie:
        client.cookies.set(COOKIE_NAME, cookie)
    return client.get(path, headers=headers)


def _downloads(engine: sa.Engine, user: str) -> list[sa.Row]:
    rows = audit_trail.search(engine, user=user)
    return [r for r in rows if r.action == "report_download"]


def test_report_rule_viewers_staging_engineers_any_unknown_admins_only() -> None:
    allowed = {
        (role, env): policy.may_read_report(role, env).allowed
        for role in (*ROLES.values(), "")
        for env in ("staging", "production", None)
    }
    assert allowed == {
        ("viewer", "staging"): True,
        ("viewer", "production"): False,
        ("viewer", None): False,
        ("engineer", "staging"): True,
        ("engineer", "production"): True,
        ("engineer", None): False,
        ("admin", "staging"): True,
        ("admin", "production"): True,
        ("admin", None): True,
        ("", "staging"): False,
        ("", "production"): False,
        ("", None): False,
    }
    assert "engineer" in policy.may_read_report("viewer", "production").reason


def test_the_allow_list_is_what_a_report_run_writes(local: Any) -> None:
    *_, runs, root = local
    written = {p.name for p in (root / "reports" / STAGING / runs[STAGING]).iterdir()}
    assert written == set(report_files.REPORT_FILES)
    assert report_files.RUN.match(run_stamp())
    assert report_files.report_url(
        "https://ui.example.org/", STAGING, "latest", "resolved.csv"
    ) == (f"https://ui.example.org/reports/{STAGING}/latest/resolved.csv")
    with pytest.raises(report_files.ReportNameError):
        report_files.report_url("https://ui.example.org", STAGING, "..", "mismatches.csv")


def test_signed_out_gets_401_or_the_sign_in_page(local: Any) -> None:
    client, _, _, runs, _ = local
    path = f"/reports/{STAGING}/{runs[STAGING]}/mismatches.csv"
    api = _get(client, None, path)
    assert api.status_code == 401 and "s-1" not in api.text
    page = _get(client, None, path, accept="text/html")
    assert page.status_code == 303 and page.headers["location"].startswith("/auth/login?next=")
    forged = _get(client, "forged-cookie", path)
    assert forged.status_code == 401


def test_a_download_streams_the_file_as_an_uncached_attachment_and_is_audited(
    local: Any,
) -> None:
    client, engine, cookies, runs, root = local
    run = runs[STAGING]
    response = _get(client, cookies["vera"], f"/reports/{STAGING}/{run}/mismatches.csv")
    assert response.status_code == 200
    assert response.content == (root / "reports" / STAGING / run / "mismatches.csv").read_bytes()
    assert response.headers["content-disposition"] == (
        f'attachment; filename="{STAGING}_{run}_mismatches.csv"'
    )
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("text/csv")
    assert int(response.headers["content-length"]) == len(response.content)
    latest = _get(client, cookies["vera"], f"/reports/{STAGING}/latest/district_issues.csv")
    assert latest.status_code == 200
    assert latest.content == (root / "reports" / STAGING / run / "district_issues.csv").read_bytes()
    rows = _downloads(engine, "vera")
    assert [(r.customer_id, r.outcome, r.detail) for r in rows[-2:]] == [
        (STAGING, "ok", f"{run}/mismatches.csv"),
        (STAGING, "ok", f"latest/district_issues.csv (run {run})"),
    ]
    assert not any("s-1" in (r.detail or "") for r in rows)  # never row data


def test_roles_production_and_unknown_customers(local: Any) -> None:
    client, engine, cookies, runs, _ = local
    production = f"/reports/{PRODUCTION}/{runs[PRODUCTION]}/summary.json"
    orphan = f"/reports/{ORPHAN}/latest/mismatches.parquet"
    refused = _get(client, cookies["vera"], production)
    assert refused.status_code == 403 and "engineer" in refused.json()["error"]
    assert _get(client, cookies["eng"], production).status_code == 200
    assert _get(client, cookies["eng"], orphan).status_code == 403
    admin = _get(client, cookies["ada"], orphan)
    assert admin.status_code == 200 and admin.content[:4] == b"PAR1"
    last = _downloads(engine, "vera")[-1]
    assert (last.customer_id, last.outcome) == (PRODUCTION, "refused")
    assert _downloads(engine, "eng")[-1].outcome == "refused"


@pytest.mark.parametrize(
    "path",
    [
        "/reports/{c}/{r}/..%2F..%2Fapp.db",
        "/reports/{c}/..%2F..%2F/app.db",
        "/reports/%2e%2e/{r}/mismatches.csv",
        "/reports/{c}/{r}/%2e%2e",
        "/reports/{c}/{r}/sub/mismatches.csv",
        "/reports/{c}/holds/mismatches.csv",
        "/reports/{c}/{r}/secrets.txt",
        "/reports/{c}/{r}/mismatches.csv%00.txt",
        "/reports/{c}/{r}",
        "/reports/",
    ],
)
def test_anything_but_a_report_file_is_refused_and_audited(local: Any, path: str) -> None:
    """(A literal `../` is resolved by the client before sending; encoded, it reaches the
    gateway decoded, as the server hands it over.)"""
    client, engine, cookies, runs, _ = local
    before = len(_downloads(engine, "ada"))
    response = _get(client, cookies["ada"], path.format(c=STAGING, r=runs[STAGING]))
    assert response.status_code == 404, response.text
    assert b"student" not in response.content.lower() and b"SQLite" not in response.content
    rows = _downloads(engine, "ada")
    assert len(rows) == before + 1 and rows[-1].outcome in ("not found", "refused")


def test_literal_dot_segments_on_a_served_gateway_are_refused(local: Any) -> None:
    """As a browser or curl --path-as-is sends them, undecoded, to uvicorn (httpx would
    resolve them before sending)."""
    _, engine, _, runs, root = local
    config = GatewayConfig(
        upstream=UNREACHABLE,
        engine=engine,
        environments=lambda: ENVIRONMENTS,
        reports=root / "reports",  # app.db is at ../../../app.db from a run folder
    )
    app = create_app(config)
    cookie = app.state.gateway.sessions.start("ada", "password")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        answers = {}
        for path in (
            f"/reports/{STAGING}/{runs[STAGING]}/../../../app.db",
            f"/reports/{STAGING}/../../app.db",
            f"/reports/../reports/{STAGING}/latest/summary.json",
        ):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", path, headers={"Cookie": f"{COOKIE_NAME}={cookie}"})
            answer = connection.getresponse()
            answers[path] = (answer.status, answer.read())
            connection.close()
    finally:
        server.should_exit = True
        thread.join(10)
    assert all(status == 404 and b"SQLite" not in body for status, body in answers.values())


def test_a_missing_report_is_404_and_audited(local: Any) -> None:
    client, engine, cookies, _, _ = local
    response = _get(
        client, cookies["eng"], f"/reports/{STAGING}/20250101T000000.000000Z/resolved.csv"
    )
    assert response.status_code == 404
    assert _downloads(engine, "eng")[-1].outcome == "not found"


def test_reconcile_audit_shows_the_downloads(
    local: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client, _, cookies, runs, root = local
    assert (
        _get(client, cookies["vera"], f"/reports/{STAGING}/latest/summary.json").status_code == 200
    )
    monkeypatch.setenv(store.APP_DB_ENV, f"sqlite:///{root / 'app.db'}")
    assert main(["audit", "--user", "vera", "--customer", STAGING]) == 0
    shown = capsys.readouterr().out
    assert f"vera  report_download  customer={STAGING}  outcome=ok" in shown
    assert f"latest/summary.json (run {runs[STAGING]})" in shown


def test_a_report_on_s3_is_streamed_from_the_bucket(aws_env: str, tmp_path: Path) -> None:
    boto3.client("s3").create_bucket(Bucket="gateway-reports")
    folder = S3Path("gateway-reports", "reports")
    run = write_report(STAGING, _findings("s-9"), folder=folder, at=AT).run
    expected = (folder / STAGING / run / "mismatches.csv").read_bytes()
    with _gateway(folder, f"sqlite:///{tmp_path / 'app.db'}") as (client, engine, cookies):
        response = _get(client, cookies["vera"], f"/reports/{STAGING}/{run}/mismatches.csv")
        assert response.status_code == 200 and response.content == expected
        assert response.headers["cache-control"] == "no-store"
        missing = _get(client, cookies["vera"], f"/reports/{STAGING}/latest/resolved.csv")
        assert missing.status_code == 200  # latest/ was written too
        gone = _get(client, cookies["vera"], f"/reports/{STAGING}/{run[:-2]}9Z/summary.json")
        assert gone.status_code == 404
        outcomes = [r.outcome for r in _downloads(engine, "vera")]
    assert outcomes == ["ok", "ok", "not found"]
    store.dispose_all()


def test_ui_links_point_at_the_gateway_when_configured(
    aws_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciliation.defs.assets import report_links

    run = run_stamp(AT)
    monkeypatch.delenv(report_files.GATEWAY_URL_ENV, raising=False)
    assert report_links(Path("/r") / STAGING / run, STAGING, run) == {}
    presigned = report_links(S3Path("bucket", f"r/{STAGING}/{run}"), STAGING, run)
    assert set(presigned) == {"mismatches.csv", "district_issues.csv"}  # as before
    assert "X-Amz-Signature=" in presigned["mismatches.csv"].url
    monkeypatch.setenv(report_files.GATEWAY_URL_ENV, "https://ui.example.org/")
    for folder in (Path("/r") / STAGING / run, S3Path("bucket", f"r/{STAGING}/{run}")):
        links = report_links(folder, STAGING, run)  # no presigned links behind the gateway
        assert {name: value.url for name, value in links.items()} == {
            name: f"https://ui.example.org/reports/{STAGING}/{run}/{name}"
            for name in report_files.LINKED_FILES
        }
