"""Where alerts go and when: the deployment's alerts file, and each customer's `alerts` block.

The deployment file is named by `RECONCILIATION_ALERTS_FILE` (JSON, or YAML by its
suffix), validated by JSON Schema; every error names the file and the JSON path:

    {
      "sinks": {
        "webhook": {"url": "env:SLACK_ALERTS_WEBHOOK"},
        "email": {"host": "smtp.example.org", "port": 587, "starttls": true,
                  "username": "alerts@bookmarked.example",
                  "password": "aws-secretsmanager:bookmarked/smtp#password",
                  "from": "alerts@bookmarked.example", "to": ["support@bookmarked.example"]},
        "hubspot": {"enabled": true}
      },
      "policy": {"min_severity": {"default": "high", "field_mismatch": "critical"},
                 "reminder_days": 7, "digest_when_more_than": 5,
                 "ui_base_url": "https://dagster.bookmarked.example"}
    }

`RECONCILIATION_ALERT_WEBHOOK_URL` alone (a URL or a credential reference) turns the
webhook on with the default policy. A webhook URL is a secret (Slack's carries its token
in the path): it is never shown, only resolved when a message goes out. HubSpot's token
is the deployment's `RECONCILIATION_HUBSPOT_TOKEN` (see `hubspot.py`).

A customer's settings may hold an `alerts` block (`CUSTOMER_ALERTS_SCHEMA`): its own
recipients, thresholds, or `muted`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciliation.alerts.policy import (
    DEFAULT_KEY,
    SEVERITIES,
    CustomerOverrides,
    CustomerProfile,
    Policy,
)
from reconciliation.credentials import REFERENCE_PATTERN, is_reference, urls_in
from reconciliation.rules import RULE_IDS

if TYPE_CHECKING:
    from reconciliation.alerts.sinks import Sink
    from reconciliation.credentials import CredentialResolver

ALERTS_FILE_VARIABLE = "RECONCILIATION_ALERTS_FILE"
WEBHOOK_URL_VARIABLE = "RECONCILIATION_ALERT_WEBHOOK_URL"
HUBSPOT_TOKEN_VARIABLE = "RECONCILIATION_HUBSPOT_TOKEN"  # = hubspot.TOKEN_VARIABLE

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
EMAIL = {"type": "string", "pattern": EMAIL_PATTERN}
SEVERITY = {"enum": list(SEVERITIES)}
#: rule id (or "default") -> the least severe severity that alerts
MIN_SEVERITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {DEFAULT_KEY: SEVERITY, **{rule: SEVERITY for rule in RULE_IDS}},
}
#: what the settings' `alerts` block may hold (the settings schema includes it)
CUSTOMER_ALERTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "this customer's alerts: extra recipients, thresholds, or muted",
    "additionalProperties": False,
    "properties": {
        "email_to": {"type": "array", "items": EMAIL, "uniqueItems": True},
        "min_severity": MIN_SEVERITY_SCHEMA,
        "muted": {"type": "boolean", "default": False},
    },
}
_LINK_URL_PATTERN = r"^https?://[^\s@]+$"
ALERTS_FILE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Bookmarked reconciliation: alerts",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"},
        "$comment": {"type": "string"},
        "sinks": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "webhook": {
                    "type": "object",
                    "required": ["url"],
                    "additionalProperties": False,
                    "properties": {"url": {"type": "string", "minLength": 1}},
                },
                "email": {
                    "type": "object",
                    "required": ["host", "from", "to"],
                    "additionalProperties": False,
                    "properties": {
                        "host": {"type": "string", "minLength": 1},
                        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                        "starttls": {"type": "boolean", "default": True},
                        "username": {"type": "string", "minLength": 1},
                        "password": {"type": "string", "pattern": REFERENCE_PATTERN},
                        "from": EMAIL,
                        "to": {"type": "array", "items": EMAIL, "minItems": 1, "uniqueItems": True},
                        "ca_file": {"type": "string", "minLength": 1},
                        "timeout": {"type": "number", "exclusiveMinimum": 0},
                    },
                    "dependentRequired": {"password": ["username"], "username": ["password"]},
                },
                "hubspot": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"enabled": {"type": "boolean", "default": True}},
                },
            },
        },
        "policy": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "min_severity": MIN_SEVERITY_SCHEMA,
                "reminder_days": {"type": "integer", "minimum": 1},
                "digest_when_more_than": {"type": "integer", "minimum": 0},
                "ui_base_url": {"type": "string", "pattern": _LINK_URL_PATTERN},
            },
        },
    },
}
_WEBHOOK_URL_PROBLEM = (
    "must be an https:// URL (plain http:// only to localhost or 127.0.0.1) or a credential "
    "reference (env:NAME or aws-secretsmanager:ID[#key])"
)


class AlertsConfigError(Exception):
    """Every problem of the alerts configuration, one line each: file, JSON path, message."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class EmailConfig:
    host: str
    sender: str
    to: tuple[str, ...]
    port: int = 587
    starttls: bool = True
    username: str | None = None
    password: str | None = None  # a credential reference
    ca_file: Path | None = None  # a private CA's certificates; default: the system's
    timeout: float = 30.0


