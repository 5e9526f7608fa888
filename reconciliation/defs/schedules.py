"""The nightly scan: one run per customer, so one customer's failure never stops another."""

from __future__ import annotations

import dagster as dg

from reconciliation.defs.fleet import fleet_view
from reconciliation.defs.jobs import reconcile_customer
from reconciliation.defs.partitions import (
    enabled_customers,
    existing_partitions,
    read_settings,
    run_tags,
)

TRIGGER_TAG = "reconciliation/trigger"  # = scan.TRIGGER_TAG


@dg.schedule(
    job=reconcile_customer,
    cron_schedule="0 3 * * *",
    execution_timezone="America/New_York",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Scan every enabled customer at 03:00 (after the districts' nightly SIS exports).",
)
def nightly_scan(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
    """One run per customer partition in the instance that the settings still enable (the
    `customer_partitions` sensor adds and retires partitions; a partition it has not
    retired yet is not scanned once its file is gone or disabled)."""
    settings = read_settings()
    enabled = {c: settings.customers[c] for c in enabled_customers(settings)}
    partitions = set(existing_partitions(context.instance))
    waiting = sorted(set(enabled) - partitions)
    if waiting:  # ids only; the sensor adds them within a minute
        context.log.warning(
            "customers without a partition yet (is the customer_partitions sensor running?): "
            + ", ".join(waiting)
        )
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    requests = [
        dg.RunRequest(
            partition_key=customer,
            run_key=f"nightly-{day}-{customer}",
            tags={TRIGGER_TAG: "nightly", **run_tags(enabled[customer])},
        )
        for customer in sorted(partitions & set(enabled))
    ]
    return requests or dg.SkipReason("no enabled customer has a partition")


fleet_refresh = dg.ScheduleDefinition(
    name="fleet_refresh",
    job=fleet_view,
    cron_schedule="0 6 * * *",
    execution_timezone="America/New_York",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Refresh the fleet view at 06:00, three hours after the nightly scan starts "
    "(a customer still running then shows its previous results; materialize fleet_summary "
    "again from the UI at any time).",
)
