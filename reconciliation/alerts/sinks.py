"""Where a message goes: a Slack-compatible webhook, email over SMTP, a HubSpot ticket.

One small base class, `Sink.send(message, digested=...)`: each sink delivers or raises
`AlertDeliveryError` with a message that names the sink and the server's answer, never a
credential or the webhook's URL (a Slack webhook carries its token in the path: only its
host is shown).

- Webhook: POST `{"text", "blocks"}` as JSON; 429 and 5xx are retried with exponential
  backoff honouring `Retry-After`; a read timeout is not (the message may have been
  posted: one message twice is worse than an error the caller reports).
- Email: SMTP with STARTTLS, the server's certificate verified (the system's CAs, or the
  configured `ca_file`), then AUTH with the resolved password.
- HubSpot: one ticket per customer and problem, created or updated (`hubspot.py`).

When many customers alert at once the dispatcher sends one digest to the sinks that
`broadcast` (webhook, email) and still gives each customer's message to every sink with
`digested=True`: the email sink then writes only to the customer's own recipients, and
HubSpot files each customer's tickets.
"""

from __future__ import annotations

import smtplib
import ssl
from abc import ABC, abstractmethod
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from reconciliation.alerts.messages import Message
from reconciliation.credentials import CredentialResolver, Secret, redact

if TYPE_CHECKING:
    from reconciliation.alerts.config import AlertsConfig, EmailConfig
    from reconciliation.alerts.hubspot import HubSpotClient

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class AlertDeliveryError(Exception):
    """A message a sink could not deliver; the text names the sink, never a credential."""


class Sink(ABC):
    name: ClassVar[str]
    #: takes the digest instead of the customers' messages it summarises
    broadcast: ClassVar[bool] = True

    @abstractmethod
    def send(self, message: Message, *, digested: bool = False) -> str | None:
        """Deliver `message`; a short account of what was done, or None when this sink has
        nothing to do with it. `digested`: a customer's message already summarised in a
        digest. Raises AlertDeliveryError."""


