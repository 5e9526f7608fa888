"""Which alerts a night's runs deserve: a pure function of the runs, the state and the policy.

No Dagster, no I/O, no clock: the sensor and `reconcile scan --alert` pass the finished
runs (`CustomerResult`, counts only), the state they stored after the previous evaluation
(a JSON-serialisable dict kept in the Dagster instance) and `now`; `evaluate` returns the
alerts to send and the state to store. The same inputs always give the same answer.

The policy, per customer:

- A rule counts when it has findings at or above its severity threshold (default `high`;
  per rule in the deployment file, per customer in the customer's settings).
- Alert only on what is new or worse than at the previous evaluation ("last night"): a rule
  with more findings than before at some severity at or above its threshold (a rule that
  had none is new), or a run that turned failed or held (or changed between the two).
  Fewer findings, the same findings, or a run that succeeds again alert nobody.
- A reminder when a critical finding is still open `reminder_days` (default 7) after the
  last alert that carried it, and when a run stays failed or held as long.
- More than `digest_when_more_than` (default 5) customers to alert in one evaluation: one
  digest instead of one message each (a broken connection or a new rule version hits
  every customer at once, and fifty messages hide the one that matters).
- A customer whose run succeeds with nothing at or above the threshold leaves the state.
- A customer muted in its settings is evaluated and recorded, never alerted.

State (what the caller stores; `STATE_VERSION` changes if its shape does)::

    {"version": 1,
     "customers": {
       "<customer_id>": {
         "run_id": "...", "outcome": "ok" | "failed" | "held", "finished_at": "<ISO>",
         "rules": {"<rule_id>": {"<severity>": count, ...}},  # the last successful run's
                                                            # failed checks, all severities
         "outcome_alerted_at": "<ISO>",                     # failed or held: last alert
         "critical_alerted_at": {"<rule_id>": "<ISO>"}}}}   # last alert carrying the rule's
                                                            # critical findings
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

#: most severe first; the same order as `reconciliation.rules.base.SEVERITIES` (a test
#: compares them: this module must not import polars)
SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low")
OUTCOMES: tuple[str, ...] = ("ok", "failed", "held")
DEFAULT_MIN_SEVERITY = "high"
DEFAULT_REMINDER_DAYS = 7
DEFAULT_DIGEST_WHEN_MORE_THAN = 5
STATE_VERSION = 1
#: the key of `min_severity` that applies to every rule not named
DEFAULT_KEY = "default"


def severity_rank(severity: str) -> int:
    """0 for critical ... 3 for low; an unknown severity ranks below low."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


@dataclass(frozen=True)
class CustomerResult:
    """One customer's finished run, as the sensor reads it from the run's events.

    `rule_counts` holds the failed checks only: rule id -> severity -> findings (the check
    metadata's `severity.*` values). `error_line` is the one-line reason of a failed or
    held run, counts only (the run's failure description, redacted).
    """

    customer_id: str
    run_id: str
    outcome: str  # "ok" | "failed" | "held"
    finished_at: datetime
    rule_counts: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    error_line: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(
                f"{self.customer_id}: outcome {self.outcome!r} is not one of {', '.join(OUTCOMES)}"
            )
        for rule, counts in self.rule_counts.items():
            for severity, count in counts.items():
                if severity not in SEVERITIES or not isinstance(count, int) or count < 0:
                    raise ValueError(
                        f"{self.customer_id}: {rule}: {severity!r}={count!r} is not a count "
                        f"by severity ({', '.join(SEVERITIES)})"
                    )


