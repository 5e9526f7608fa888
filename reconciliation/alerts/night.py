"""A night's alerts from a Dagster instance: the one path of the sensor and `scan --alert`.

`alert_from_instance` reads each enabled customer's newest finished `reconcile_customer`
run (status, the hold tag, the rule checks' `severity.*` counts), turns them into
`CustomerResult`s, loads the policy state stored in the instance, calls `send_alerts` and
stores the state it returns. The state lives in the instance's key-value store
(`run_storage.get_cursor_values` / `set_cursor_values`, the `kvs` table of SQLite and
PostgreSQL storage alike), never in local files, so every process on one instance (the
daemon's sensor, `reconcile scan --alert` on another machine) shares it.

Reading the newest run per customer instead of "runs since a cursor" keeps it idempotent:
a run already evaluated changes nothing (its id is in the state), and a customer whose
alert no sink delivered keeps its old state and is alerted from the same run next time.

What reaches an alert is ids and counts only: a failed run's reason is its step and error
class (a connector's message may quote a record's sourcedId, so it is not copied), a held
run's reason is the hold's summary, which is counts only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import dagster as dg

from reconciliation.alerts.policy import CustomerResult, rule_counts_from_checks

if TYPE_CHECKING:
    from reconciliation.alerts.send import Delivery
    from reconciliation.settings import SettingsFolder

#: the instance key-value entry holding the policy state (JSON)
STATE_KEY = "reconciliation/alerts/state"
RECONCILE_JOB = "reconcile_customer"  # = defs.jobs.RECONCILE_JOB (not imported: light)
REPORT_ASSET = dg.AssetKey("mismatch_report")
HOLD_TAG = "reconciliation/outcome"  # = defs.assets.HOLD_TAG
PARTITION_TAG = "dagster/partition"
FINISHED = [
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
]
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
#: what a failed step's error class says, in words; other classes are named as they are
_ERROR_WORDS = {
    "SourceDataError": "bad input in the data read",
    "IncompleteReadError": "an incomplete read",
    "OneRosterApiError": "the SIS API refused or kept failing",
    "ConnectorError": "a connection or read failed",
    "CredentialError": "a credential did not resolve",
    "KeyError": "the customer's settings are missing or invalid",
}
_HELD = re.compile(r"^HELD [^:]+: (?P<summary>.*?)\. No findings were reported")


def load_state(instance: dg.DagsterInstance) -> dict[str, Any] | None:
    """The policy state stored by the last evaluation on this instance, or None."""
    text = instance.run_storage.get_cursor_values({STATE_KEY}).get(STATE_KEY)
    if not text:
        return None
    try:
        state = json.loads(text)
    except json.JSONDecodeError:
        return None  # a damaged entry: start again (alerts once, then dedup)
    return state if isinstance(state, dict) else None


def store_state(instance: dg.DagsterInstance, state: Mapping[str, Any]) -> None:
    instance.run_storage.set_cursor_values({STATE_KEY: json.dumps(state, sort_keys=True)})


def _value(entry: Any) -> Any:
    return getattr(entry, "value", entry)


def _error_line(run: dg.DagsterRun, instance: dg.DagsterInstance) -> tuple[bool, str]:
    """(held, reason) of a run that did not succeed: step and error class, or the hold's
    counts, or why the run ended without a failed step; never a connector's message."""
    from reconciliation.launch import crash_reason

    records = instance.get_records_for_run(
        run.run_id,
        of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.ENGINE_EVENT},
    ).records
    events = [r.event_log_entry.dagster_event for r in records if r.event_log_entry.dagster_event]
    held = run.tags.get(HOLD_TAG) == "held"
    reasons: list[str] = []
    for event in events:
        if event.event_type != dg.DagsterEventType.STEP_FAILURE:
            continue
        data = event.step_failure_data
        user = data.user_failure_data
        description = (user.description or "") if user else ""
        if user and _value(user.metadata.get("outcome", "")) == "held":
            held = True
            found = _HELD.match(description)
            reasons.append(f"held: {found.group('summary')}" if found else "held")
            continue
        error_type = _value(user.metadata.get("error_type", "")) if user else ""
        error_type = str(error_type or (data.error.cls_name if data.error else "") or "error")
        words = _ERROR_WORDS.get(error_type, error_type)
        reasons.append(f"{event.step_key} failed: {words}")
    if not reasons:
        if run.status == dg.DagsterRunStatus.CANCELED:
            reasons.append("the run was canceled")
        else:
            reasons.append(crash_reason(events) or "the run failed before any step failed")
    return held, "; ".join(reasons)