@dataclass(frozen=True)
class AlertsConfig:
    policy: Policy = field(default_factory=Policy)
    webhook_url: str | None = None  # a URL or a credential reference; never shown
    email: EmailConfig | None = None
    hubspot: bool = False
    #: where it came from, for messages (the file, or the variable)
    origin: str = ""

    @property
    def sink_names(self) -> tuple[str, ...]:
        on = {"webhook": self.webhook_url, "email": self.email, "hubspot": self.hubspot}
        return tuple(name for name, configured in on.items() if configured)

    def sinks(
        self, credentials: CredentialResolver, environ: Mapping[str, str] | None = None
    ) -> list[Sink]:
        """The configured sinks, credentials resolved (raises CredentialError or
        AlertsConfigError when one cannot be)."""
        from reconciliation.alerts.sinks import build_sinks

        return build_sinks(self, credentials, os.environ if environ is None else environ)


def secure_webhook_url(url: str) -> bool:
    """https anywhere, http only to this machine (the tests' server, a local relay)."""
    import re

    from reconciliation.settings import SECURE_URL_PATTERN

    return bool(re.fullmatch(SECURE_URL_PATTERN, url)) and urls_in(url) == [url]


def webhook_url_problem(value: str) -> str | None:
    """What is wrong with a webhook setting (never repeating it), or None."""
    if is_reference(value) or secure_webhook_url(value):
        return None
    return _WEBHOOK_URL_PROBLEM


def _problems(file: Path, document: Any) -> list[str]:
    from reconciliation.settings import _schema_errors

    problems = []
    for error in _schema_errors(file, document, ALERTS_FILE_SCHEMA):
        message = error.message
        # jsonschema's message quotes the pattern: say what it means instead
        if repr(EMAIL_PATTERN) in message:
            message = "is not an email address"
        elif repr(_LINK_URL_PATTERN) in message:
            message = "must be an http:// or https:// URL (the Dagster UI, for links to runs)"
        problems.append(f"{error.file}: {error.where}: {message}")
    return problems


