"""The alert sinks against local servers speaking their real protocols (a Slack-compatible
webhook, SMTP with STARTTLS and AUTH, HubSpot's CRM API), and `send_alerts` end to end.

Every message any of these servers receives is collected in `SENT_BODIES` and scanned,
after each test, for every name, email and sourcedId of the demo rosters: an alert carries
counts and ids of rules, customers and runs, never a student's or parent's data.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciliation.alerts.config import AlertsConfig, EmailConfig, load_alerts_config
from reconciliation.alerts.hubspot import HubSpotClient
from reconciliation.alerts.messages import customer_message, digest_message
from reconciliation.alerts.policy import (
    CustomerAlert,
    CustomerOverrides,
    CustomerProfile,
    CustomerResult,
    Policy,
    evaluate,
)
from reconciliation.alerts.send import send_alerts
from reconciliation.alerts.sinks import AlertDeliveryError, EmailSink, HubSpotSink, WebhookSink
from reconciliation.credentials import CredentialResolver
from reconciliation_tests.fixtures.hubspot_server import TOKEN, HubSpotServer
from reconciliation_tests.fixtures.smtp_server import PASSWORD, USERNAME, SmtpServer
from reconciliation_tests.fixtures.webhook_server import PATH, WebhookServer

NIGHT = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
UI = "https://dagster.bookmarked.example"
#: every alert body the local servers received in this module (scanned after each test)
SENT_BODIES: list[str] = []
SERVERS = ("webhook_server", "smtp_server", "hubspot_server")


# -- the student-data scan ---------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_world() -> Any:
    """The demo's smallest customer (Hillcrest, as `generate_demo` builds it)."""
    from reconciliation.demo.demo import DEMO_CUSTOMERS
    from reconciliation.demo.world import generate_world

    index = next(i for i, c in enumerate(DEMO_CUSTOMERS) if c[0].customer_id == "hillcrest-academy")
    profile, students, _ = DEMO_CUSTOMERS[index]
    return generate_world(students, 7 * 1000 + index, profile=profile, today=NIGHT.date())


@pytest.fixture(scope="module")
def demo_identifiers(demo_world: Any) -> dict[str, re.Pattern[str]]:
    """Patterns for every sourcedId, email and name of the demo roster, on both sides."""
    source, bookmarked = demo_world.rosters()
    ids: set[str] = set()
    emails: set[str] = set()
    names: set[str] = set()
    for roster in (source, bookmarked):
        users = roster.users
        ids |= {v for v in users["sis_id"].drop_nulls().to_list() if v}
        emails |= {v.lower() for v in users["email"].drop_nulls().to_list() if v}
        for column in ("first_name", "last_name"):
            names |= {v for v in users[column].drop_nulls().to_list() if v and len(v) > 1}
    raw = demo_world.source["users"]
    ids |= set(raw["sourcedId"].drop_nulls().to_list())
    assert len(ids) > 300 and len(emails) > 300 and len(names) > 100  # a real roster
    return student_data_patterns(ids, emails, names)


def student_data_patterns(
    ids: set[str], emails: set[str], names: set[str]
) -> dict[str, re.Pattern[str]]:
    """One pattern per kind of student data (the longest values first, so a name inside
    another matches whole); emails case-insensitive, names as whole words."""

    def alternatives(values: set[str]) -> str:
        return "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))

    return {
        "sourcedId": re.compile(alternatives(ids)),
        "email": re.compile(alternatives(emails), re.IGNORECASE),
        "name": re.compile(rf"\b(?:{alternatives(names)})\b"),
    }


@pytest.fixture(autouse=True)
def no_student_data_in_alerts(
    request: pytest.FixtureRequest, demo_identifiers: dict[str, re.Pattern[str]]
) -> Iterator[None]:
    """After each test: collect what the local servers received and scan it."""
    servers = [request.getfixturevalue(name) for name in SERVERS if name in request.fixturenames]
    yield
    bodies: list[str] = []
    for server in servers:
        if isinstance(server, HubSpotServer):
            bodies += [json.dumps(t["properties"]) for t in server.tickets.values()]
        else:
            bodies += server.bodies
    SENT_BODIES.extend(bodies)
    for body in bodies:
        for kind, pattern in demo_identifiers.items():
            found = pattern.search(body)
            assert found is None, f"an alert holds a demo {kind}: {found.group()!r}"