def rule_counts_from_checks(
    checks: Iterable[tuple[str, bool, Mapping[str, Any]]],
) -> dict[str, dict[str, int]]:
    """`CustomerResult.rule_counts` from a run's rule checks: (check name, passed, metadata).

    A failed rule check carries `severity.<severity>` counts in its metadata (Dagster
    `MetadataValue`s or plain numbers); passed checks and disabled rules are left out.
    """
    counts: dict[str, dict[str, int]] = {}
    for name, passed, metadata in checks:
        if passed:
            continue
        by_severity = {
            key.removeprefix("severity."): int(getattr(value, "value", value))
            for key, value in metadata.items()
            if key.startswith("severity.")
        }
        counts[name] = {s: n for s, n in by_severity.items() if n > 0}
    return counts


@dataclass(frozen=True)
class CustomerOverrides:
    """The `alerts` block of a customer's settings (see `config.CUSTOMER_ALERTS_SCHEMA`)."""

    min_severity: Mapping[str, str] = field(default_factory=dict)
    email_to: tuple[str, ...] = ()
    muted: bool = False


@dataclass(frozen=True)
class CustomerProfile:
    """Who a customer is, for its messages: from its settings (no student data)."""

    customer_id: str
    name: str | None = None
    environment: str | None = None
    hubspot_company_id: str | None = None
    overrides: CustomerOverrides = field(default_factory=CustomerOverrides)


@dataclass(frozen=True)
class Policy:
    """The deployment's policy (the `policy` block of the alerts file)."""

    #: rule id (or "default") -> the least severe severity that alerts
    min_severity: Mapping[str, str] = field(default_factory=dict)
    reminder_days: int = DEFAULT_REMINDER_DAYS
    digest_when_more_than: int = DEFAULT_DIGEST_WHEN_MORE_THAN
    #: the Dagster UI, for links to runs (`{ui_base_url}/runs/{run_id}`); None: no link
    ui_base_url: str | None = None

    def threshold(self, rule: str, overrides: CustomerOverrides | None = None) -> str:
        """The customer's rule setting, else the customer's default, else the deployment's
        rule setting, else the deployment's default, else high."""
        for mapping in ((overrides.min_severity if overrides else {}), self.min_severity):
            if rule in mapping:
                return mapping[rule]
            if DEFAULT_KEY in mapping:
                return mapping[DEFAULT_KEY]
        return DEFAULT_MIN_SEVERITY

    def run_link(self, run_id: str) -> str | None:
        return f"{self.ui_base_url.rstrip('/')}/runs/{run_id}" if self.ui_base_url else None


@dataclass(frozen=True)
class RuleChange:
    """One rule of one customer: its findings tonight and at the previous evaluation."""

    rule: str
    threshold: str
    counts: Mapping[str, int]  # tonight, every severity
    previous: Mapping[str, int]  # last night, every severity

    def alerting(self, counts: Mapping[str, int] | None = None) -> dict[str, int]:
        """Counts at or above the threshold, most severe first (zeros left out)."""
        counts = self.counts if counts is None else counts
        limit = severity_rank(self.threshold)
        return {
            s: counts[s] for s in SEVERITIES if severity_rank(s) <= limit and counts.get(s, 0) > 0
        }

    @property
    def change(self) -> str:
        """new | worsened | unchanged | improved | resolved, at or above the threshold."""
        now, before = self.alerting(), self.alerting(self.previous)
        if now and not before:
            return "new"
        if before and not now:
            return "resolved"
        if any(now.get(s, 0) > before.get(s, 0) for s in now):
            return "worsened"
        return "unchanged" if now == before else "improved"

    @property
    def critical(self) -> int:
        return self.counts.get("critical", 0)


