"""Per-customer assets: the two canonical rosters and the mismatch report.

The diagnostic rules run inside `mismatch_report`'s op and report as one asset check each
(`check_specs` built from the rule registry), so the shared comparisons are computed once
per customer; the Great Expectations data-quality checks run on `source_roster` the same
way. Metadata holds counts and schemas, never student data; the Markdown preview of the
findings is the one exception, because the UI is where engineers read them.

The connectors, rules and reports (and polars, and Great Expectations) are imported in
the ops, when a run needs them: the code location must load in under 2 s.
"""

import gc
import os
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import dagster as dg
from dagster import AssetExecutionContext
from dagster._core.storage.tags import PRIORITY_TAG

from reconciliation.credentials import redact
from reconciliation.defs.partitions import customer_partitions
from reconciliation.defs.resources import ReconciliationResource
from reconciliation.defs.retries import BOOKMARKED_POOL, EXTRACT_RETRY, transient
from reconciliation.gateway.report_files import GATEWAY_URL_ENV, LINKED_FILES, report_url
from reconciliation.rules import RULE_IDS
from reconciliation.rules.catalog import rule_cards
from reconciliation.rules.data_quality import CHECKS as QUALITY_CHECKS
from reconciliation.storage import is_s3, link
from reconciliation.vocabulary import STATUSES

GROUP = "reconciliation"
#: the run tag a held run carries (the UI's run list and the alerts read it)
HOLD_TAG = "reconciliation/outcome"


def _table_schema(table: str) -> dg.TableSchema:
    from reconciliation.roster import SCHEMAS

    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in SCHEMAS[table].items()]
    )


def roster_metadata(roster: Any) -> dict[str, Any]:
    """Row counts per table and the canonical column schema, for the asset's page and plots."""
    from reconciliation.roster import TABLES

    counts = roster.row_counts()
    metadata: dict[str, Any] = {
        f"rows_{table}": dg.MetadataValue.int(n) for table, n in counts.items()
    }
    metadata["dagster/row_count"] = dg.MetadataValue.int(counts["users"])
    metadata["dagster/column_schema"] = _table_schema("users")
    for table in TABLES:
        metadata[f"schema_{table}"] = _table_schema(table)
    safe_meta = {k: v for k, v in roster.meta.items() if k != "scope"}
    if safe_meta:
        metadata["provenance"] = dg.MetadataValue.json(_jsonable(safe_meta))
    return metadata