def customer_result(instance: dg.DagsterInstance, customer_id: str, record: Any) -> CustomerResult:
    """One finished run (a `RunRecord`) as the policy reads it."""
    run = record.dagster_run
    finished = record.end_time or record.update_timestamp.timestamp()
    finished_at = datetime.fromtimestamp(finished, UTC)
    if run.status == dg.DagsterRunStatus.SUCCESS:
        records = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        checks = []
        for entry in records:
            evaluation = entry.event_log_entry.dagster_event.event_specific_data
            if evaluation.asset_key == REPORT_ASSET:  # the rules; data-quality checks apart
                checks.append((evaluation.check_name, evaluation.passed, evaluation.metadata))
        return CustomerResult(
            customer_id, run.run_id, "ok", finished_at, rule_counts_from_checks(checks)
        )
    held, reason = _error_line(run, instance)
    return CustomerResult(
        customer_id, run.run_id, "held" if held else "failed", finished_at, error_line=reason
    )


def latest_results(instance: dg.DagsterInstance, customers: Iterable[str]) -> list[CustomerResult]:
    """Each customer's newest finished run; customers never run are left out."""
    results = []
    for customer in customers:
        records = instance.get_run_records(
            dg.RunsFilter(
                job_name=RECONCILE_JOB, tags={PARTITION_TAG: customer}, statuses=FINISHED
            ),
            limit=1,
        )
        if records:
            results.append(customer_result(instance, customer, records[0]))
    return results


def runs_in_flight(instance: dg.DagsterInstance) -> int:
    """`reconcile_customer` runs queued or running: the night is not over while any is."""
    return len(
        instance.get_run_ids(dg.RunsFilter(job_name=RECONCILE_JOB, statuses=IN_FLIGHT), limit=1000)
    )


def newest_finish(instance: dg.DagsterInstance) -> float | None:
    """When the newest finished `reconcile_customer` run last changed (a POSIX time)."""
    records = instance.get_run_records(
        dg.RunsFilter(job_name=RECONCILE_JOB, statuses=FINISHED),
        limit=1,
        order_by="update_timestamp",
    )
    return records[0].update_timestamp.timestamp() if records else None


@dataclass(frozen=True)
class AlertRound:
    """One evaluation: what was sent (every attempt) and how many customers were read."""

    deliveries: list[Delivery]
    customers: int
    results: int


def alert_from_instance(
    instance: dg.DagsterInstance,
    *,
    now: datetime | None = None,
    settings: SettingsFolder | None = None,
    customers: Iterable[str] | None = None,
    environ: Mapping[str, str] | None = None,
    echo: Callable[[str], None] = print,
) -> AlertRound:
    """Evaluate the newest finished run of every enabled customer (or `customers`) and send
    what the policy says; the state is read from and written back to the instance.

    Raises `AlertsConfigError` (the alerts file is wrong) or a credential error before
    anything is sent; the stored state is then left as it was."""
    from reconciliation.alerts.config import load_alerts_config, profile_from_settings
    from reconciliation.alerts.send import send_alerts
    from reconciliation.defs.partitions import enabled_customers, read_settings

    now = now or datetime.now(UTC)
    settings = settings if settings is not None else read_settings()
    chosen = list(customers) if customers is not None else enabled_customers(settings)
    config = load_alerts_config(environ)
    results = latest_results(instance, chosen) if config is not None else []
    profiles = {
        c: profile_from_settings(settings.customers[c]) for c in chosen if c in settings.customers
    }
    deliveries, state = send_alerts(
        results,
        load_state(instance),
        config,
        now,
        customers=profiles,
        environ=environ,
        echo=echo,
    )
    if config is not None:
        store_state(instance, state)
    return AlertRound(deliveries, len(chosen), len(results))
