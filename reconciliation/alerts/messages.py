"""The words of an alert: one message per customer, or one digest, and HubSpot ticket drafts.

Built only from what `policy.CustomerAlert` holds (rule ids, counts by severity, run ids,
the run's one-line reason, which is counts only) and the customer's id, name and
environment from its settings. No finding, student, parent, name, email or sourcedId ever
reaches this module, so none can reach a message (a test scans every message the test
suite sends for the demo roster's names, emails and sourcedIds).

Every message has a plain-text form (email body, the webhook's `text`, HubSpot ticket
content) and Slack Block Kit `blocks` (mrkdwn, with `&`, `<` and `>` escaped).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciliation.alerts.policy import (
    SEVERITIES,
    CustomerAlert,
    CustomerProfile,
    Policy,
    RuleChange,
)
from reconciliation.credentials import redact

#: Slack's limits: a section's text, a header's text, blocks per message
SECTION_LIMIT = 3000
HEADER_LIMIT = 150
BLOCK_LIMIT = 50
#: the longest failure reason quoted (the first line of a failure, already redacted)
REASON_LIMIT = 300
#: HubSpot priority of a ticket by the most severe finding it is about
TICKET_PRIORITY = {"critical": "HIGH", "high": "MEDIUM", "medium": "LOW", "low": "LOW"}


@dataclass(frozen=True)
class TicketDraft:
    """One HubSpot ticket to create or update: one per customer and problem."""

    company_id: str
    key: str
    subject: str
    content: str
    priority: str


@dataclass(frozen=True)
class Message:
    kind: str  # "alert" | "reminder" | "digest"
    customer_ids: tuple[str, ...]
    subject: str
    text: str
    blocks: tuple[dict[str, Any], ...]
    #: the customer's own recipients (settings' $.alerts.email_to), besides the deployment's
    email_to: tuple[str, ...] = ()
    tickets: tuple[TicketDraft, ...] = ()
    #: why no ticket is filed although HubSpot is on (no hubspot_company_id)
    no_ticket_reason: str | None = None

    def payload(self) -> dict[str, Any]:
        """The JSON a Slack-compatible webhook takes."""
        return {"text": self.text, "blocks": list(self.blocks)}


def counts_text(counts: Mapping[str, int]) -> str:
    """'3 critical, 19 high', most severe first; 'none' when empty."""
    parts = [f"{counts[s]} {s}" for s in SEVERITIES if counts.get(s)]
    return ", ".join(parts) or "none"


def _delta_text(change: RuleChange) -> str:
    now, before = change.alerting(), change.alerting(change.previous)
    deltas = [
        f"{now.get(s, 0) - before.get(s, 0):+d} {s}"
        for s in SEVERITIES
        if now.get(s, 0) != before.get(s, 0)
    ]
    return ", ".join(deltas)


def rule_line(change: RuleChange, open_days: int | None = None, *, compare: bool = True) -> str:
    """`missing_data: 3 critical, 19 high (was 3 critical, 16 high): worsened, +3 high`;
    without `compare`, the counts alone."""
    now, before = change.alerting(), change.alerting(change.previous)
    line = f"{change.rule}: {counts_text(now)}"
    if compare:
        line += f" (was {counts_text(before)}): {change.change}"
    if compare and change.change in ("worsened", "improved"):
        line += f", {_delta_text(change)}"
    below = sum(change.counts.values()) - sum(now.values())
    if below:
        line += f"; {below} below its threshold ({change.threshold})"
    if open_days is not None:
        line += f"; critical findings open {open_days} days since the last alert"
    return line


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _name(profile: CustomerProfile) -> str:
    """'Riverside Unified (riverside-usd, production)'."""
    inside = ", ".join(p for p in (profile.customer_id, profile.environment) if p)
    return f"{profile.name} ({inside})" if profile.name else inside


def _headline(alert: CustomerAlert) -> str:
    return "; ".join(alert.reasons)


def _reason(alert: CustomerAlert) -> str | None:
    if not alert.error_line:
        return None
    text = redact(alert.error_line).strip()  # redacted where it was read; twice is cheap
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= REASON_LIMIT else line[: REASON_LIMIT - 3] + "..."


def _run_line(alert: CustomerAlert, policy: Policy) -> str:
    link = policy.run_link(alert.run_id)
    text = f"Dagster run {alert.run_id} ({alert.outcome}, finished {_when(alert.finished_at)})"
    return f"{text}: {link}" if link else text


def _body_lines(alert: CustomerAlert) -> list[str]:
    """The lines after the headline: reason, rules, changes since last night."""
    lines = []
    reason = _reason(alert)
    if reason:
        lines.append(f"Reason: {reason}")
    if alert.outcome != "ok":
        title = "Findings of the last successful run at or above the thresholds:"
    elif alert.previous_outcome is None:
        title = "Findings at or above the alert thresholds (first evaluation):"
    else:
        title = "Findings at or above the alert thresholds, tonight (was: last evaluation):"
    if alert.rules:
        lines.append(title)
        compare = alert.outcome == "ok"
        lines += [
            f"- {rule_line(c, alert.open_days.get(c.rule), compare=compare)}" for c in alert.rules
        ]
    if alert.below_threshold:
        lines.append(
            f"Other rules: {alert.below_threshold} findings below the thresholds (not alerted)."
        )
    if alert.outcome == "ok" and alert.previous_outcome is not None:
        lines.append(f"Since the last evaluation: {_change_summary(alert.rules)}.")
    return lines


def _change_summary(changes: Iterable[RuleChange]) -> str:
    tally: dict[str, int] = {}
    for change in changes:
        tally[change.change] = tally.get(change.change, 0) + 1
    order = ("new", "worsened", "improved", "unchanged", "resolved")
    parts = [f"{tally[k]} rule{'s' if tally[k] > 1 else ''} {k}" for k in order if k in tally]
    return ", ".join(parts) or "no rule at or above the thresholds"


def _mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _sections(lines: Sequence[str]) -> list[dict[str, Any]]:
    """mrkdwn sections of at most SECTION_LIMIT characters, whole lines each."""
    sections, current = [], ""
    for line in lines:
        line = _mrkdwn(line)[:SECTION_LIMIT]
        if current and len(current) + 1 + len(line) > SECTION_LIMIT:
            sections.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        sections.append(current)
    return [{"type": "section", "text": {"type": "mrkdwn", "text": s}} for s in sections]


def _blocks(header: str, lines: Sequence[str], links: Sequence[tuple[str, str]]) -> tuple:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header[:HEADER_LIMIT]}}
    ]
    blocks += _sections(lines)
    if links:
        context = " | ".join(f"<{url}|{_mrkdwn(label)}>" for label, url in links)
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    if len(blocks) > BLOCK_LIMIT:  # the plain `text` still has everything
        kept = blocks[: BLOCK_LIMIT - 1]
        note = f"... {len(blocks) - len(kept)} more blocks: see the message text"
        blocks = [*kept, {"type": "section", "text": {"type": "mrkdwn", "text": note}}]
    return tuple(blocks)


def customer_message(
    alert: CustomerAlert, profile: CustomerProfile, policy: Policy, *, hubspot: bool = False
) -> Message:
    """The message about one customer, and its ticket drafts when HubSpot is on."""
    word = "Roster reminder" if alert.kind == "reminder" else "Roster alert"
    subject = f"{word}: {_name(profile)}: {_headline(alert)}"
    lines = _body_lines(alert)
    run_line = _run_line(alert, policy)
    text = "\n".join([subject, run_line, *lines])
    link = policy.run_link(alert.run_id)
    blocks = _blocks(
        subject,
        [run_line if not link else f"Dagster run {alert.run_id} ({alert.outcome})", *lines],
        [(f"run {alert.run_id[:8]} in Dagster", link)] if link else [],
    )
    tickets: tuple[TicketDraft, ...] = ()
    no_ticket = None
    if hubspot and profile.hubspot_company_id:
        tickets = tuple(_ticket(alert, profile, problem, text) for problem in alert.problems)
    elif hubspot:
        no_ticket = f"{profile.customer_id} has no hubspot_company_id in its settings"
    return Message(
        kind=alert.kind,
        customer_ids=(alert.customer_id,),
        subject=subject,
        text=text,
        blocks=blocks,
        email_to=profile.overrides.email_to,
        tickets=tickets,
        no_ticket_reason=no_ticket,
    )


def _ticket(alert: CustomerAlert, profile: CustomerProfile, problem: str, text: str) -> TicketDraft:
    assert profile.hubspot_company_id is not None
    if problem == "run":
        subject = f"{_name(profile)}: reconciliation run {alert.outcome}"
        priority = "HIGH"
    else:
        change = next(c for c in alert.rules if c.rule == problem)
        counts = change.alerting()
        subject = f"{_name(profile)}: {problem}: {counts_text(counts)}"
        worst = next((s for s in SEVERITIES if counts.get(s)), "low")
        priority = TICKET_PRIORITY[worst]
    return TicketDraft(
        company_id=profile.hubspot_company_id,
        key=f"{profile.customer_id}:{problem}",
        subject=subject,
        content=text,
        priority=priority,
    )


def digest_message(
    alerts: Sequence[CustomerAlert], profiles: Mapping[str, CustomerProfile], policy: Policy
) -> Message:
    """One message for many customers: a line each, most urgent (failed, held) first."""
    order = {"failed": 0, "held": 1, "ok": 2}
    ranked = sorted(alerts, key=lambda a: (order.get(a.outcome, 3), a.customer_id))
    subject = f"Roster alerts: {len(alerts)} customers need attention"
    intro = (
        f"More than {policy.digest_when_more_than} customers at once, so one digest "
        "instead of one message each."
    )
    lines = [intro]
    for alert in ranked:
        profile = profiles.get(alert.customer_id) or CustomerProfile(alert.customer_id)
        line = f"- {_name(profile)}: {_headline(alert)}"
        reason = _reason(alert)
        if reason:
            line += f": {reason}"
        elif alert.rules:
            shown = [c for c in alert.rules if c.change in ("new", "worsened")] or alert.rules
            line += " (" + "; ".join(f"{c.rule} {counts_text(c.alerting())}" for c in shown) + ")"
        link = policy.run_link(alert.run_id)
        lines.append(f"{line}. Run {alert.run_id}" + (f": {link}" if link else ""))
    text = "\n".join([subject, *lines])
    return Message(
        kind="digest",
        customer_ids=tuple(a.customer_id for a in ranked),
        subject=subject,
        text=text,
        blocks=_blocks(subject, lines, []),
    )
