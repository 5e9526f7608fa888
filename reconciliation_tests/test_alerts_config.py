"""The alerts configuration: the deployment file (errors name file and JSON path), the
webhook variable alone, and the customers' `alerts` blocks."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest

from reconciliation.alerts.config import (
    CUSTOMER_ALERTS_SCHEMA,
    AlertsConfig,
    AlertsConfigError,
    EmailConfig,
    load_alerts_config,
    profile_from_settings,
    read_alerts_file,
)
from reconciliation.alerts.policy import CustomerOverrides, CustomerProfile, Policy
from reconciliation.credentials import CredentialError, CredentialResolver

HOOK = "https://hooks.slack.example/services/T1/B1/secretpart"


def write(folder: Path, document: Any, name: str = "alerts.json") -> Path:
    path = folder / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(AlertsConfigError) as caught:
        read_alerts_file(path, environ or {})
    return caught.value.problems


def test_a_full_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    path = write(
        tmp_path,
        {
            "sinks": {
                "webhook": {"url": "env:SLACK_HOOK"},
                "email": {
                    "host": "smtp.example.org",
                    "port": 2525,
                    "username": "alerts@bookmarked.example",
                    "password": "aws-secretsmanager:bookmarked/smtp#password",
                    "from": "alerts@bookmarked.example",
                    "to": ["support@bookmarked.example"],
                    "ca_file": "ca.pem",
                },
                "hubspot": {"enabled": True},
            },
            "policy": {
                "min_severity": {"default": "medium", "field_mismatch": "critical"},
                "reminder_days": 3,
                "digest_when_more_than": 10,
                "ui_base_url": "https://dagster.bookmarked.example",
            },
        },
    )
    config = read_alerts_file(path, {"RECONCILIATION_HUBSPOT_TOKEN": "env:HUBSPOT"})
    assert config == AlertsConfig(
        policy=Policy(
            min_severity={"default": "medium", "field_mismatch": "critical"},
            reminder_days=3,
            digest_when_more_than=10,
            ui_base_url="https://dagster.bookmarked.example",
        ),
        webhook_url="env:SLACK_HOOK",
        email=EmailConfig(
            host="smtp.example.org",
            port=2525,
            username="alerts@bookmarked.example",
            password="aws-secretsmanager:bookmarked/smtp#password",
            sender="alerts@bookmarked.example",
            to=("support@bookmarked.example",),
            ca_file=tmp_path / "ca.pem",
        ),
        hubspot=True,
        origin=str(path),
    )
    assert config.sink_names == ("webhook", "email", "hubspot")


def test_every_error_names_the_file_and_json_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "sinks": {
                "webhook": {},
                "email": {
                    "host": "smtp.example.org",
                    "port": "587",
                    "username": "alerts@bookmarked.example",
                    "password": "hunter2-literal",
                    "from": "alerts",
                    "to": [],
                },
                "pager": {},
            },
            "policy": {
                "min_severity": {"missing_dta": "high", "default": "severe"},
                "ui_base_url": "dagster.internal:3000",
            },
        },
    )
    assert problems(path) == [
        f"{path}: $.policy.min_severity.missing_dta: unknown key 'missing_dta' (allowed here: "
        "campus_transfer, default, duplicate_identity, field_mismatch, missing_data, "
        "parent_email_conflict, source_integrity, stale_record, student_mismatch)",
        f"{path}: $.policy.min_severity.default: 'severe' is not one of "
        "['critical', 'high', 'medium', 'low']",
        f"{path}: $.policy.ui_base_url: must be an http:// or https:// URL (the Dagster UI, "
        "for links to runs)",
        f"{path}: $.sinks.pager: unknown key 'pager' (allowed here: email, hubspot, webhook)",
        f"{path}: $.sinks.email.from: is not an email address",
        f"{path}: $.sinks.email.password: must be a credential reference (env:NAME or "
        "aws-secretsmanager:ID[#key]), never the secret itself",
        f"{path}: $.sinks.email.port: must be an integer, not a string",
        f"{path}: $.sinks.email.to: an array that should be non-empty",
        f"{path}: $.sinks.webhook.url: missing required key 'url'",
    ]
    assert not any("hunter2" in p for p in problems(path))


def test_the_checks_beyond_the_schema(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "sinks": {
                "webhook": {"url": "http://hooks.slack.example/services/T1/B1/secretpart"},
                "email": {
                    "host": "smtp.example.org",
                    "starttls": False,
                    "username": "alerts@bookmarked.example",
                    "password": "env:SMTP_PASSWORD",
                    "from": "alerts@bookmarked.example",
                    "to": ["support@bookmarked.example"],
                    "ca_file": "missing.pem",
                },
                "hubspot": {},
            },
        },
    )
    found = problems(path)
    assert found == [
        f"{path}: $.sinks.webhook.url: must be an https:// URL (plain http:// only to localhost "
        "or 127.0.0.1) or a credential reference (env:NAME or aws-secretsmanager:ID[#key])",
        f"{path}: $.sinks.email.starttls: must be true when a password is set: the password "
        "and the messages would cross the network in clear",
        f"{path}: $.sinks.email.ca_file: no such file {tmp_path / 'missing.pem'}",
        f"{path}: $.sinks.hubspot.enabled: HubSpot tickets need the deployment's token: set "
        "RECONCILIATION_HUBSPOT_TOKEN to a credential reference",
    ]
    assert not any("secretpart" in p for p in found)


def test_broken_json_yaml_and_a_missing_file(tmp_path: Path) -> None:
    broken = write(tmp_path, '{"sinks": {"webhook": {"url": "env:X"}},}')
    assert problems(broken) == [
        f"{broken}: line 1, column 41: invalid JSON: Expecting property name enclosed in "
        "double quotes"
    ]
    yaml_file = write(tmp_path, "sinks:\n  webhook:\n    url: env:HOOK\n", "alerts.yaml")
    assert read_alerts_file(yaml_file, {}).webhook_url == "env:HOOK"
    bad_yaml = write(tmp_path, "sinks:\n  webhook: [\n", "bad.yml")
    assert problems(bad_yaml)[0].startswith(f"{bad_yaml}: line 3, column 1: invalid YAML: ")
    with pytest.raises(AlertsConfigError) as caught:
        load_alerts_config({"RECONCILIATION_ALERTS_FILE": str(tmp_path / "nope.json")})
    assert str(caught.value) == (
        f"RECONCILIATION_ALERTS_FILE names {tmp_path / 'nope.json'}, which does not exist"
    )


def test_the_webhook_variable_alone_turns_the_webhook_on(tmp_path: Path) -> None:
    assert load_alerts_config({}) is None
    for value in (HOOK, "env:SLACK_HOOK", "aws-secretsmanager:bookmarked/slack#url"):
        config = load_alerts_config({"RECONCILIATION_ALERT_WEBHOOK_URL": value})
        assert config == AlertsConfig(webhook_url=value, origin="RECONCILIATION_ALERT_WEBHOOK_URL")
        assert config.policy == Policy()  # the default policy
    with pytest.raises(AlertsConfigError) as caught:
        load_alerts_config({"RECONCILIATION_ALERT_WEBHOOK_URL": "hooks.slack.example/secretpart"})
    assert str(caught.value) == (
        "RECONCILIATION_ALERT_WEBHOOK_URL: must be an https:// URL (plain http:// only to "
        "localhost or 127.0.0.1) or a credential reference (env:NAME or "
        "aws-secretsmanager:ID[#key])"
    )


def test_the_variable_with_a_file(tmp_path: Path) -> None:
    email = {"host": "smtp.example.org", "from": "a@b.example", "to": ["c@d.example"]}
    with_email = write(tmp_path, {"sinks": {"email": email}})
    config = load_alerts_config(
        {"RECONCILIATION_ALERTS_FILE": str(with_email), "RECONCILIATION_ALERT_WEBHOOK_URL": HOOK}
    )
    assert config is not None and config.sink_names == ("webhook", "email")
    with_webhook = write(tmp_path, {"sinks": {"webhook": {"url": "env:X"}}}, "both.json")
    with pytest.raises(AlertsConfigError) as caught:
        load_alerts_config(
            {
                "RECONCILIATION_ALERTS_FILE": str(with_webhook),
                "RECONCILIATION_ALERT_WEBHOOK_URL": HOOK,
            }
        )
    assert str(caught.value) == (
        f"RECONCILIATION_ALERT_WEBHOOK_URL and {with_webhook}'s $.sinks.webhook both name a "
        "webhook: keep one"
    )


def test_sinks_resolve_their_credentials_when_built() -> None:
    config = AlertsConfig(webhook_url="env:SLACK_HOOK", origin="alerts.json")
    (sink,) = config.sinks(CredentialResolver({"SLACK_HOOK": HOOK}), {})
    assert repr(sink) == "WebhookSink(hooks.slack.example)"
    with pytest.raises(CredentialError, match=r"^env:SLACK_HOOK: the environment variable"):
        config.sinks(CredentialResolver({}), {})
    with pytest.raises(AlertsConfigError) as caught:
        config.sinks(CredentialResolver({"SLACK_HOOK": "ftp://hooks.example/x"}), {})
    assert str(caught.value) == (
        "alerts.json: the webhook's env:SLACK_HOOK does not hold an https:// URL "
        "(plain http:// only to localhost or 127.0.0.1)"
    )
    hubspot = AlertsConfig(hubspot=True, origin="alerts.json")
    with pytest.raises(AlertsConfigError, match=r"RECONCILIATION_HUBSPOT_TOKEN is not set"):
        hubspot.sinks(CredentialResolver({}), {})


def test_the_customers_alerts_block() -> None:
    validator = jsonschema.Draft202012Validator(CUSTOMER_ALERTS_SCHEMA)
    block = {
        "email_to": ["csm@bookmarked.example"],
        "min_severity": {"default": "medium", "stale_record": "critical"},
        "muted": False,
    }
    assert not list(validator.iter_errors(block))
    wrong = {"email_to": ["not-an-email"], "min_severity": {"nope": "high"}, "loud": True}
    assert len(list(validator.iter_errors(wrong))) == 3
    settings = SimpleNamespace(
        customer_id="lincoln-usd",
        name="Lincoln Unified",
        environment="production",
        hubspot_company_id="555",
    )
    assert profile_from_settings(settings, block) == CustomerProfile(
        customer_id="lincoln-usd",
        name="Lincoln Unified",
        environment="production",
        hubspot_company_id="555",
        overrides=CustomerOverrides(
            min_severity={"default": "medium", "stale_record": "critical"},
            email_to=("csm@bookmarked.example",),
        ),
    )
    # once settings carry the block as `alerts`, it is read from there
    settings.alerts = {"muted": True}
    assert profile_from_settings(settings).overrides == CustomerOverrides(muted=True)
    del settings.alerts
    assert profile_from_settings(settings).overrides == CustomerOverrides()
