"""Jobs. One run per customer partition, in process: the steps of one customer are small
and share their inputs, so a process per step would cost more than the work (and the
Kubernetes deployment runs one pod per run, as Dagster recommends for this shape)."""

from __future__ import annotations

import dagster as dg

from reconciliation.defs.assets import bookmarked_roster, mismatch_report, source_roster

RECONCILE_JOB = "reconcile_customer"

reconcile_customer = dg.define_asset_job(
    RECONCILE_JOB,
    selection=dg.AssetSelection.assets(source_roster, bookmarked_roster, mismatch_report),
    description="Extract one customer's SIS and Bookmarked rosters, run every diagnostic, "
    "write the mismatch report. Pick the customer as the partition.",
    executor_def=dg.in_process_executor,
    tags={"dagster/max_runtime": 3600},
)
