"""`send_alerts`: evaluate a night's runs, send what the policy says, return the new state.

The one implementation behind the alert sensor and `reconcile scan --alert`: both read
their finished runs into `CustomerResult`s, load the state they stored, call this, print
or log the lines it echoes, and store the state it returns.

A customer whose alert no sink delivered keeps its previous state, so the next
evaluation alerts again instead of deduplicating an alert nobody received. A
configuration that cannot be used (a credential that does not resolve, HubSpot on without
its token) raises before anything is sent, and the state stays as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconciliation.alerts.config import (
    ALERTS_FILE_VARIABLE,
    WEBHOOK_URL_VARIABLE,
    AlertsConfig,
)
from reconciliation.alerts.messages import Message, customer_message, digest_message
from reconciliation.alerts.policy import (
    CustomerProfile,
    CustomerResult,
    empty_state,
    evaluate,
)
from reconciliation.alerts.sinks import AlertDeliveryError, Sink
from reconciliation.credentials import CredentialResolver


@dataclass(frozen=True)
class Delivery:
    """One message to one sink: delivered, or why not."""

    sink: str
    kind: str  # "alert" | "reminder" | "digest"
    customer_ids: tuple[str, ...]
    ok: bool
    detail: str

    def line(self) -> str:
        who = (
            f"digest of {len(self.customer_ids)} customers"
            if self.kind == "digest"
            else f"{', '.join(self.customer_ids)} ({self.kind})"
        )
        return (
            f"alerts: {who} -> {self.sink}: {self.detail if self.ok else 'FAILED: ' + self.detail}"
        )


def send_alerts(
    results: Iterable[CustomerResult],
    state: Mapping[str, Any] | None,
    config: AlertsConfig | None,
    now: datetime,
    *,
    customers: Mapping[str, CustomerProfile] | None = None,
    credentials: CredentialResolver | None = None,
    environ: Mapping[str, str] | None = None,
    echo: Callable[[str], None] = print,
) -> tuple[list[Delivery], dict[str, Any]]:
    """Evaluate `results` against `state`, send the alerts, and return what was sent
    (every attempt, delivered or not) and the state to store.

    `customers`: each customer's profile (name, environment, HubSpot company, overrides
    from its settings); a customer without one is shown by its id with the deployment's
    policy. `echo` gets one line per delivery and per quiet customer (ids and counts only).
    """
    results = list(results)
    state = dict(state) if state else empty_state()
    if config is None:
        echo(f"alerts: off (set {ALERTS_FILE_VARIABLE} or {WEBHOOK_URL_VARIABLE})")
        return [], state
    if not config.sink_names:
        echo(f"alerts: {config.origin} turns on no sink (webhook, email, hubspot): nothing sent")
        return [], state
    profiles = dict(customers or {})
    for result in results:
        profiles.setdefault(result.customer_id, CustomerProfile(result.customer_id))
    evaluation = evaluate(
        results,
        state,
        config.policy,
        now,
        {customer_id: profile.overrides for customer_id, profile in profiles.items()},
    )
    if not evaluation.alerts:
        evaluated = f"alerts: nothing to send ({len(evaluation.quiet)} customers evaluated)"
        why = "; ".join(f"{customer}: {reason}" for customer, reason in evaluation.quiet.items())
        echo(f"{evaluated}: {why}" if why else evaluated)
        return [], evaluation.state
    sinks = config.sinks(credentials or CredentialResolver(), environ)
    messages = [
        customer_message(alert, profiles[alert.customer_id], config.policy, hubspot=config.hubspot)
        for alert in evaluation.alerts
    ]
    deliveries: list[Delivery] = []
    for sink in sinks:
        if evaluation.digest and sink.broadcast:
            deliveries += _deliver(
                sink, digest_message(evaluation.alerts, profiles, config.policy), digested=False
            )
        for message in messages:
            deliveries += _deliver(sink, message, digested=evaluation.digest)
    delivered = {c for d in deliveries if d.ok for c in d.customer_ids}
    new_state = evaluation.state
    previous = state.get("customers") or {}
    for delivery in deliveries:
        echo(delivery.line())
    for alert in evaluation.alerts:
        if alert.customer_id in delivered:
            continue
        echo(
            f"alerts: {alert.customer_id}: no sink delivered its {alert.kind}; "
            "it is sent again at the next evaluation"
        )
        if alert.customer_id in previous:
            new_state["customers"][alert.customer_id] = previous[alert.customer_id]
        else:
            new_state["customers"].pop(alert.customer_id, None)
    for customer, reason in evaluation.quiet.items():
        echo(f"alerts: {customer}: nothing sent: {reason}")
    return deliveries, new_state


def _deliver(sink: Sink, message: Message, *, digested: bool) -> list[Delivery]:
    try:
        detail = sink.send(message, digested=digested)
    except AlertDeliveryError as exc:
        return [Delivery(sink.name, message.kind, message.customer_ids, False, str(exc))]
    except Exception as exc:  # one sink's bug must not cost the other sinks' deliveries
        detail = f"{sink.name}: unexpected {type(exc).__name__}"  # its text may hold anything
        return [Delivery(sink.name, message.kind, message.customer_ids, False, detail)]
    if detail is None:
        return []
    return [Delivery(sink.name, message.kind, message.customer_ids, True, detail)]