def test_the_scan_finds_student_data(demo_identifiers: dict[str, re.Pattern[str]], demo_world):
    """The scan is no formality: a body quoting one student is caught by each pattern."""
    student = demo_world.source["users"].row(0, named=True)
    body = f"{student['givenName']} {student['familyName']} <{student['email']}>"
    body += f" {student['sourcedId']}"
    assert all(pattern.search(body) for pattern in demo_identifiers.values())


# -- helpers -----------------------------------------------------------------------------


def _profile(customer_id: str = "hillcrest-academy", **changes: Any) -> CustomerProfile:
    fields: dict[str, Any] = {
        "customer_id": customer_id,
        "name": "Hillcrest Academy",
        "environment": "production",
        "hubspot_company_id": "555",
        **changes,
    }
    return CustomerProfile(**fields)


def _alert(customer_id: str = "hillcrest-academy", **rules: dict[str, int]) -> CustomerAlert:
    rules = rules or {"missing_data": {"high": 4}, "parent_email_conflict": {"critical": 2}}
    result = CustomerResult(customer_id, "4f1c2d3e-0000-1111-2222-333344445555", "ok", NIGHT, rules)
    (alert,) = evaluate([result], None, Policy(ui_base_url=UI), NIGHT).alerts
    return alert


def _message(**changes: Any) -> Any:
    return customer_message(_alert(), _profile(**changes), Policy(ui_base_url=UI), hubspot=True)


def _webhook(server: WebhookServer, **options: Any) -> WebhookSink:
    secret = CredentialResolver({"HOOK": server.webhook_url}).resolve("env:HOOK")
    return WebhookSink(secret, **{"backoff_factor": 0.01, **options})


def _email_config(server: SmtpServer, **changes: Any) -> EmailConfig:
    fields: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "sender": "alerts@bookmarked.example",
        "to": ("support@bookmarked.example",),
        "username": USERNAME,
        "password": "env:SMTP_PASSWORD",
        "ca_file": server.cert_file,
        "timeout": 10.0,
        **changes,
    }
    return EmailConfig(**fields)


def _email(server: SmtpServer, password: str = PASSWORD, **changes: Any) -> EmailSink:
    secret = CredentialResolver({"SMTP_PASSWORD": password}).resolve("env:SMTP_PASSWORD")
    return EmailSink(_email_config(server, **changes), secret)


def _hubspot(server: HubSpotServer) -> HubSpotSink:
    token = CredentialResolver({"T": TOKEN}).resolve("env:T")
    return HubSpotSink(HubSpotClient(token, base_url=server.url, backoff_factor=0.01))


# -- webhook -----------------------------------------------------------------------------


def test_webhook_posts_text_and_blocks(webhook_server: WebhookServer) -> None:
    message = _message()
    detail = _webhook(webhook_server).send(message)

    assert detail == "posted to 127.0.0.1"
    (posted,) = webhook_server.messages
    assert posted["text"] == message.text
    assert posted["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": message.subject},
    }
    assert posted["blocks"][-1]["elements"][0]["text"] == (
        f"<{UI}/runs/4f1c2d3e-0000-1111-2222-333344445555|run 4f1c2d3e in Dagster>"
    )
    assert _webhook(webhook_server).send(message, digested=True) is None  # the digest has it


def test_webhook_retries_429_after_retry_after_and_5xx(webhook_server: WebhookServer) -> None:
    webhook_server.inject(429, retry_after=1)
    webhook_server.inject(503, times=2)
    started = time.monotonic()

    _webhook(webhook_server).send(_message())

    assert time.monotonic() - started >= 0.9
    assert len(webhook_server.requests) == 4 and len(webhook_server.messages) == 1


def test_webhook_that_keeps_failing_is_a_clear_error_without_its_url(
    webhook_server: WebhookServer,
) -> None:
    webhook_server.inject(500, times=10)
    with pytest.raises(AlertDeliveryError) as caught:
        _webhook(webhook_server, retries=2).send(_message())
    assert str(caught.value) == 'webhook at 127.0.0.1 answered 500 ("error") after 2 retries'

    webhook_server.faults.clear()
    sink = _webhook(webhook_server)
    webhook_server.path = "/services/T0001/B0001/another"  # the webhook was removed
    with pytest.raises(AlertDeliveryError) as caught:
        sink.send(_message())
    assert str(caught.value) == 'webhook at 127.0.0.1 answered 404 ("no_service")'
    assert PATH.rsplit("/", 1)[-1] not in str(caught.value)


