"""The nightly scan: one run per customer, so one customer's failure never stops another."""

from __future__ import annotations

import dagster as dg

from reconciliation.defs.fleet import fleet_view
from reconciliation.defs.jobs import reconcile_customer
from reconciliation.defs.partitions import customer_partitions


@dg.schedule(
    job=reconcile_customer,
    cron_schedule="0 3 * * *",
    execution_timezone="America/New_York",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Scan every enabled customer at 03:00 (after the districts' nightly SIS exports).",
)
def nightly_scan(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [
        dg.RunRequest(
            partition_key=customer,
            run_key=f"nightly-{day}-{customer}",
            tags={"reconciliation/trigger": "nightly"},
        )
        for customer in customer_partitions.get_partition_keys()
    ]


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