@dataclass(frozen=True)
class CustomerAlert:
    """What one customer's message says; counts, rule ids and run ids only."""

    customer_id: str
    run_id: str
    kind: str  # "alert" (something new or worse) | "reminder" (still open)
    outcome: str
    previous_outcome: str | None  # None: the customer's first evaluation
    finished_at: datetime
    #: why this customer is alerted, one short phrase each
    reasons: tuple[str, ...]
    #: rules at or above their threshold tonight or last night, most severe first
    rules: tuple[RuleChange, ...] = ()
    #: findings of the rules with nothing at or above their thresholds (counted, not listed)
    below_threshold: int = 0
    error_line: str | None = None
    #: reminders: the rules whose critical findings are still open, and for how long
    open_days: Mapping[str, int] = field(default_factory=dict)

    @property
    def problems(self) -> tuple[str, ...]:
        """The problems this alert is about, one HubSpot ticket each: 'run' for a failed or
        held run, else each rule that is new, worse or reminded."""
        if self.outcome != "ok":
            return ("run",)
        return tuple(
            change.rule
            for change in self.rules
            if change.change in ("new", "worsened") or change.rule in self.open_days
        )


@dataclass(frozen=True)
class Evaluation:
    alerts: tuple[CustomerAlert, ...]
    digest: bool  # more customers than the policy's limit: one digest message
    #: customer id -> why it gets no alert tonight
    quiet: Mapping[str, str]
    state: dict[str, Any]