def test_webhook_read_timeout_is_not_repeated(webhook_server: WebhookServer) -> None:
    webhook_server.delay = 1.0
    with pytest.raises(AlertDeliveryError, match=r"^webhook at 127\.0\.0\.1: no answer \(\w+\)$"):
        _webhook(webhook_server, timeout=(2.0, 0.2)).send(_message())
    assert len(webhook_server.requests) == 1  # it may have been posted: never twice


# -- email -------------------------------------------------------------------------------


def test_email_over_starttls_with_login(smtp_server: SmtpServer) -> None:
    message = _message(overrides=CustomerOverrides(email_to=("csm@bookmarked.example",)))
    detail = _email(smtp_server).send(message)

    assert detail == "sent to 2 recipients"
    (received,) = smtp_server.messages
    assert received.recipients == ["support@bookmarked.example", "csm@bookmarked.example"]
    assert received.message["Subject"] == message.subject
    assert received.body.replace("\r\n", "\n").rstrip("\n") == message.text
    assert smtp_server.logins == [(USERNAME, True)]
    # in a digest, the customer's own recipients still get their customer's message
    _email(smtp_server).send(message, digested=True)
    assert smtp_server.messages[-1].recipients == ["csm@bookmarked.example"]
    assert _email(smtp_server).send(_message(), digested=True) is None


def test_email_wrong_password_is_refused_without_showing_it(smtp_server: SmtpServer) -> None:
    wrong = "not-the-password-42"
    with pytest.raises(AlertDeliveryError) as caught:
        _email(smtp_server, password=wrong).send(_message())
    assert str(caught.value) == (
        f"email via 127.0.0.1:{smtp_server.port}: login as {USERNAME} refused "
        "(535 5.7.8 Authentication credentials invalid)"
    )
    assert wrong not in str(caught.value) and not smtp_server.messages


def test_email_verifies_the_servers_certificate(smtp_server: SmtpServer) -> None:
    with pytest.raises(AlertDeliveryError) as caught:
        _email(smtp_server, ca_file=None).send(_message())  # the system's CAs only
    assert str(caught.value) == (
        f"email via 127.0.0.1:{smtp_server.port}: the server's certificate is not trusted "
        "(self-signed certificate); name the CA in $.sinks.email.ca_file if it is a private one"
    )
    assert not smtp_server.logins  # the password never left


def test_email_without_starttls_is_refused_by_the_server(smtp_server: SmtpServer) -> None:
    sink = EmailSink(_email_config(smtp_server, starttls=False, username=None, password=None))
    with pytest.raises(AlertDeliveryError, match=r": 530 Must issue a STARTTLS command first$"):
        sink.send(_message())


# -- HubSpot -----------------------------------------------------------------------------


def test_hubspot_files_one_ticket_per_problem_and_updates_it(
    hubspot_server: HubSpotServer,
) -> None:
    sink = _hubspot(hubspot_server)
    assert sink.send(_message()) == "ticket 9001 created, ticket 9002 created"
    tickets = {t["properties"]["reconciliation_key"]: t for t in hubspot_server.tickets.values()}
    assert set(tickets) == {
        "hillcrest-academy:parent_email_conflict",
        "hillcrest-academy:missing_data",
    }
    conflict = tickets["hillcrest-academy:parent_email_conflict"]
    assert conflict["companies"] == ["555"]
    assert conflict["properties"]["subject"] == (
        "Hillcrest Academy (hillcrest-academy, production): parent_email_conflict: 2 critical"
    )
    assert conflict["properties"]["hs_ticket_priority"] == "HIGH"
    assert tickets["hillcrest-academy:missing_data"]["properties"]["hs_ticket_priority"] == (
        "MEDIUM"
    )
    assert sink.send(_message()) == "ticket 9001 updated, ticket 9002 updated"
    assert sink.send(digest_message([_alert()], {}, Policy())) is None


def test_hubspot_without_a_company_is_a_clear_error(hubspot_server: HubSpotServer) -> None:
    with pytest.raises(AlertDeliveryError) as caught:
        _hubspot(hubspot_server).send(_message(hubspot_company_id=None))
    assert str(caught.value) == (
        "hubspot: no ticket: hillcrest-academy has no hubspot_company_id in its settings"
    )


# -- send_alerts end to end --------------------------------------------------------------