def _read_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AlertsConfigError(
            [f"{ALERTS_FILE_VARIABLE} names {path}, which does not exist"]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AlertsConfigError([f"{path}: cannot be read ({type(exc).__name__})"]) from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "$"
            problem = getattr(exc, "problem", None) or "not YAML"
            raise AlertsConfigError([f"{path}: {where}: invalid YAML: {problem}"]) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AlertsConfigError(
            [f"{path}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"]
        ) from None


def read_alerts_file(path: Path, environ: Mapping[str, str] | None = None) -> AlertsConfig:
    """The validated alerts file; AlertsConfigError lists every problem."""
    environ = os.environ if environ is None else environ
    path = Path(path)
    document = _read_document(path)
    problems = _problems(path, document)
    if problems:
        raise AlertsConfigError(problems)
    sinks = document.get("sinks") or {}
    webhook = sinks.get("webhook")
    if webhook is not None and webhook_url_problem(webhook["url"]):
        problems.append(f"{path}: $.sinks.webhook.url: {_WEBHOOK_URL_PROBLEM}")
    email = None
    if "email" in sinks:
        block = sinks["email"]
        if block.get("starttls", True) is False and "password" in block:
            problems.append(
                f"{path}: $.sinks.email.starttls: must be true when a password is set: "
                "the password and the messages would cross the network in clear"
            )
        ca_file = None
        if "ca_file" in block:
            ca_file = Path(block["ca_file"]).expanduser()
            ca_file = ca_file if ca_file.is_absolute() else (path.parent / ca_file).resolve()
            if not ca_file.is_file():
                problems.append(f"{path}: $.sinks.email.ca_file: no such file {ca_file}")
        email = EmailConfig(
            host=block["host"],
            port=block.get("port", 587),
            starttls=block.get("starttls", True),
            username=block.get("username"),
            password=block.get("password"),
            sender=block["from"],
            to=tuple(block["to"]),
            ca_file=ca_file,
            timeout=float(block.get("timeout", 30.0)),
        )
    hubspot = bool((sinks.get("hubspot") or {}).get("enabled", "hubspot" in sinks))
    if hubspot and not environ.get(HUBSPOT_TOKEN_VARIABLE, "").strip():
        problems.append(
            f"{path}: $.sinks.hubspot.enabled: HubSpot tickets need the deployment's token: "
            f"set {HUBSPOT_TOKEN_VARIABLE} to a credential reference"
        )
    if problems:
        raise AlertsConfigError(problems)
    policy_block = document.get("policy") or {}
    policy = Policy(
        min_severity=dict(policy_block.get("min_severity") or {}),
        reminder_days=policy_block.get("reminder_days", Policy.reminder_days),
        digest_when_more_than=policy_block.get(
            "digest_when_more_than", Policy.digest_when_more_than
        ),
        ui_base_url=policy_block.get("ui_base_url"),
    )
    return AlertsConfig(
        policy=policy,
        webhook_url=webhook["url"] if webhook else None,
        email=email,
        hubspot=hubspot,
        origin=str(path),
    )


def load_alerts_config(environ: Mapping[str, str] | None = None) -> AlertsConfig | None:
    """The deployment's alerts configuration, or None when alerts are off (neither
    `RECONCILIATION_ALERTS_FILE` nor `RECONCILIATION_ALERT_WEBHOOK_URL` is set)."""
    environ = os.environ if environ is None else environ
    file = environ.get(ALERTS_FILE_VARIABLE, "").strip()
    url = environ.get(WEBHOOK_URL_VARIABLE, "").strip()
    if url and webhook_url_problem(url):
        raise AlertsConfigError([f"{WEBHOOK_URL_VARIABLE}: {_WEBHOOK_URL_PROBLEM}"])
    if not file:
        return AlertsConfig(webhook_url=url, origin=WEBHOOK_URL_VARIABLE) if url else None
    config = read_alerts_file(Path(file), environ)
    if url and config.webhook_url:
        raise AlertsConfigError(
            [f"{WEBHOOK_URL_VARIABLE} and {file}'s $.sinks.webhook both name a webhook: keep one"]
        )
    return replace(config, webhook_url=url) if url else config


def customer_overrides(block: Mapping[str, Any] | None) -> CustomerOverrides:
    """A validated settings `alerts` block as overrides (an absent block: none)."""
    block = block or {}
    return CustomerOverrides(
        min_severity=dict(block.get("min_severity") or {}),
        email_to=tuple(block.get("email_to") or ()),
        muted=bool(block.get("muted", False)),
    )


def profile_from_settings(
    settings: Any, alerts: Mapping[str, Any] | None = None
) -> CustomerProfile:
    """A customer's profile for alerts from its `CustomerSettings`; `alerts` is its
    settings' `alerts` block (default: the settings' `alerts` attribute, if it has one)."""
    block = alerts if alerts is not None else getattr(settings, "alerts", None)
    return CustomerProfile(
        customer_id=settings.customer_id,
        name=settings.name,
        environment=settings.environment,
        hubspot_company_id=settings.hubspot_company_id,
        overrides=customer_overrides(block),
    )
