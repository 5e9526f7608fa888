"""`diagnose_student`: one student or parent, from the launchpad, in seconds.

An op job, not an asset: a diagnosis reads a few people narrowly and must never change
the customer's assets, check history or report folder (no finding of the last scan turns
"resolved"). It writes one JSON file beside the reports,
`<reports>/<customer_id>/people/<sourcedId>-<run_id>.json`, and shows the verdicts as
Markdown on the run's page (the step's output metadata). Log lines carry counts only:
the people's ids and names stay on the run page and in the file.

Light to load: the connectors, polars and the rules are imported when the op runs.
"""

import json
import time
from typing import Any

import dagster as dg
from pydantic import Field

from reconciliation.credentials import redact
from reconciliation.defs.resources import ReconciliationResource

DIAGNOSE_JOB = "diagnose_student"
PEOPLE_FOLDER = "people"


class DiagnoseConfig(dg.Config):
    """Who to diagnose. Fill `customer_id`, and `student` or `parent_email` (leave the
    other empty)."""

    customer_id: str = Field(
        description="The customer's id: its settings file's name without .json "
        "(e.g. riverside-usd)."
    )
    student: str = Field(
        description="The person to diagnose (any role): a sourcedId, a student number, an "
        "email or a name ('Given Family' or 'Family, Given'), tried in that order. Leave "
        "empty to diagnose by parent_email."
    )
    parent_email: str = Field(
        description="A parent's login email (the 'parent sees the wrong child' case): every "
        "parent holding it and their children are diagnosed. Leave empty when student is set."
    )


def diagnosis_file(folder: Any, customer_id: str, stem: str, run_id: str) -> Any:
    """Where a diagnosis's JSON goes: `<folder>/<customer_id>/people/<stem>-<run_id>.json`."""
    return folder / customer_id / PEOPLE_FOLDER / f"{stem}-{run_id}.json"


@dg.op(
    description="Find the person on both sides, read only their neighbourhood, run every "
    "rule on it, and give one verdict per rule and person.",
    out=dg.Out(dg.Nothing),
)
def diagnose(
    context: dg.OpExecutionContext,
    config: DiagnoseConfig,
    reconciliation: ReconciliationResource,
) -> dg.Output:
    from reconciliation.connectors import ConnectorError, bookmarked_connector, source_connector
    from reconciliation.diagnosis.run import diagnose as run_diagnosis
    from reconciliation.diagnosis.scope import SideReader
    from reconciliation.diagnosis.verdicts import as_markdown

    student, parent_email = config.student.strip(), config.parent_email.strip()
    if bool(student) == bool(parent_email):
        raise dg.Failure(
            description="fill exactly one of student and parent_email (leave the other empty)"
        )
    try:
        settings = reconciliation.customer(config.customer_id)
    except KeyError as exc:
        raise dg.Failure(description=redact(str(exc.args[0]))) from None
    started = time.perf_counter()
    source = SideReader(
        "source", source_connector(settings, reconciliation.credentials, reconciliation.audit)
    )
    bookmarked = SideReader(
        "bookmarked",
        bookmarked_connector(settings, reconciliation.credentials, reconciliation.audit),
    )
    try:
        diagnosis, _piece = run_diagnosis(
            source,
            bookmarked,
            settings.customer_id,
            student=student or None,
            parent_email=parent_email or None,
            settings=settings,
        )
    except ConnectorError as exc:
        raise dg.Failure(
            description=f"diagnosing for customer {settings.customer_id}: {redact(str(exc))}",
            metadata={"error_type": type(exc).__name__},
        ) from None
    elapsed = time.perf_counter() - started
    counts = diagnosis.counts()
    path = diagnosis_file(
        reconciliation.report_folder(), settings.customer_id, diagnosis.file_stem, context.run_id
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(json.dumps(diagnosis.as_json(), indent=2, default=str).encode())
    # counts and how each side was read only: no ids or names in log lines
    context.log.info(
        f"diagnosis of customer {settings.customer_id}: {diagnosis.outcome}; "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + f"; {source.lookups} SIS and {bookmarked.lookups} Bookmarked lookups "
        f"({'narrow' if source.narrow else 'whole roster'} / "
        f"{'narrow' if bookmarked.narrow else 'whole roster'}) in {elapsed:.2f} s"
    )
    return dg.Output(
        None,
        metadata={
            "diagnosis": dg.MetadataValue.md(as_markdown(diagnosis)),
            "outcome": dg.MetadataValue.text(diagnosis.outcome),
            "verdicts_file": dg.MetadataValue.path(str(path)),
            "verdicts": dg.MetadataValue.json(diagnosis.as_json()),
            "notes": dg.MetadataValue.text("\n".join(diagnosis.notes)),
            "last_sync": dg.MetadataValue.text(diagnosis.sync_note),
            **{f"count.{k}": dg.MetadataValue.int(v) for k, v in counts.items()},
            "seconds": dg.MetadataValue.float(round(elapsed, 3)),
        },
    )


@dg.job(
    name=DIAGNOSE_JOB,
    description="Diagnose one student or parent of one customer: every rule, scoped to the "
    "person's family, with one verdict each (ISSUE_IN_SOURCE, ISSUE_IN_BOOKMARKED or "
    "NO_ISSUE). Scaffold the config and fill customer_id and student (or parent_email).",
    executor_def=dg.in_process_executor,
    tags={"dagster/max_runtime": 600},
)
def diagnose_student() -> None:
    diagnose()