@pytest.fixture
def deployment(
    tmp_path: Path,
    webhook_server: WebhookServer,
    smtp_server: SmtpServer,
    hubspot_server: HubSpotServer,
) -> dict[str, str]:
    """An alerts file naming all three sinks, and the environment it reads."""
    document = {
        "sinks": {
            "webhook": {"url": "env:ALERT_HOOK"},
            "email": {
                "host": smtp_server.host,
                "port": smtp_server.port,
                "username": USERNAME,
                "password": "env:SMTP_PASSWORD",
                "from": "alerts@bookmarked.example",
                "to": ["support@bookmarked.example"],
                "ca_file": str(smtp_server.cert_file),
                "timeout": 10,
            },
            "hubspot": {"enabled": True},
        },
        "policy": {"ui_base_url": UI, "digest_when_more_than": 2, "reminder_days": 3},
    }
    (tmp_path / "alerts.json").write_text(json.dumps(document))
    return {
        "RECONCILIATION_ALERTS_FILE": str(tmp_path / "alerts.json"),
        "ALERT_HOOK": webhook_server.webhook_url,
        "SMTP_PASSWORD": PASSWORD,
        "RECONCILIATION_HUBSPOT_TOKEN": "env:HUBSPOT_TOKEN",
        "HUBSPOT_TOKEN": TOKEN,
        "RECONCILIATION_HUBSPOT_URL": hubspot_server.url,
    }


def _send(
    results: list[CustomerResult],
    state: dict[str, Any] | None,
    environ: dict[str, str],
    now: datetime,
    customers: dict[str, CustomerProfile] | None = None,
) -> tuple[list[Any], dict[str, Any], list[str]]:
    lines: list[str] = []
    config = load_alerts_config(environ)
    sent, new_state = send_alerts(
        results,
        state,
        config,
        now,
        customers=customers or {"hillcrest-academy": _profile()},
        credentials=CredentialResolver(environ),
        environ=environ,
        echo=lines.append,
    )
    return sent, json.loads(json.dumps(new_state)), lines


def test_send_alerts_over_nights_through_every_sink(
    deployment: dict[str, str],
    webhook_server: WebhookServer,
    smtp_server: SmtpServer,
    hubspot_server: HubSpotServer,
) -> None:
    def night(n: int, **rules: dict[str, int]) -> CustomerResult:
        return CustomerResult(
            "hillcrest-academy", f"run-{n}", "ok", NIGHT + timedelta(days=n), rules
        )

    sent, state, lines = _send([night(1, missing_data={"high": 4})], None, deployment, NIGHT)
    assert lines == [
        "alerts: hillcrest-academy (alert) -> webhook: posted to 127.0.0.1",
        "alerts: hillcrest-academy (alert) -> email: sent to 1 recipient",
        "alerts: hillcrest-academy (alert) -> hubspot: ticket 9001 created",
    ]
    assert [d.ok for d in sent] == [True, True, True]

    sent, state, lines = _send([night(2, missing_data={"high": 4})], state, deployment, NIGHT)
    assert (sent, lines) == (
        [],
        [
            "alerts: nothing to send (1 customers evaluated): hillcrest-academy: "
            "nothing new or worse since the last evaluation"
        ],
    )

    sent, state, lines = _send([night(3, missing_data={"high": 6})], state, deployment, NIGHT)
    assert lines[-1] == "alerts: hillcrest-academy (alert) -> hubspot: ticket 9001 updated"
    assert len(webhook_server.messages) == len(smtp_server.messages) == 2
    assert (
        "missing_data: 6 high (was 4 high): worsened, +2 high"
        in webhook_server.messages[-1]["text"]
    )


