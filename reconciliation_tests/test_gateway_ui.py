"""The secured UI gateway in front of a real Dagster webserver (one per module, with its
daemon): sign-in, cookies, roles on real GraphQL mutations over HTTP and WebSocket, the
production step-up, idle and absolute timeouts (an injected clock, no sleeping), CSRF,
the audit trail; then a local OpenID Connect provider signing a real headless Chromium in
through a served gateway, which launches a staging diagnosis (tagged with the user) and is
refused a production one; last, a scan of the logs, run configs and audit rows for the
test secrets.

riverside-usd is made a production customer here (its settings file, before the
webserver starts); maple-charter stays staging.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
import uvicorn
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from reconciliation.gateway import accounts, audit_trail, policy, store
from reconciliation.gateway.app import GatewayConfig, create_app, settings_environments
from reconciliation.gateway.oidc import OIDCConfig
from reconciliation.gateway.sessions import COOKIE_NAME
from reconciliation.screenshots import graphql, launch_chromium
from reconciliation_tests.gateway.oidc_provider import Provider, serve_provider

pytest_plugins = ["reconciliation_tests.fixtures.dagster_webserver"]

STAGING, PRODUCTION = "maple-charter", "riverside-usd"
#: the test secrets the last test looks for everywhere
SIGNING_KEY = "h13-signing-key-5d1f0c9e7a"
PASSWORDS = {
    "vera": "h13-viewer-pass-Qm4x9",
    "eng": "h13-engineer-pass-Lw2p7",
    "ada": "h13-admin-pass-Zr8k3",
}
OIDC_USER = "oli@example.org"
OIDC_CLIENT_ID = "reconciliation-ui"
OIDC_SECRET = "h13-oidc-client-secret-Hc6v1"
ROLES = {"vera": "viewer", "eng": "engineer", "ada": "admin", OIDC_USER: "engineer"}
BASE = "http://127.0.0.1:8080"

LAUNCH = """
mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""
REEXECUTE = """
mutation Reexecute($reexecutionParams: ReexecutionParams) {
  launchRunReexecution(reexecutionParams: $reexecutionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""
TERMINATE = """
mutation Terminate($runId: String!) {
  terminateRun(runId: $runId) { __typename }
}"""
RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { runId status tags { key value } } }
}"""
ALL_RUNS = """{ runsOrError { __typename ... on Runs { results { runId runConfigYaml
  tags { key value } } } } }"""


def diagnosis_variables(customer: str, student: str) -> dict[str, Any]:
    """A diagnose_student launch as the launchpad sends it (config scaffolded and filled)."""
    config = {"customer_id": customer, "student": student, "parent_email": ""}
    return {
        "executionParams": {
            "selector": {
                "jobName": "diagnose_student",
                "repositoryName": "__repository__",
                "repositoryLocationName": "reconciliation",
            },
            "runConfigData": {"ops": {"diagnose": {"config": config}}},
            "executionMetadata": {"tags": []},
        }
    }


def launch_variables(customer: str, *, valid: bool = True) -> dict[str, Any]:
    """A launch of reconcile_customer for one partition, as the launchpad sends it; an
    invalid one is refused by Dagster's config check, so no run process starts."""
    config = {} if valid else {"ops": {"no_such_op": {"config": {}}}}
    return {
        "executionParams": {
            "selector": {
                "jobName": "reconcile_customer",
                "repositoryName": "__repository__",
                "repositoryLocationName": "reconciliation",
            },
            "runConfigData": config,
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": customer}]},
        }
    }


class Clock:
    """time.time() plus an offset the tests move."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def captured_logs() -> Iterator[Captured]:
    """Every log record of this module's process, for the secrets scan."""
    handler = Captured()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)


@pytest.fixture(scope="module")
def production_customer(ui_project: Any) -> Any:
    path = ui_project.settings / f"{PRODUCTION}.json"
    document = json.loads(path.read_text())
    document["environment"] = "production"
    path.write_text(json.dumps(document, indent=2))
    return ui_project


