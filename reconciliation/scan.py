"""Run the reconcile job for several customers through a Dagster instance.

One run per customer (the same runs the nightly schedule requests), one after the other,
each launched through the code location in its own process (`reconciliation.launch`), so
a failure, or a run worker killed for memory, stays with its customer, and every run can
be opened and re-executed in the UI. The outcome is read back from the run's own events:
the report's materialization metadata and the failure message, never from side files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dagster as dg

from reconciliation.credentials import redact
from reconciliation.vocabulary import ISSUE_IN_BOOKMARKED, ISSUE_IN_SOURCE

if TYPE_CHECKING:
    from reconciliation.launch import ReconcileLocation

TRIGGER_TAG = "reconciliation/trigger"
# the run's events are all stored (the UI shows them, stack traces included); the run
# worker's console gets only what would be fatal
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
# the events `_outcome` reads: the report, the checks and why the run failed
OUTCOME_EVENTS = {
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.ASSET_CHECK_EVALUATION,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.RUN_FAILURE,
    dg.DagsterEventType.ENGINE_EVENT,
}


@dataclass
class ScanOutcome:
    customer_id: str
    run_id: str  # "" when no run could be created
    succeeded: bool
    findings: int = 0
    new: int = 0
    persisting: int = 0
    resolved: int = 0
    issue_in_source: int = 0
    issue_in_bookmarked: int = 0
    failed_rule_checks: int = 0
    failed_quality_checks: int = 0
    report_folder: str | None = None
    error: str | None = None
    #: the run ended HELD (`reconciliation.hold`): an outcome, not a failure of the tool
    held: bool = False
    #: what the report skipped on its way (a damaged earlier report), one line each
    warnings: list[str] = field(default_factory=list)


def _metadata_value(entry: dg.MetadataValue) -> object:
    return getattr(entry, "value", entry)


def _first_line(message: str) -> str:
    return redact(message.strip().splitlines()[0]) if message.strip() else ""


def _outcome(
    customer_id: str, run: dg.DagsterRun, events: Sequence[dg.DagsterEvent]
) -> ScanOutcome:
    """The one place that turns a finished run and its events into a ScanOutcome."""
    from reconciliation.launch import crash_reason

    outcome = ScanOutcome(customer_id, run.run_id, run.status == dg.DagsterRunStatus.SUCCESS)
    failures: list[str] = []
    run_failure: str | None = None
    for event in events:
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            if materialization.asset_key != dg.AssetKey("mismatch_report"):
                continue
            meta = {k: _metadata_value(v) for k, v in materialization.metadata.items()}
            outcome.findings = int(meta.get("findings", 0))
            outcome.new = int(meta.get("new", 0))
            outcome.persisting = int(meta.get("persisting", 0))
            outcome.resolved = int(meta.get("resolved", 0))
            outcome.report_folder = str(meta.get("report_folder", ""))
            outcome.issue_in_source = int(meta.get(ISSUE_IN_SOURCE, 0))
            outcome.issue_in_bookmarked = int(meta.get(ISSUE_IN_BOOKMARKED, 0))
            outcome.warnings = [w for w in str(meta.get("report_warnings", "")).splitlines() if w]
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if not evaluation.passed:
                if evaluation.asset_key == dg.AssetKey("mismatch_report"):
                    outcome.failed_rule_checks += 1
                else:
                    outcome.failed_quality_checks += 1
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            user_failure = event.step_failure_data.user_failure_data
            message = (
                user_failure.description
                if user_failure and user_failure.description
                else (error.message if error else "step failed")
            )
            failures.append(_first_line(message))
            if user_failure and _metadata_value(user_failure.metadata.get("outcome", "")) == "held":
                outcome.held = True
        elif event.event_type == dg.DagsterEventType.RUN_FAILURE:
            run_failure = _first_line(event.message or "")
    if not outcome.succeeded and not failures:
        # no step failed: the run's process died, failed to start, or the run was canceled
        if run.status == dg.DagsterRunStatus.CANCELED:
            failures.append("the run was canceled")
        else:
            failures.append(crash_reason(events) or run_failure or "the run failed")
    # both extracts run side by side: when both fail, the engineer needs both reasons
    outcome.error = "; ".join(failures) or None
    return outcome


def _run_events(instance: dg.DagsterInstance, run_id: str) -> list[dg.DagsterEvent]:
    records = instance.get_records_for_run(run_id, of_type=OUTCOME_EVENTS).records
    return [r.event_log_entry.dagster_event for r in records if r.event_log_entry.dagster_event]


def run_customer(
    customer_id: str,
    location: ReconcileLocation,
    tags: Mapping[str, str] | None = None,
    *,
    another_follows: bool = False,
) -> ScanOutcome:
    """Launch one customer's run through the code location and wait for its end. When
    `another_follows` and runs are forked here, the next run's data-quality process starts
    importing Great Expectations while this one runs."""
    from reconciliation.launch import LaunchError
    from reconciliation.rules.data_quality import start_spare

    run = None
    try:
        run = location.create_run(
            customer_id,
            tags={TRIGGER_TAG: "cli", **(tags or {})},
            run_config=RUN_CONFIG,
        )
        location.launch(run)
        if another_follows and location.fork_runs:
            start_spare()
        finished, _died = location.watch(run.run_id)
    except KeyboardInterrupt:
        if run is not None:
            location.terminate(run.run_id)
        raise
    except LaunchError as exc:
        return ScanOutcome(customer_id, run.run_id if run else "", False, error=str(exc))
    return _outcome(customer_id, finished, _run_events(location.instance, run.run_id))


def _progress_line(outcome: ScanOutcome) -> str:
    if outcome.succeeded:
        return (
            f"ok, {outcome.findings} findings ({outcome.new} new, {outcome.resolved} resolved), "
            f"{outcome.failed_rule_checks} rule(s) and "
            f"{outcome.failed_quality_checks} data-quality check(s) failed"
        )
    run = f" (Dagster run {outcome.run_id[:8]})" if outcome.run_id else ""
    return f"{'held' if outcome.held else 'FAILED'}{run}: {outcome.error}"


def scan_customers(
    customers: Iterable[str],
    *,
    instance: dg.DagsterInstance | None = None,
    progress: Callable[[str], None] = lambda _line: None,
    tags: Mapping[str, str] | None = None,
) -> list[ScanOutcome]:
    """Run each customer in turn; `tags` are added to every run."""
    from reconciliation.defs.partitions import add_partitions, read_settings, run_tags
    from reconciliation.launch import LaunchError, open_location

    customers = list(customers)
    outcomes: list[ScanOutcome] = []
    settings = read_settings()
    with dg.DagsterInstance.get() if instance is None else nullcontext(instance) as active:
        # the partitions the customer_partitions sensor would add: no daemon needed
        add_partitions(active, customers)
        try:
            with open_location(active) as location:
                for index, customer_id in enumerate(customers, 1):
                    progress(f"[{index}/{len(customers)}] {customer_id}: running")
                    known = settings.customers.get(customer_id)
                    host = run_tags(known) if known is not None else {}
                    outcome = run_customer(
                        customer_id,
                        location,
                        {**host, **(tags or {})},
                        another_follows=index < len(customers),
                    )
                    progress(f"[{index}/{len(customers)}] {customer_id}: {_progress_line(outcome)}")
                    for warning in outcome.warnings:
                        progress(f"    WARNING {warning}")
                    outcomes.append(outcome)
        except LaunchError as exc:
            # the code location did not load: no customer can run, each says why
            for customer_id in customers[len(outcomes) :]:
                outcome = ScanOutcome(customer_id, "", False, error=str(exc))
                progress(f"{customer_id}: {_progress_line(outcome)}")
                outcomes.append(outcome)
    return outcomes


def alert_after_scan(
    instance: dg.DagsterInstance | None = None, echo: Callable[[str], None] = print
) -> bool:
    """`reconcile scan --alert`: evaluate and send exactly as the `nightly_alerts` sensor
    does (`alerts.night.alert_from_instance`: every enabled customer's newest run, the state
    in the instance), printing what was sent or why nothing. False when the alert settings
    are unusable or a delivery failed."""
    from reconciliation.alerts.config import AlertsConfigError
    from reconciliation.alerts.night import alert_from_instance
    from reconciliation.credentials import CredentialError

    with dg.DagsterInstance.get() if instance is None else nullcontext(instance) as active:
        try:
            outcome = alert_from_instance(active, echo=echo)
        except AlertsConfigError as exc:
            for problem in exc.problems:
                echo(f"alerts: ERROR {problem}")
            echo("alerts: nothing sent")
            return False
        except CredentialError as exc:
            echo(f"alerts: ERROR {redact(str(exc))}: nothing sent")
            return False
    return all(delivery.ok for delivery in outcome.deliveries)