def test_a_digest_replaces_the_broadcast_messages(
    deployment: dict[str, str],
    webhook_server: WebhookServer,
    smtp_server: SmtpServer,
    hubspot_server: HubSpotServer,
) -> None:
    customers = {
        f"district-{i}": _profile(
            f"district-{i}",
            name=f"District {i}",
            hubspot_company_id="555" if i == 0 else None,
            overrides=CustomerOverrides(email_to=("csm@bookmarked.example",) if i == 1 else ()),
        )
        for i in range(3)
    }
    results = [
        CustomerResult(c, f"run-{c}", "failed", NIGHT, error_line="cannot reach the SIS")
        for c in customers
    ]

    _, state, lines = _send(results, None, deployment, NIGHT, customers)

    (digest,) = webhook_server.messages
    assert digest["text"].splitlines()[0] == "Roster alerts: 3 customers need attention"
    assert [m.recipients for m in smtp_server.messages] == [
        ["support@bookmarked.example"],  # the digest
        ["csm@bookmarked.example"],  # district-1's own recipient: its own message
    ]
    assert [t["properties"]["reconciliation_key"] for t in hubspot_server.tickets.values()] == [
        "district-0:run"
    ]
    assert lines == [
        "alerts: digest of 3 customers -> webhook: posted to 127.0.0.1",
        "alerts: digest of 3 customers -> email: sent to 1 recipient",
        "alerts: district-1 (alert) -> email: sent to 1 recipient",
        "alerts: district-0 (alert) -> hubspot: ticket 9001 created",
        "alerts: district-1 (alert) -> hubspot: FAILED: hubspot: no ticket: "
        "district-1 has no hubspot_company_id in its settings",
        "alerts: district-2 (alert) -> hubspot: FAILED: hubspot: no ticket: "
        "district-2 has no hubspot_company_id in its settings",
    ]
    assert set(state["customers"]) == set(customers)


def test_an_alert_no_sink_delivered_is_sent_again(
    deployment: dict[str, str], webhook_server: WebhookServer
) -> None:
    environ = {
        "RECONCILIATION_ALERT_WEBHOOK_URL": "env:ALERT_HOOK",
        "ALERT_HOOK": deployment["ALERT_HOOK"],
    }
    result = CustomerResult("hillcrest-academy", "run-1", "held", NIGHT, error_line="HELD")
    webhook_server.inject(410, times=10)  # Slack: channel_is_archived (not retried)

    sent, state, lines = _send([result], None, environ, NIGHT)

    assert not sent[0].ok and state["customers"] == {}
    assert lines[-1] == (
        "alerts: hillcrest-academy: no sink delivered its alert; "
        "it is sent again at the next evaluation"
    )
    webhook_server.faults.clear()
    sent, state, lines = _send([result], state, environ, NIGHT)
    assert sent[0].ok and "hillcrest-academy" in state["customers"]


def test_alerts_off_and_no_sink(tmp_path: Path) -> None:
    lines: list[str] = []
    result = CustomerResult("hillcrest-academy", "run-1", "failed", NIGHT)
    assert send_alerts([result], None, None, NIGHT, echo=lines.append) == (
        [],
        {"version": 1, "customers": {}},
    )
    config = AlertsConfig(origin="alerts.json")
    send_alerts([result], None, config, NIGHT, echo=lines.append)
    assert lines == [
        "alerts: off (set RECONCILIATION_ALERTS_FILE or RECONCILIATION_ALERT_WEBHOOK_URL)",
        "alerts: alerts.json turns on no sink (webhook, email, hubspot): nothing sent",
    ]


# -- the demo ----------------------------------------------------------------------------


def test_alerts_from_the_demos_real_findings(
    demo_world: Any,
    deployment: dict[str, str],
    webhook_server: WebhookServer,
    smtp_server: SmtpServer,
    hubspot_server: HubSpotServer,
) -> None:
    """The demo's findings, counted as the checks count them, through every sink (the
    autouse scan then reads every body for the demo's names, emails and sourcedIds)."""
    from reconciliation.rules import run_rules

    findings = run_rules(*demo_world.rosters())
    counts = {
        rule: dict(frame.group_by("severity").len().iter_rows())
        for rule, frame in findings.items()
        if frame.height
    }
    results = [
        CustomerResult("hillcrest-academy", "run-demo", "ok", NIGHT, counts),
        CustomerResult(
            "maple-charter",
            "run-maple",
            "held",
            NIGHT,
            error_line="HELD maple-charter: users: the SIS would drop 40% of 1051 live users",
        ),
    ]
    customers = {
        "hillcrest-academy": _profile(),
        "maple-charter": _profile("maple-charter", name="Maple Charter"),
    }

    sent, _, lines = _send(results, None, deployment, NIGHT, customers)

    assert all(d.ok for d in sent), lines
    text = webhook_server.messages[0]["text"]
    for rule, by_severity in counts.items():
        alerting = {s: n for s, n in by_severity.items() if s in ("critical", "high")}
        if alerting:
            assert f"- {rule}: " in text
    assert len(hubspot_server.tickets) >= 3
    assert "HELD maple-charter: users" in webhook_server.messages[1]["text"]