@pytest.fixture(scope="module")
def upstream(production_customer: Any, captured_logs: Captured, dagster_webserver: str) -> str:
    return dagster_webserver


@pytest.fixture(scope="module")
def engine(production_customer: Any) -> Iterator[sa.Engine]:
    """The app database the runs' Bookmarked reads go to as well (the storage folder's)."""
    url = f"sqlite:///{Path(production_customer.env['RECONCILIATION_STORAGE_DIR']) / 'app.db'}"
    created = store.engine(url)
    for name, password in PASSWORDS.items():
        accounts.add_user(created, name, ROLES[name], password)
    accounts.add_user(created, OIDC_USER, "engineer", None)
    yield created
    store.dispose_all()


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def _clock_back(clock: Clock) -> Iterator[None]:
    yield
    clock.offset = 0.0


@pytest.fixture(scope="module")
def client(
    upstream: str, engine: sa.Engine, clock: Clock, production_customer: Any
) -> Iterator[TestClient]:
    config = GatewayConfig(
        upstream=upstream,
        engine=engine,
        secret_key=SIGNING_KEY,
        environments=settings_environments(production_customer.settings),
        now=clock,
    )
    with TestClient(create_app(config), base_url=BASE, follow_redirects=False) as test_client:
        yield test_client


def sign_in(client: TestClient, user: str, password: str | None = None, **headers: str) -> str:
    """The session cookie of a local sign-in."""
    client.cookies.clear()
    response = client.post(
        "/auth/login",
        data={"username": user, "password": password or PASSWORDS[user], "next": "/runs"},
        headers=headers,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/runs"
    return response.cookies[COOKIE_NAME]


@pytest.fixture(scope="module")
def session_of(client: TestClient) -> Any:
    """One sign-in per user for the tests that need no fresh one (bcrypt takes 0.4 s)."""
    cookies: dict[str, str] = {}

    def cookie(user: str) -> str:
        if user not in cookies:
            cookies[user] = sign_in(client, user)
        return cookies[user]

    return cookie


def use(client: TestClient, cookie: str | None) -> None:
    """The client's only cookie from now on (a sign-in leaves its own in the jar)."""
    client.cookies.clear()
    if cookie:
        client.cookies.set(COOKIE_NAME, cookie)


def post_graphql(
    client: TestClient, cookie: str | None, query: str, variables: dict | None = None
) -> Any:
    use(client, cookie)
    return client.post("/graphql", json={"query": query, "variables": variables or {}})


def audit_rows(engine: sa.Engine, **filters: str) -> list[sa.Row]:
    return list(audit_trail.search(engine, **filters))


# --- sign-in and cookies -------------------------------------------------------------------


def test_without_a_cookie_pages_go_to_sign_in_and_api_calls_get_401(client: TestClient) -> None:
    client.cookies.clear()
    page = client.get("/runs", headers={"accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"].startswith("/auth/login?next=")
    assert "<form" in client.get(page.headers["location"]).text
    api = client.post("/graphql", json={"query": "{ version }"})
    assert api.status_code == 401 and api.json()["error"] == "not signed in"


def test_a_forged_or_foreign_cookie_is_refused(client: TestClient) -> None:
    from itsdangerous import URLSafeSerializer

    other_key = URLSafeSerializer("another-key", salt="reconciliation-session").dumps("x" * 43)
    ours_unknown = URLSafeSerializer(SIGNING_KEY, salt="reconciliation-session").dumps("y" * 43)
    for cookie, reason in (
        ("forged-value", "the session cookie is not valid"),
        (other_key, "the session cookie is not valid"),
        (ours_unknown, "the session has ended"),
    ):
        answer = post_graphql(client, cookie, "{ version }")
        assert answer.status_code == 401 and answer.json()["error"] == reason


def test_a_local_sign_in_sets_a_signed_httponly_lax_cookie_and_reaches_dagster(
    client: TestClient, engine: sa.Engine
) -> None:
    client.cookies.clear()
    wrong = client.post("/auth/login", data={"username": "vera", "password": "nope-nope-nope"})
    assert wrong.status_code == 401 and COOKIE_NAME not in wrong.cookies
    response = client.post("/auth/login", data={"username": "vera", "password": PASSWORDS["vera"]})
    header = response.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=lax" in header and "secure" not in header
    answer = post_graphql(client, response.cookies[COOKIE_NAME], "{ version }")
    assert answer.status_code == 200 and answer.json()["data"]["version"]
    # outside loopback the cookie is Secure
    remote = TestClient(client.app, base_url="https://ui.example.org", follow_redirects=False)
    elsewhere = remote.post("/auth/login", data={"username": "vera", "password": PASSWORDS["vera"]})
    assert "secure" in elsewhere.headers["set-cookie"].lower()
    actions = [(r.actor, r.action, r.outcome) for r in audit_rows(engine, user="vera")]
    assert ("vera", "login_failed", "refused") in actions and (
        "vera",
        "login",
        "password",
    ) in actions


def test_sign_in_never_redirects_off_site(client: TestClient) -> None:
    client.cookies.clear()
    response = client.post(
        "/auth/login",
        data={"username": "vera", "password": PASSWORDS["vera"], "next": "//evil.example/x"},
    )
    assert response.headers["location"] == "/"


def test_cross_site_form_posts_and_mutations_are_refused(
    client: TestClient, session_of: Any
) -> None:
    client.cookies.clear()
    evil = {"origin": "https://evil.example"}
    data = {"username": "vera", "password": PASSWORDS["vera"]}
    assert client.post("/auth/login", data=data, headers=evil).status_code == 403
    cross = {"sec-fetch-site": "cross-site"}
    assert client.post("/auth/login", data=data, headers=cross).status_code == 403
    use(client, session_of("ada"))
    answer = client.post(
        "/graphql",
        json={"query": LAUNCH, "variables": launch_variables(STAGING, valid=False)},
        headers=evil,
    )
    assert answer.status_code == 403


# --- roles on GraphQL ----------------------------------------------------------------------


def test_a_viewer_reads_but_cannot_launch_over_http(
    client: TestClient, engine: sa.Engine, session_of: Any
) -> None:
    cookie = session_of("vera")
    assert post_graphql(client, cookie, ALL_RUNS).status_code == 200
    refused = post_graphql(client, cookie, LAUNCH, launch_variables(STAGING))
    assert refused.status_code == 403
    error = refused.json()["errors"][0]
    assert error["extensions"]["code"] == "FORBIDDEN" and "read-only" in error["message"]
    row = audit_rows(engine, user="vera")[-1]
    assert (row.action, row.customer_id, row.outcome) == ("launch", STAGING, "refused")
    # downloads (captured logs, debug files) are read, and recorded
    use(client, cookie)
    client.get("/download_debug/no-such-run")
    row = audit_rows(engine, user="vera")[-1]
    assert (row.action, row.detail) == ("download", "/download_debug/no-such-run")


def test_a_viewer_cannot_send_a_mutation_over_the_websocket(
    client: TestClient, engine: sa.Engine, session_of: Any
) -> None:
    cookie = session_of("vera")
    client.cookies.clear()  # the cookie goes in the headers: the jar's is for 127.0.0.1
    headers = {"cookie": f"{COOKIE_NAME}={cookie}", "origin": "http://testserver"}
    with client.websocket_connect("/graphql", ["graphql-ws"], headers=headers) as ws:
        assert ws.accepted_subprotocol == "graphql-ws"
        ws.send_json({"type": "connection_init", "payload": {}})
        assert ws.receive_json()["type"] == "connection_ack"  # from the webserver
        ws.send_json(
            {
                "type": "start",
                "id": "1",
                "payload": {"query": LAUNCH, "variables": launch_variables(STAGING)},
            }
        )
        answer = ws.receive_json()
    assert answer["type"] == "error" and answer["id"] == "1"
    assert "not accepted over the WebSocket" in answer["payload"]["message"]
    assert audit_rows(engine, user="vera")[-1].outcome == "refused (websocket)"
    # no cookie, or another site's page: the socket is closed before it opens
    for bad in ({"origin": "http://testserver"}, {**headers, "origin": "https://evil.example"}):
        with (
            pytest.raises(WebSocketDisconnect),
            client.websocket_connect("/graphql", ["graphql-ws"], headers=bad) as ws,
        ):
            ws.receive_json()


def test_an_engineer_is_refused_a_production_launch(
    client: TestClient, engine: sa.Engine, session_of: Any
) -> None:
    cookie = session_of("eng")
    refused = post_graphql(client, cookie, LAUNCH, launch_variables(PRODUCTION))
    assert refused.status_code == 403
    assert (
        f"production customer {PRODUCTION} needs the admin role"
        in refused.json()["errors"][0]["message"]
    )
    # a staging launch goes through to Dagster (its config check refuses this one: no run)
    allowed = post_graphql(client, cookie, LAUNCH, launch_variables(STAGING, valid=False))
    assert allowed.status_code == 200
    typename = allowed.json()["data"]["launchPipelineExecution"]["__typename"]
    assert typename == "RunConfigValidationInvalid"
    row = audit_rows(engine, user="eng")[-1]
    assert (row.action, row.customer_id, row.job, row.outcome) == (
        "launch",
        STAGING,
        "reconcile_customer",
        "RunConfigValidationInvalid",
    )


def test_a_production_launch_needs_a_sign_in_from_the_last_ten_minutes(
    client: TestClient, clock: Clock
) -> None:
    cookie = sign_in(client, "ada")
    clock.offset = policy.STEP_UP_SECONDS + 60
    stale = post_graphql(client, cookie, LAUNCH, launch_variables(PRODUCTION, valid=False))
    assert stale.status_code == 403
    error = stale.json()["errors"][0]
    assert error["extensions"] == {"code": "STEP_UP_REQUIRED", "signIn": "/auth/step-up"}
    assert "password" in client.get("/auth/step-up").text
    # signing in again in the same browser renews the session's sign-in
    use(client, cookie)
    again = client.post("/auth/login", data={"username": "ada", "password": PASSWORDS["ada"]})
    assert again.status_code == 303 and COOKIE_NAME not in again.cookies
    fresh = post_graphql(client, cookie, LAUNCH, launch_variables(PRODUCTION, valid=False))
    assert fresh.status_code == 200, fresh.text


def test_sessions_end_after_an_idle_hour_and_after_twelve_hours(
    client: TestClient, clock: Clock
) -> None:
    cookie = sign_in(client, "vera")
    use(client, cookie)
    clock.offset = 59 * 60
    assert client.post("/auth/activity").status_code == 204  # someone typed: renewed
    clock.offset = (59 + 30) * 60
    # the UI's background polling is no activity
    assert post_graphql(client, cookie, "{ version }").status_code == 200
    clock.offset = (59 + 61) * 60
    idle = client.get("/auth/whoami")
    assert idle.status_code == 401 and "idle for over 60 minutes" in idle.json()["reason"]
    assert client.post("/auth/activity").status_code == 401  # the page goes to sign-in

    clock.offset = 0
    cookie = sign_in(client, "vera")
    use(client, cookie)
    for minutes in range(50, 12 * 60, 50):
        clock.offset = minutes * 60
        assert client.post("/auth/activity").status_code == 204
    clock.offset = 12 * 3600 + 60
    old = client.get("/auth/whoami")
    assert old.status_code == 401 and "over 12 hours old" in old.json()["reason"]


def test_a_disabled_account_loses_its_session_and_writes_outside_graphql_need_admin(
    client: TestClient, engine: sa.Engine, session_of: Any
) -> None:
    cookie = session_of("eng")
    use(client, cookie)
    write = client.post("/report_asset_materialization/mismatch_report", json={})
    assert write.status_code == 403 and "admin" in write.text
    accounts.add_user(engine, "temp", "engineer", "h13-temp-pass-Yy5t2")
    cookie = sign_in(client, "temp", "h13-temp-pass-Yy5t2")
    accounts.disable(engine, "temp")
    use(client, cookie)
    assert client.get("/auth/whoami").json()["reason"] == "the account is disabled"


def test_failed_sign_ins_are_rate_limited(client: TestClient, clock: Clock) -> None:
    client.cookies.clear()
    clock.offset = 16 * 60  # past the window of the failures of the tests above
    for _ in range(5):
        bad = client.post("/auth/login", data={"username": "ada", "password": "wrong-wrong-1"})
        assert bad.status_code == 401
    limited = client.post("/auth/login", data={"username": "ada", "password": PASSWORDS["ada"]})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    clock.offset = 32 * 60  # the window has passed
    assert (
        client.post(
            "/auth/login", data={"username": "ada", "password": PASSWORDS["ada"]}
        ).status_code
        == 303
    )


# --- OIDC and a real browser ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with serve_provider(OIDC_CLIENT_ID, OIDC_SECRET, {OIDC_USER}) as served:
        yield served


@pytest.fixture(scope="module")
def served_gateway(
    upstream: str, engine: sa.Engine, provider: Provider, production_customer: Any
) -> Iterator[str]:
    """The gateway served by uvicorn on a free loopback port, with OIDC sign-in."""
    oidc = OIDCConfig.from_environment(
        {
            "RECONCILIATION_OIDC_DISCOVERY_URL": provider.discovery_url,
            "RECONCILIATION_OIDC_CLIENT_ID": OIDC_CLIENT_ID,
            "RECONCILIATION_OIDC_CLIENT_SECRET": "env:H13_OIDC_SECRET",
            "H13_OIDC_SECRET": OIDC_SECRET,
        }
    )
    config = GatewayConfig(
        upstream=upstream,
        engine=engine,
        secret_key=SIGNING_KEY,
        environments=settings_environments(production_customer.settings),
        oidc=oidc,
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ws="websockets-sansio",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the gateway did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _browser_graphql(page: Any, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """A GraphQL POST from the page itself: the browser's cookie, Origin and fetch."""
    return page.evaluate(
        """async ([query, variables]) => {
            const r = await fetch('/graphql', {method: 'POST',
                headers: {'content-type': 'application/json'},
                body: JSON.stringify({query, variables})});
            return {status: r.status, body: await r.json()};
        }""",
        [query, variables],
    )


def test_oidc_signs_chromium_in_which_diagnoses_staging_and_is_refused_production(
    served_gateway: str, provider: Provider, upstream: str, engine: sa.Engine
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context()
            page = context.new_page()
            frames: list[str] = []
            page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(f)))
            page.goto(f"{served_gateway}/runs")
            assert "/auth/login" in page.url
            page.get_by_text("Sign in with your organization's account").click()
            page.locator("#email").fill(OIDC_USER)
            page.locator("#sign-in").click()
            page.wait_for_url(f"{served_gateway}/runs**")
            cookie = next(c for c in context.cookies() if c["name"] == COOKIE_NAME)
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

            launched = _browser_graphql(page, LAUNCH, diagnosis_variables(STAGING, "stu-h13"))
            assert launched["status"] == 200, launched
            result = launched["body"]["data"]["launchPipelineExecution"]
            assert result["__typename"] == "LaunchRunSuccess", result
            run_id = result["run"]["runId"]
            refused = _browser_graphql(page, LAUNCH, diagnosis_variables(PRODUCTION, "stu-h13"))
            assert refused["status"] == 403
            assert "needs the admin role" in refused["body"]["errors"][0]["message"]

            # the UI itself renders the run through the gateway, subscriptions included, and
            # runs the activity script (the page's own CSP nonce allows it)
            page.goto(f"{served_gateway}/runs/{run_id}")
            page.get_by_text(run_id[:8]).first.wait_for(timeout=60_000)
            assert page.evaluate("window.reconciliationActivity") is True
            deadline = time.monotonic() + 30
            while not frames and time.monotonic() < deadline:
                page.wait_for_timeout(200)
            assert frames, "no WebSocket frame reached the page through the gateway"

            # the step-up asks the provider to sign the user in again
            page.goto(f"{served_gateway}/auth/step-up?next=/runs")
            page.locator("#email").fill(OIDC_USER)
            page.locator("#sign-in").click()
            page.wait_for_url(f"{served_gateway}/runs**")
            assert provider.requests[-1]["prompt"] == "login"
            assert provider.requests[-1]["max_age"] == str(policy.STEP_UP_SECONDS)

            # an engineer may re-execute and stop a staging run: the gateway finds the
            # customer in the run's config, asked of the webserver
            again = _browser_graphql(
                page,
                REEXECUTE,
                {"reexecutionParams": {"parentRunId": run_id, "strategy": "ALL_STEPS"}},
            )
            assert again["status"] == 200, again
            rerun_id = again["body"]["data"]["launchRunReexecution"]["run"]["runId"]
            for stop in (run_id, rerun_id):
                stopped = _browser_graphql(page, TERMINATE, {"runId": stop})
                assert stopped["status"] == 200, stopped
        finally:
            browser.close()

    for launched_id in (run_id, rerun_id):
        run = graphql(upstream, RUN, {"runId": launched_id})["runOrError"]
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags[policy.USER_TAG] == OIDC_USER
    rows = audit_rows(engine, user=OIDC_USER)
    actions = [(r.action, r.customer_id, r.outcome) for r in rows]
    assert ("login", None, "oidc") in actions
    assert ("diagnose", STAGING, f"LaunchRunSuccess {run_id}") in actions
    assert ("diagnose", PRODUCTION, "refused") in actions
    assert {r.person for r in rows if r.action == "diagnose"} == {"stu-h13"}
    assert ("reexecute", STAGING, f"LaunchRunSuccess {rerun_id}") in actions
    assert sum(a[0] == "terminate" and a[1] == STAGING for a in actions) == 2


def test_unknown_oidc_users_are_refused(served_gateway: str, provider: Provider) -> None:
    provider.users.add("stranger@example.org")
    session = requests.Session()
    start = session.get(f"{served_gateway}/auth/oidc/login?next=/runs", allow_redirects=False)
    form_url = start.headers["location"]
    params = dict(p.split("=", 1) for p in form_url.split("?", 1)[1].split("&"))
    from urllib.parse import unquote

    back = session.post(
        f"{provider.url}/authorize",
        data={**{k: unquote(v) for k, v in params.items()}, "email": "stranger@example.org"},
        allow_redirects=False,
    )
    answer = session.get(back.headers["location"], allow_redirects=False)
    assert answer.status_code == 403 and "not allowed here" in answer.text


# --- no secret anywhere --------------------------------------------------------------------


def test_no_test_secret_in_logs_run_configs_or_audit_rows(
    upstream: str, engine: sa.Engine, production_customer: Any, captured_logs: Captured
) -> None:
    secrets = [SIGNING_KEY, OIDC_SECRET, *PASSWORDS.values(), "h13-temp-pass-Yy5t2"]
    texts: dict[str, str] = {"log records of this process": "\n".join(captured_logs.lines)}
    for path in (production_customer.root / "logs").rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_text(errors="replace")
    home = Path(production_customer.env["DAGSTER_HOME"])
    for path in (home / "storage").rglob("*"):
        if path.is_file() and path.suffix in {".out", ".err", ".log", ".complete", ""}:
            texts[str(path)] = path.read_text(errors="replace")
    texts["runs (config and tags)"] = json.dumps(graphql(upstream, ALL_RUNS))
    with engine.connect() as connection:
        rows = connection.execute(sa.select(store.audit_events)).all()
        sessions = connection.execute(sa.select(store.sessions)).all()
    assert rows and sessions
    texts["audit rows"] = "\n".join(str(tuple(r)) for r in rows)
    texts["session rows"] = "\n".join(str(tuple(r)) for r in sessions)
    leaks = [(where, s) for where, text in texts.items() for s in secrets if s in text]
    assert not leaks
