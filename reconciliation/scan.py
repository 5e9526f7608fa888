"""Run the reconcile job for several customers through a Dagster instance.

One run per customer (the same runs the nightly schedule requests), one after the other,
so a failure stays with its customer. The outcome is read back from the run's own events:
the report's materialization metadata and the failure message, never from side files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass

import dagster as dg

from reconciliation.credentials import redact
from reconciliation.vocabulary import ISSUE_IN_BOOKMARKED, ISSUE_IN_SOURCE


@dataclass
class ScanOutcome:
    customer_id: str
    run_id: str
    succeeded: bool
    findings: int = 0
    new: int = 0
    resolved: int = 0
    issue_in_source: int = 0
    issue_in_bookmarked: int = 0
    failed_rule_checks: int = 0
    failed_quality_checks: int = 0
    report_folder: str | None = None
    error: str | None = None


def _metadata_value(entry: dg.MetadataValue) -> object:
    return getattr(entry, "value", entry)


def _outcome(customer_id: str, result: dg.JobExecutionResult) -> ScanOutcome:
    outcome = ScanOutcome(customer_id, result.run_id, result.success)
    failures: list[str] = []
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            if materialization.asset_key != dg.AssetKey("mismatch_report"):
                continue
            meta = {k: _metadata_value(v) for k, v in materialization.metadata.items()}
            outcome.findings = int(meta.get("findings", 0))
            outcome.new = int(meta.get("new", 0))
            outcome.resolved = int(meta.get("resolved", 0))
            outcome.report_folder = str(meta.get("report_folder", ""))
            outcome.issue_in_source = sum(
                int(v) for k, v in meta.items() if k.endswith(f".{ISSUE_IN_SOURCE}")
            )
            outcome.issue_in_bookmarked = sum(
                int(v) for k, v in meta.items() if k.endswith(f".{ISSUE_IN_BOOKMARKED}")
            )
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
            failures.append(redact(message.strip().splitlines()[0]))
    # both extracts run side by side: when both fail, the engineer needs both reasons
    outcome.error = "; ".join(failures) or None
    return outcome


def run_customer(
    customer_id: str, instance: dg.DagsterInstance, tags: dict[str, str] | None = None
) -> ScanOutcome:
    from reconciliation.definitions import reconcile_customer_job

    result = dg.execute_job(
        dg.reconstructable(reconcile_customer_job),
        instance=instance,
        # the run's events are all stored (the UI shows them, stack traces included); the
        # terminal gets only our progress lines, which carry a failure's message
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        tags={"dagster/partition": customer_id, "reconciliation/trigger": "cli", **(tags or {})},
    )
    return _outcome(customer_id, result)


def scan_customers(
    customers: Iterable[str],
    *,
    instance: dg.DagsterInstance | None = None,
    progress: Callable[[str], None] = lambda _line: None,
) -> list[ScanOutcome]:
    customers = list(customers)
    outcomes = []
    with dg.DagsterInstance.get() if instance is None else nullcontext(instance) as active:
        for index, customer_id in enumerate(customers, 1):
            progress(f"[{index}/{len(customers)}] {customer_id}: running")
            outcome = run_customer(customer_id, active)
            if outcome.succeeded:
                progress(
                    f"[{index}/{len(customers)}] {customer_id}: ok, {outcome.findings} findings "
                    f"({outcome.new} new, {outcome.resolved} resolved), "
                    f"{outcome.failed_rule_checks} rule(s) and "
                    f"{outcome.failed_quality_checks} data-quality check(s) failed"
                )
            else:
                progress(
                    f"[{index}/{len(customers)}] {customer_id}: FAILED (Dagster run "
                    f"{outcome.run_id[:8]}): {outcome.error}"
                )
            outcomes.append(outcome)
    return outcomes