class WebhookSink(Sink):
    """A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat, Teams' Slack
    endpoint)."""

    name = "webhook"

    def __init__(
        self,
        url: Secret,
        *,
        timeout: tuple[float, float] = (5.0, 15.0),
        retries: int = 4,
        backoff_factor: float = 0.5,
        retry_after_max: float = 30.0,
    ) -> None:
        self._url = url
        self.host = urlsplit(url.reveal()).hostname or "?"
        self.timeout = timeout
        retry = Retry(
            total=retries,
            read=0,
            backoff_factor=backoff_factor,
            backoff_max=retry_after_max,
            retry_after_max=retry_after_max,
            status_forcelist=RETRY_STATUSES,
            allowed_methods={"POST"},
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self._session = requests.Session()
        self._session.mount("http://", HTTPAdapter(max_retries=retry))
        self._session.mount("https://", HTTPAdapter(max_retries=retry))

    def __repr__(self) -> str:
        return f"WebhookSink({self.host})"

    def send(self, message: Message, *, digested: bool = False) -> str | None:
        if digested:
            return None
        shown = f"webhook at {self.host}"
        try:
            response = self._session.post(
                self._url.reveal(), json=message.payload(), timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise AlertDeliveryError(f"{shown}: no answer ({type(exc).__name__})") from None
        if not response.ok:
            retries = getattr(response.raw, "retries", None)
            after = f" after {len(retries.history)} retries" if retries and retries.history else ""
            answer = " ".join(response.text.split())[:200]
            raise AlertDeliveryError(
                redact(
                    f"{shown} answered {response.status_code} ({answer or response.reason}){after}"
                )
            )
        return f"posted to {self.host}"


class EmailSink(Sink):
    """Email over SMTP: STARTTLS with a verified certificate, then login."""

    name = "email"

    def __init__(self, config: EmailConfig, password: Secret | None = None) -> None:
        self.config = config
        self._password = password
        self._tls = ssl.create_default_context(
            cafile=str(config.ca_file) if config.ca_file else None
        )

    def __repr__(self) -> str:
        return f"EmailSink({self.config.host}:{self.config.port})"

    def recipients(self, message: Message, digested: bool) -> list[str]:
        if message.kind == "digest":
            return list(self.config.to)
        own = list(message.email_to)
        if digested:
            return own
        return [*self.config.to, *(r for r in own if r not in self.config.to)]

    def send(self, message: Message, *, digested: bool = False) -> str | None:
        recipients = self.recipients(message, digested)
        if not recipients:
            return None
        email = EmailMessage()
        email["Subject"] = message.subject
        email["From"] = self.config.sender
        email["To"] = ", ".join(recipients)
        email["Date"] = formatdate(localtime=False)
        email["Message-ID"] = make_msgid(domain=self.config.sender.rsplit("@", 1)[-1])
        email.set_content(message.text)
        config = self.config
        shown = f"email via {config.host}:{config.port}"
        try:
            with smtplib.SMTP(config.host, config.port, timeout=config.timeout) as smtp:
                smtp.ehlo()
                if config.starttls:
                    smtp.starttls(context=self._tls)
                    smtp.ehlo()
                if config.username and self._password is not None:
                    smtp.login(config.username, self._password.reveal())
                refused = smtp.send_message(email, to_addrs=recipients)
        except smtplib.SMTPNotSupportedError:
            raise AlertDeliveryError(
                f"{shown}: the server does not offer STARTTLS (needed before login)"
            ) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise AlertDeliveryError(
                redact(f"{shown}: login as {config.username} refused ({_smtp_answer(exc)})")
            ) from None
        except smtplib.SMTPRecipientsRefused:
            raise AlertDeliveryError(f"{shown}: every recipient was refused") from None
        except smtplib.SMTPResponseException as exc:
            raise AlertDeliveryError(redact(f"{shown}: {_smtp_answer(exc)}")) from None
        except ssl.SSLCertVerificationError as exc:
            raise AlertDeliveryError(
                f"{shown}: the server's certificate is not trusted ({exc.verify_message}); "
                "name the CA in $.sinks.email.ca_file if it is a private one"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise AlertDeliveryError(f"{shown}: cannot send ({type(exc).__name__})") from None
        delivered = len(recipients) - len(refused)
        note = f", {len(refused)} refused" if refused else ""
        return f"sent to {delivered} recipient{'s' if delivered != 1 else ''}{note}"


def _smtp_answer(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
    return f"{exc.smtp_code} {' '.join(text.split())[:200]}".strip()


class HubSpotSink(Sink):
    """One ticket per customer and problem on the customer's company, created or updated."""

    name = "hubspot"
    broadcast = False

    def __init__(self, client: HubSpotClient) -> None:
        self.client = client

    def __repr__(self) -> str:
        return f"HubSpotSink({self.client.base_url})"

    def send(self, message: Message, *, digested: bool = False) -> str | None:
        from reconciliation.alerts.hubspot import HubSpotError

        if message.kind == "digest":
            return None
        if message.no_ticket_reason:
            raise AlertDeliveryError(f"hubspot: no ticket: {message.no_ticket_reason}")
        done = []
        for draft in message.tickets:
            try:
                ticket = self.client.upsert_ticket(
                    company_id=draft.company_id,
                    key=draft.key,
                    subject=draft.subject,
                    content=draft.content,
                    priority=draft.priority,
                )
            except HubSpotError as exc:
                raise AlertDeliveryError(f"hubspot: {draft.key}: {exc}") from None
            done.append(f"ticket {ticket.id} {'created' if ticket.created else 'updated'}")
        return ", ".join(done) or None


def build_sinks(
    config: AlertsConfig, credentials: CredentialResolver, environ: Mapping[str, str]
) -> list[Sink]:
    """The configured sinks, their credentials resolved."""
    from reconciliation.alerts.config import (
        HUBSPOT_TOKEN_VARIABLE,
        AlertsConfigError,
        secure_webhook_url,
    )
    from reconciliation.alerts.hubspot import client_from_environment

    sinks: list[Sink] = []
    if config.webhook_url:
        url = credentials.value(config.webhook_url)
        if not secure_webhook_url(url.reveal()):
            raise AlertsConfigError(
                [
                    f"{config.origin}: the webhook's {url.reference} does not hold an https:// "
                    "URL (plain http:// only to localhost or 127.0.0.1)"
                ]
            )
        sinks.append(WebhookSink(url))
    if config.email:
        password = credentials.resolve(config.email.password) if config.email.password else None
        sinks.append(EmailSink(config.email, password))
    if config.hubspot:
        client = client_from_environment(credentials, environ)
        if client is None:
            raise AlertsConfigError(
                [f"{config.origin}: HubSpot tickets are on but {HUBSPOT_TOKEN_VARIABLE} is not set"]
            )
        sinks.append(HubSpotSink(client))
    return sinks