def _jsonable(value: Any) -> Any:
    """Provenance as JSON for the UI, with every URL's password and secret query values
    masked (a database URL may carry `?password=`)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, int | float | bool | type(None)):
        return value
    return redact(str(value))


def _customer(reconciliation: ReconciliationResource, customer_id: str) -> Any:
    """The customer's settings for an extraction step; settings that are gone or invalid
    fail the step at once (its RetryPolicy would read the same file three more times)."""
    try:
        return reconciliation.customer(customer_id)
    except KeyError as exc:
        message = exc.args[0] if exc.args else f"no settings for customer {customer_id}"
        raise dg.Failure(description=redact(str(message)), allow_retries=False) from None


def _read(
    context: AssetExecutionContext, fetch: Callable[[], Any], what: str, customer_id: str
) -> Any:
    """Run a connector read; a connector error becomes a clean Dagster failure. An
    interrupt of a run being canceled (the UI's Terminate, Ctrl-C on `reconcile scan`)
    fails the step without a retry: Dagster retries an interrupted step that has a retry
    policy, and the run would read on."""
    from dagster._core.errors import DagsterExecutionInterruptedError

    from reconciliation.connectors import ConnectorError

    try:
        return fetch()
    except ConnectorError as exc:
        raise dg.Failure(  # retried (EXTRACT_RETRY) only when transient, never bad input
            description=f"{what} for customer {customer_id}: {redact(str(exc))}",
            metadata={"error_type": type(exc).__name__},
            allow_retries=transient(exc),
        ) from None
    except (DagsterExecutionInterruptedError, KeyboardInterrupt):
        run = context.instance.get_run_by_id(context.run.run_id)
        if run is not None and run.status == dg.DagsterRunStatus.CANCELING:
            raise dg.Failure(
                description=f"{what} for customer {customer_id}: the run was asked to stop",
                allow_retries=False,
            ) from None
        raise


#: the data-quality process started for a run before its worker was forked from this
#: process (`start_quality_process`), by run id, until source_roster takes it
_QUALITY_PROCESSES: dict[str, Any] = {}


def start_quality_process(run: dg.DagsterRun) -> Any | None:
    """For a run whose worker this process is about to fork (`launch.ReconcileLocation`):
    its data-quality process, started now (or the command's spare, already importing), so
    the worker inherits it. The caller hands it over after the fork and reaps it when the
    worker ends. None when the run does not check the source roster."""
    from reconciliation.rules.data_quality import QualityProcess, take_spare

    if "source_roster" not in (run.step_keys_to_execute or ()):
        return None
    quality = take_spare() or QualityProcess()
    _QUALITY_PROCESSES[run.run_id] = quality
    return quality


def forget_quality_process(run_id: str) -> None:
    """This process's record of a run's data-quality process, once a worker has it."""
    _QUALITY_PROCESSES.pop(run_id, None)


def _quality_process(context: AssetExecutionContext) -> Any:
    """The run's data-quality process: the one started before the fork, else a new one,
    started as the run's first step (source_roster) starts, so Great Expectations imports
    on the other core while the step reads."""
    from reconciliation.rules.data_quality import QualityProcess

    return _QUALITY_PROCESSES.pop(context.run.run_id, None) or QualityProcess()


#: by run id: the data-quality process source_roster sent its frames to, until the checks'
#: own step (`source_roster_quality`) collects the results
_QUALITY_SENT: dict[str, Any] = {}
#: the order of a run's steps (in-process executor: higher first among the ready ones):
#: the SIS first, so its checks validate in their process while the run reads Bookmarked
#: and runs the rules; the checks' step last, when their results are most likely in
FIRST, LAST = {PRIORITY_TAG: "1"}, {PRIORITY_TAG: "-1"}


def _send_quality_frames(context: AssetExecutionContext, quality: Any, roster: Any) -> None:
    """Send the checked columns to the data-quality process, which validates them while
    the run goes on. A process that cannot take them is closed; the checks' step then
    validates the stored roster itself."""
    from reconciliation.rules.data_quality import QualityProcessError, check_frames

    try:
        quality.send(check_frames(roster))
    except QualityProcessError as exc:
        context.log.warning(f"{exc}: the data-quality checks will run in the run's process")
        return
    _QUALITY_SENT[context.run.run_id] = quality


@dg.asset(
    partitions_def=customer_partitions,
    group_name=GROUP,
    io_manager_key="roster_io_manager",
    kinds={"polars"},
    retry_policy=EXTRACT_RETRY,
    op_tags=FIRST,
)
def source_roster(
    context: AssetExecutionContext, reconciliation: ReconciliationResource
) -> dg.Output:
    """The customer's SIS roster as Bookmarked's correct sync would write it."""
    from reconciliation.connectors import source_connector

    quality = _quality_process(context)
    try:
        settings = _customer(reconciliation, context.partition_key)
        connector = source_connector(settings, reconciliation.credentials, reconciliation.audit)
        context.log.info(f"reading {redact(connector.describe())} for {settings.customer_id}")
        roster = _read(
            context, connector.fetch_roster, "reading the SIS roster", settings.customer_id
        )
        _send_quality_frames(context, quality, roster)
    except BaseException:  # bad settings or a read that failed: the process is not needed
        quality.close()
        raise
    return dg.Output(roster, metadata=roster_metadata(roster))


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            check.name,
            asset="source_roster",
            description=check.description,
            partitions_def=customer_partitions,
        )
        for check in QUALITY_CHECKS
    ],
    name="source_roster_quality",
    op_tags=LAST,
    required_resource_keys={"roster_io_manager"},
)
def source_roster_quality(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
    """The SIS export's data-quality checks (Great Expectations). Their own step, so the
    rest of the run never waits for them: this step collects what the checks' process
    computed meanwhile from the frames source_roster sent it."""
    for result in _quality_results(context):
        yield dg.AssetCheckResult(
            asset_key="source_roster",
            check_name=result.name,
            passed=result.passed,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "checked": dg.MetadataValue.int(result.checked),
                "unexpected_count": dg.MetadataValue.int(result.unexpected_count),
                "sample_records": dg.MetadataValue.text(", ".join(result.unexpected_ids)),
            },
        )


def _quality_results(context: dg.AssetCheckExecutionContext) -> list[Any]:
    """The results from the process source_roster sent its frames to; else (the checks run
    on their own, or that process failed) from the stored roster, in this process."""
    from reconciliation.rules.data_quality import (
        QualityProcessError,
        check_frames,
        validate_frames,
    )

    quality = _QUALITY_SENT.pop(context.run.run_id, None)
    if quality is not None:
        try:
            return quality.results()
        except QualityProcessError as exc:
            context.log.warning(f"{exc}: running the data-quality checks in the run's process")
        finally:
            quality.close()
    roster = context.resources.roster_io_manager.load_roster(
        dg.AssetKey("source_roster"), context.partition_key
    )
    return validate_frames(check_frames(roster))


@dg.asset(
    partitions_def=customer_partitions,
    group_name=GROUP,
    io_manager_key="roster_io_manager",
    kinds={"polars"},
    retry_policy=EXTRACT_RETRY,
    pool=BOOKMARKED_POOL,
)
def bookmarked_roster(
    context: AssetExecutionContext, reconciliation: ReconciliationResource
) -> dg.Output:
    """What Bookmarked holds for the customer, read-only."""
    settings = _customer(reconciliation, context.partition_key)
    from reconciliation.connectors import bookmarked_connector

    connector = bookmarked_connector(settings, reconciliation.credentials, reconciliation.audit)
    context.log.info(f"reading {redact(connector.describe())} for {settings.customer_id}")
    roster = _read(context, connector.fetch_roster, "reading Bookmarked", settings.customer_id)
    return dg.Output(roster, metadata=roster_metadata(roster))


@dg.asset(
    partitions_def=customer_partitions,
    group_name=GROUP,
    check_specs=[
        dg.AssetCheckSpec(
            rule_id,
            asset="mismatch_report",
            partitions_def=customer_partitions,
            description=card.check_description(),
        )
        for rule_id, card in rule_cards().items()
    ],
    kinds={"csv", "parquet"},
)
def mismatch_report(
    context: AssetExecutionContext,
    reconciliation: ReconciliationResource,
    source_roster: Any,
    bookmarked_roster: Any,
) -> dg.MaterializeResult:
    """Every finding of every rule for the customer, written to reports/ with history.

    Held instead (no findings, `latest/` untouched) when the data cannot be right: an
    empty or cut export, or another district's Bookmarked rows (`reconciliation.hold`).
    """
    from reconciliation.hold import assess, is_accepted
    from reconciliation.reports import (
        ReportWriteError,
        counts_table,
        markdown_preview,
        previous_summary,
        write_report,
    )
    from reconciliation.rules import all_findings, run_rules

    settings = reconciliation.customer(context.partition_key)
    folder = reconciliation.report_folder()
    previous = previous_summary(settings.customer_id, folder) or {}
    hold, live = assess(
        source_roster,
        bookmarked_roster,
        max_missing_share=settings.hold_max_missing_share,
        previous_source_counts=(previous.get("roster_counts") or {}).get("source"),
        bookmarked_customer_id=settings.bookmarked_customer_id,
    )
    if hold is not None:
        if not is_accepted(hold, settings.hold_accept_once, context.run.tags):
            _hold_run(context, settings, hold, folder)
        context.log.warning(
            f"{settings.customer_id}: hold accepted for export {hold.fingerprint}: {hold.summary()}"
        )

    findings_by_rule = run_rules(source_roster, bookmarked_roster, settings)
    findings = all_findings(findings_by_rule)
    try:
        summary = write_report(settings.customer_id, findings, folder=folder, roster_counts=live)
    except ReportWriteError as exc:  # a full disk, a read-only folder: one line, cause and path
        raise dg.Failure(f"{settings.customer_id}: {exc}", allow_retries=False) from None
    for warning in summary.warnings:
        context.log.warning(warning)
    context.log.info(
        f"{settings.customer_id}: {summary.total} findings ({summary.new} new, "
        f"{summary.resolved} resolved) in {summary.folder}"
    )
    by_status = {
        status: sum(counts.get(status, 0) for counts in summary.by_rule_status.values())
        for status in STATUSES
    }
    metadata: dict[str, Any] = {
        # the numeric series worth plotting over time
        "findings": dg.MetadataValue.int(summary.total),
        "new": dg.MetadataValue.int(summary.new),
        "persisting": dg.MetadataValue.int(summary.persisting),
        "resolved": dg.MetadataValue.int(summary.resolved),
        **{status: dg.MetadataValue.int(n) for status, n in by_status.items()},
        "counts": dg.MetadataValue.md(counts_table(summary)),
        "report_folder": dg.MetadataValue.path(str(summary.folder)),
        "preview": dg.MetadataValue.md(markdown_preview(summary)),
        "bookmarked_last_sync": dg.MetadataValue.text(_last_sync(bookmarked_roster.meta)),
    }
    metadata.update(report_links(summary.folder, settings.customer_id, summary.run))
    if hold is not None:
        metadata["accepted_hold"] = dg.MetadataValue.text(hold.summary())
    if summary.warnings:  # paths and causes only; `reconcile scan` prints them
        metadata["report_warnings"] = dg.MetadataValue.text("\n".join(summary.warnings))
    check_results = [_check_result(rule_id, findings_by_rule.get(rule_id)) for rule_id in RULE_IDS]
    # the run's last big step: what is alive now lives until the worker exits, so take it
    # out of the garbage collector's walks; the exit's final collection would otherwise walk
    # every object dagster, polars and the rules made (1-2 s before the process ends)
    gc.freeze()
    return dg.MaterializeResult(metadata=metadata, check_results=check_results)


def report_links(folder: Any, customer_id: str, run: str) -> dict[str, Any]:
    """Links to the run's report files. Behind the gateway (`RECONCILIATION_GATEWAY_URL`
    set): its `/reports/...` route, which checks the role and audits who downloads; no
    presigned links then, which anyone holding one could use unaudited. Otherwise a bucket
    has no path to open: short-lived presigned links; a local folder needs none."""
    base = os.environ.get(GATEWAY_URL_ENV, "").strip()
    if base:
        return {
            name: dg.MetadataValue.url(report_url(base, customer_id, run, name))
            for name in LINKED_FILES
        }
    if is_s3(folder):
        return {
            name: dg.MetadataValue.url(link(folder / name))
            for name in ("mismatches.csv", "district_issues.csv")
        }
    return {}


def _hold_run(context: AssetExecutionContext, settings: Any, hold: Any, folder: Any) -> NoReturn:
    """End the run HELD: the reason (counts only) in the failure, the run's tags and
    `holds/`; no report is written, so `latest/` and history stay as they were."""
    from reconciliation.reports import ReportWriteError, write_hold

    try:
        path: str = str(write_hold(settings.customer_id, hold.as_dict(), folder=folder))
    except ReportWriteError as exc:  # still held: the reason travels in the failure below
        path = str(exc)
    context.instance.add_run_tags(
        context.run_id, {HOLD_TAG: "held", "reconciliation/hold_fingerprint": hold.fingerprint}
    )
    raise dg.Failure(
        description=(
            f"HELD {settings.customer_id}: {hold.summary()}. No findings were reported. "
            f"If this export is right, accept it once: set $.hold.accept_once to "
            f'"{hold.fingerprint}" in {settings.path.name}, or run '
            f"`reconcile scan --customer {settings.customer_id} --accept-hold`"
        ),
        metadata={
            "outcome": dg.MetadataValue.text("held"),
            "hold_fingerprint": dg.MetadataValue.text(hold.fingerprint),
            "hold_file": dg.MetadataValue.text(path),
        },
        allow_retries=False,
    )


def _last_sync(meta: dict[str, Any]) -> str:
    """When Bookmarked last synced this customer and how that ended (no error text: it may
    quote records)."""
    last = meta.get("last_sync")
    if not last:
        return "no sync run recorded in Bookmarked (sync_runs)"
    text = f"{last.get('started_at')}: {last.get('status')}"
    success = meta.get("last_successful_sync")
    if last.get("status") != "succeeded":
        text += (
            f" (last successful sync: {success.get('started_at')})"
            if success
            else " (no successful sync recorded)"
        )
    return text


def _check_result(rule_id: str, findings: Any | None) -> dg.AssetCheckResult:
    """A rule passes when it finds nothing; ERROR when a critical or high finding exists.
    `findings` is None for a rule the customer's settings disable.

    Metadata carries counts only: alerts are built from it and must never hold student data.
    """
    description = rule_cards()[rule_id].check_description()
    if findings is None:
        return dg.AssetCheckResult(
            check_name=rule_id,
            passed=True,
            description=description,
            metadata={"disabled": dg.MetadataValue.bool(True)},
        )
    by_status = dict(findings.group_by("status").len().iter_rows())
    by_severity = dict(findings.group_by("severity").len().iter_rows())
    severe = by_severity.get("critical", 0) + by_severity.get("high", 0)
    return dg.AssetCheckResult(
        check_name=rule_id,
        passed=findings.is_empty(),
        description=description,
        severity=dg.AssetCheckSeverity.ERROR if severe else dg.AssetCheckSeverity.WARN,
        metadata={
            "findings": dg.MetadataValue.int(findings.height),
            **{f"status.{k}": dg.MetadataValue.int(v) for k, v in sorted(by_status.items())},
            **{f"severity.{k}": dg.MetadataValue.int(v) for k, v in sorted(by_severity.items())},
        },
    )