def empty_state() -> dict[str, Any]:
    return {"version": STATE_VERSION, "customers": {}}


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _counts(rules: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """A JSON-ready copy without zero counts or empty rules, in a stable order."""
    copy = {}
    for rule in sorted(rules):
        kept = {s: int(rules[rule][s]) for s in SEVERITIES if rules[rule].get(s, 0) > 0}
        if kept:
            copy[rule] = kept
    return copy


def _sort_key(change: RuleChange) -> tuple[Any, ...]:
    counts = change.counts or change.previous
    return (
        tuple(-counts.get(s, 0) for s in SEVERITIES),
        change.rule,
    )


def evaluate(
    results: Iterable[CustomerResult],
    state: Mapping[str, Any] | None,
    policy: Policy,
    now: datetime,
    overrides: Mapping[str, CustomerOverrides] | None = None,
) -> Evaluation:
    """The alerts tonight's `results` deserve after `state`, and the state to store.

    Customers without a result keep their state; a result whose run was already evaluated
    (the same run id in the state) changes nothing, so a sensor may see a run twice.
    """
    previous_customers = dict((state or {}).get("customers") or {})
    if state and state.get("version", STATE_VERSION) != STATE_VERSION:
        previous_customers = {}  # an older shape: start again (alerts once, then dedup)
    customers = dict(previous_customers)
    overrides = overrides or {}
    alerts: list[CustomerAlert] = []
    quiet: dict[str, str] = {}
    latest: dict[str, CustomerResult] = {}
    for result in results:  # one result per customer: the newest run
        kept = latest.get(result.customer_id)
        if kept is None or result.finished_at >= kept.finished_at:
            latest[result.customer_id] = result
    for customer_id in sorted(latest):
        result = latest[customer_id]
        before = previous_customers.get(customer_id)
        if before and before.get("run_id") == result.run_id:
            quiet[customer_id] = f"run {result.run_id} was already evaluated"
            continue
        alert, entry = _evaluate_customer(result, before, policy, now, overrides.get(customer_id))
        if entry is None:
            customers.pop(customer_id, None)
        else:
            customers[customer_id] = entry
        muted = overrides.get(customer_id, CustomerOverrides()).muted
        if alert is None:
            quiet[customer_id] = _why_quiet(result, before, entry is None)
        elif muted:
            quiet[customer_id] = f"muted in its settings ($.alerts.muted) ({alert.reasons[0]})"
        else:
            alerts.append(alert)
    return Evaluation(
        alerts=tuple(alerts),
        digest=len(alerts) > policy.digest_when_more_than,
        quiet=quiet,
        state={"version": STATE_VERSION, "customers": dict(sorted(customers.items()))},
    )


def _why_quiet(result: CustomerResult, before: Mapping[str, Any] | None, cleared: bool) -> str:
    if result.outcome != "ok":
        return f"run still {result.outcome}, already alerted"
    was = before.get("outcome", "ok") if before else "ok"
    again = f"run succeeded again (was {was}), " if was != "ok" else ""
    if cleared:
        recovered = "recovered: " if before else ""
        return f"{again or recovered}nothing at or above the alert thresholds"
    return f"{again}nothing new or worse since the last evaluation"


def _evaluate_customer(
    result: CustomerResult,
    before: Mapping[str, Any] | None,
    policy: Policy,
    now: datetime,
    overrides: CustomerOverrides | None,
) -> tuple[CustomerAlert | None, dict[str, Any] | None]:
    """This customer's alert (or None) and its new state entry (None: leaves the state)."""
    before = before or {}
    previous_outcome = before.get("outcome") if before else None
    previous_rules = before.get("rules") or {}
    # a failed or held run has no checks: its findings are the last successful run's
    rules_now = _counts(result.rule_counts) if result.outcome == "ok" else previous_rules
    changes = tuple(
        sorted(
            (
                RuleChange(
                    rule,
                    policy.threshold(rule, overrides),
                    rules_now.get(rule, {}),
                    previous_rules.get(rule, {}),
                )
                for rule in set(rules_now) | set(previous_rules)
            ),
            key=_sort_key,
        )
    )
    listed = tuple(c for c in changes if c.alerting() or c.alerting(c.previous))
    below = sum(sum(c.counts.values()) for c in changes if c not in listed)
    entry: dict[str, Any] = {
        "run_id": result.run_id,
        "outcome": result.outcome,
        "finished_at": _iso(result.finished_at),
        "rules": rules_now,
    }
    reasons: list[str] = []

    def alert(kind: str, **extra: Any) -> CustomerAlert:
        """This customer's alert with the reasons gathered so far."""
        return CustomerAlert(
            customer_id=result.customer_id,
            run_id=result.run_id,
            kind=kind,
            outcome=result.outcome,
            previous_outcome=previous_outcome,
            finished_at=result.finished_at,
            reasons=tuple(reasons),
            rules=listed,
            below_threshold=below,
            **extra,
        )

    open_days: dict[str, int] = {}
    reminder_after = timedelta(days=policy.reminder_days)

    if result.outcome != "ok":
        alerted_at = _when(before.get("outcome_alerted_at"))
        if previous_outcome != result.outcome:
            reasons.append(f"run {result.outcome}")
            alerted_at = now
        elif alerted_at is None:
            alerted_at = now  # a state written without the time: the clock starts now
        elif now - alerted_at >= reminder_after:
            reasons.append(f"run still {result.outcome} after {(now - alerted_at).days} days")
            alerted_at = now
        entry["outcome_alerted_at"] = _iso(alerted_at)
        entry["critical_alerted_at"] = dict(before.get("critical_alerted_at") or {})
        if not reasons:
            return None, entry
        kind = "alert" if previous_outcome != result.outcome else "reminder"
        return alert(kind, error_line=result.error_line), entry

    if not any(c.alerting() for c in changes):
        return None, None  # recovered, or nothing that alerts: leave the state

    for change in listed:
        if change.change in ("new", "worsened"):
            reasons.append(f"{change.rule} {change.change}")
    previous_alerts = before.get("critical_alerted_at") or {}
    critical_alerted_at: dict[str, str] = {}
    for change in listed:
        if not change.critical or "critical" not in change.alerting():
            continue
        last = _when(previous_alerts.get(change.rule))
        if last is not None and now - last >= reminder_after:
            open_days[change.rule] = (now - last).days
        critical_alerted_at[change.rule] = _iso(last or now)
    kind = "alert" if reasons else "reminder"
    reasons += [
        f"{rule} critical findings still open after {days} days" for rule, days in open_days.items()
    ]
    if reasons:  # this message carries every critical rule listed: their clocks restart
        critical_alerted_at = dict.fromkeys(critical_alerted_at, _iso(now))
    entry["critical_alerted_at"] = critical_alerted_at
    if not reasons:
        return None, entry
    return alert(kind, open_days=open_days), entry
