"""Sensors: the customer partitions follow the settings folder; alerts follow the night.

- `customer_partitions` (RUNNING by default: it only mirrors the settings folder) adds a
  partition for each enabled customer file and retires the partition of a customer whose
  file is gone, invalid or `enabled: false`.
- `nightly_alerts` waits until no `reconcile_customer` run is queued or running and a run
  has finished since its last evaluation, then evaluates every enabled customer's newest
  run and sends what the policy says (`reconciliation.alerts.night`, the same path as
  `reconcile scan --alert`). Waiting for the night to end is what lets the policy send one
  digest instead of fifty messages. RUNNING by default when the deployment configures
  alerts (`RECONCILIATION_ALERTS_FILE` or `RECONCILIATION_ALERT_WEBHOOK_URL` set in the code
  location's environment), else STOPPED like the schedule.

Log lines carry customer ids and counts only.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from reconciliation.defs.partitions import (
    enabled_customers,
    existing_partitions,
    partition_changes,
    read_settings,
)

#: = alerts.config.ALERTS_FILE_VARIABLE, WEBHOOK_URL_VARIABLE (not imported: loads jsonschema)
ALERT_VARIABLES = ("RECONCILIATION_ALERTS_FILE", "RECONCILIATION_ALERT_WEBHOOK_URL")


@dg.sensor(
    name="customer_partitions",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keep one partition per enabled customer of the settings folder: add new "
    "customers, retire removed or disabled ones (their past runs stay).",
)
def customer_partitions_sensor(
    context: dg.SensorEvaluationContext,
) -> dg.SensorResult | dg.SkipReason:
    settings = read_settings()
    if settings.errors:  # file names only: the messages are for `reconcile settings validate`
        context.log.warning(
            "settings left out of the customer partitions (run `reconcile settings validate`): "
            + ", ".join(sorted({Path(error.file).name for error in settings.errors}))
        )
    if any(Path(e.file) == settings.folder for e in settings.errors):
        # the folder itself is unreadable or gone (a mount that dropped): retiring every
        # customer would lose nothing but would stop the nightly scan; wait instead
        return dg.SkipReason(f"the settings folder {settings.folder} cannot be read")
    changes = partition_changes(enabled_customers(settings), existing_partitions(context.instance))
    if not changes:
        return dg.SkipReason("the customer partitions match the settings folder")
    context.log.info(
        f"customer partitions: adding {', '.join(changes.add) or 'none'}; "
        f"retiring {', '.join(changes.retire) or 'none'}"
    )
    return dg.SensorResult(dynamic_partitions_requests=changes.requests())


def alerts_configured(environ: os._Environ[str] | dict[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return any(environ.get(name, "").strip() for name in ALERT_VARIABLES)


@dg.sensor(
    name="nightly_alerts",
    minimum_interval_seconds=300,
    default_status=(
        dg.DefaultSensorStatus.RUNNING if alerts_configured() else dg.DefaultSensorStatus.STOPPED
    ),
    description="When the customers' runs are done, alert on failed checks, failed and "
    "held runs: new or worse findings only, reminders, a digest when many customers fail.",
)
def nightly_alerts(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    from reconciliation.alerts.night import alert_from_instance, newest_finish, runs_in_flight

    newest = newest_finish(context.instance)
    if newest is None or (context.cursor and newest <= float(context.cursor)):
        return dg.SkipReason("no reconcile_customer run finished since the last evaluation")
    running = runs_in_flight(context.instance)
    if running:
        return dg.SkipReason(f"waiting for {running} reconcile_customer run(s) to finish")
    lines: list[str] = []
    outcome = alert_from_instance(context.instance, echo=lines.append)
    for line in lines:
        context.log.info(line)
    sent = sum(1 for d in outcome.deliveries if d.ok)
    failed = len(outcome.deliveries) - sent
    summary = f"{outcome.results} customer run(s) evaluated: {sent} message(s) delivered"
    if failed:  # the cursor stays: the next tick evaluates (and sends) again
        return dg.SkipReason(f"{summary}, {failed} FAILED: sent again at the next evaluation")
    return dg.SensorResult(skip_reason=summary, cursor=str(newest))
