"""The fleet view as a Dagster asset: every customer's latest results, worst first.

`fleet_summary` is unpartitioned and has no dependency on the per-customer assets, on
purpose: it summarizes what the report folder and the instance hold *now*, whatever ran
(the nightly schedule, `reconcile scan`, a re-execution from the launchpad), and a
dependency on a partitioned asset would make it wait for, or be marked stale by, every
partition. A customer whose run failed or was held wrote no new report; the instance says
so (its last finished `reconcile_customer` run per partition, and the hold tag).

It is refreshed by the `fleet_view` job: the `fleet_refresh` schedule runs it at 06:00
America/New_York, three hours after the nightly scan starts (stopped by default, like the
scan), and it can be materialized from the UI at any time. Each materialization writes
`<reports>/_fleet/<stamp>.csv` and `_fleet/latest.csv` (ids and counts only) and records
`findings.<customer_id>` as numeric metadata, so the asset's plots show each customer's
trend.

polars and the report code are imported when the asset runs: the code location must load
fast.
"""

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster import AssetExecutionContext

from reconciliation.defs.assets import GROUP, HOLD_TAG
from reconciliation.defs.jobs import RECONCILE_JOB
from reconciliation.defs.resources import ReconciliationResource

if TYPE_CHECKING:
    from reconciliation.fleet import LastRun
    from reconciliation.storage import Location

FLEET_JOB = "fleet_view"
#: the finished runs a status is read from (a run still going says nothing yet)
_FINISHED = [
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
]


def last_runs(instance: dg.DagsterInstance, customers: Iterable[str]) -> "dict[str, LastRun]":
    """Each customer's last finished `reconcile_customer` run: its status, the hold tag and,
    for a failed run, the one-line reason `reconcile scan` prints (redacted)."""
    from reconciliation.fleet import LastRun
    from reconciliation.scan import _outcome, _run_events  # the one reader of run outcomes

    runs: dict[str, LastRun] = {}
    for customer in customers:
        records = instance.get_run_records(
            dg.RunsFilter(
                job_name=RECONCILE_JOB,
                tags={"dagster/partition": customer},
                statuses=_FINISHED,
            ),
            limit=1,
        )
        if not records:
            continue
        record = records[0]
        run = record.dagster_run
        started = record.start_time
        held = run.tags.get(HOLD_TAG) == "held"
        error = None
        if run.status != dg.DagsterRunStatus.SUCCESS:
            outcome = _outcome(customer, run, _run_events(instance, run.run_id))
            held = held or outcome.held
            error = outcome.error
        runs[customer] = LastRun(
            run_id=run.run_id,
            status=run.status.value,
            started_at=(
                datetime.fromtimestamp(started, UTC) if started else record.create_timestamp
            ),
            held=held,
            error=error,
        )
    return runs


def _settings_folder(reconciliation: ReconciliationResource) -> "Location":
    from reconciliation.paths import settings_dir
    from reconciliation.storage import location

    if reconciliation.settings_dir:
        return location(reconciliation.settings_dir)
    return settings_dir()


@dg.asset(group_name=GROUP, kinds={"csv"})
def fleet_summary(
    context: AssetExecutionContext, reconciliation: ReconciliationResource
) -> dg.MaterializeResult:
    """Every enabled customer's latest results, ranked: failed and held first, then by the
    worst open finding. Counts only (no student data); a CSV beside the reports."""
    from reconciliation.fleet import (
        FLEET_FOLDER,
        fleet_markdown,
        fleet_rule_counts,
        fleet_table,
        fleet_totals,
        write_fleet_csv,
    )
    from reconciliation.reports import counts_table, report_write_error, run_stamp
    from reconciliation.settings import load_settings

    now = datetime.now(UTC)
    settings = load_settings(_settings_folder(reconciliation), sources=False)
    if settings.errors:
        # file names only: the messages are for `reconcile settings validate`
        context.log.warning(
            "settings left out of the fleet view (run `reconcile settings validate`): "
            + ", ".join(sorted({Path(error.file).name for error in settings.errors}))
        )
    customers = sorted(c for c, s in settings.customers.items() if s.enabled)
    reports = reconciliation.report_folder()
    table = fleet_table(settings, reports, last_runs(context.instance, customers), now)
    folder = reports / FLEET_FOLDER
    csv = folder / f"{run_stamp(now)}.csv"
    for path in (csv, folder / "latest.csv"):
        try:
            write_fleet_csv(table, path)
        except OSError as exc:
            raise dg.Failure(description=str(report_write_error(exc, path))) from None
    totals = fleet_totals(table)
    context.log.info(", ".join(f"{n} {what}" for what, n in totals.items()) + f"; written to {csv}")
    metadata: dict[str, Any] = {
        "fleet": dg.MetadataValue.md(fleet_markdown(table)),
        "counts_by_rule": dg.MetadataValue.md(
            counts_table({"by_rule_status": fleet_rule_counts(settings, reports, now)})
        ),
        "dagster/row_count": dg.MetadataValue.int(table.height),
        **{what: dg.MetadataValue.int(n) for what, n in totals.items()},
        "csv": dg.MetadataValue.path(str(csv)),
        **{
            f"findings.{customer}": dg.MetadataValue.int(findings)
            for customer, findings in table.select("customer_id", "findings").iter_rows()
        },
    }
    return dg.MaterializeResult(metadata=metadata)


fleet_view = dg.define_asset_job(
    FLEET_JOB,
    selection=dg.AssetSelection.assets(fleet_summary),
    description="Summarize every customer's latest results (the fleet view): a ranked table "
    "in the UI and a CSV beside the reports.",
    executor_def=dg.in_process_executor,
)
