"""`reconcile diagnose`: one student or parent, through the same Dagster job as the launchpad.

    reconcile diagnose --customer ID (--student QUERY | --parent-email EMAIL) [--json]

The `diagnose_student` run is launched through the code location (`launch.py`), like
`reconcile scan`, so it shows in the UI with its verdicts on the run page. `--student` is
tried as a sourcedId, then a student number, then an email (when it holds an @), then a
name. The verdicts are read back from the run's own output (its metadata), never
recomputed here. Exit 0 when the diagnosis ran, whatever it found (an ambiguous name and
nobody found included); 1 when it could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

DIAGNOSE_JOB = "diagnose_student"  # defs.diagnose.DIAGNOSE_JOB, not imported: light CLI
OP = "diagnose"


def run_config(customer_id: str, student: str | None, parent_email: str | None) -> dict[str, Any]:
    """The launchpad's config for one diagnosis (quiet console, as the scan's runs)."""
    from reconciliation.scan import RUN_CONFIG

    config = {
        "customer_id": customer_id,
        "student": student or "",
        "parent_email": parent_email or "",
    }
    return {**RUN_CONFIG, "ops": {OP: {"config": config}}}


def _metadata(instance: Any, run_id: str) -> tuple[dict[str, Any], str | None]:
    """The diagnose step's output metadata, and why the run failed when it did."""
    import dagster as dg

    from reconciliation.scan import _first_line

    records = instance.get_records_for_run(
        run_id,
        of_type={
            dg.DagsterEventType.STEP_OUTPUT,
            dg.DagsterEventType.STEP_FAILURE,
            dg.DagsterEventType.RUN_FAILURE,
        },
    ).records
    metadata: dict[str, Any] = {}
    failure = None
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_OUTPUT:
            entries = event.step_output_data.metadata
            metadata = {k: getattr(v, "value", v) for k, v in entries.items()}
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            user = event.step_failure_data.user_failure_data
            error = event.step_failure_data.error
            failure = _first_line(
                user.description
                if user and user.description
                else (error.message if error else "the step failed")
            )
        elif failure is None:
            failure = _first_line(event.message or "the run failed")
    return metadata, failure


def launch_diagnosis(
    customer_id: str, student: str | None, parent_email: str | None
) -> tuple[str, dict[str, Any], str | None]:
    """Launch one diagnose_student run through the workspace and wait for it. Returns the
    run id, the step's output metadata and the failure (None when it succeeded)."""
    import dagster as dg

    from reconciliation.launch import LaunchError, open_location
    from reconciliation.scan import TRIGGER_TAG

    with dg.DagsterInstance.get() as instance:
        try:
            with open_location(instance, job_name=DIAGNOSE_JOB) as location:
                run = location.create_run(
                    None,
                    tags={TRIGGER_TAG: "cli"},
                    run_config=run_config(customer_id, student, parent_email),
                )
                try:
                    location.launch(run)
                    finished, died = location.watch(run.run_id)
                except KeyboardInterrupt:
                    location.terminate(run.run_id)
                    raise
                metadata, failure = _metadata(instance, run.run_id)
        except LaunchError as exc:
            return "", {}, str(exc)
    if finished.status != dg.DagsterRunStatus.SUCCESS:
        failure = failure or died or f"the run ended {finished.status.value}"
    return run.run_id, metadata, failure if finished.status != dg.DagsterRunStatus.SUCCESS else None


def _result(metadata: dict[str, Any]) -> dict[str, Any]:
    """The run's JSON as written (key order kept), else its copy in the run's metadata."""
    from reconciliation.storage import location

    path = metadata.get("verdicts_file")
    if path:
        try:
            return json.loads(location(str(path)).read_text())
        except (OSError, ValueError):
            pass
    return dict(metadata.get("verdicts") or {})


def format_verdicts(result: dict[str, Any], width: int = 110) -> str:
    """The verdicts as a readable table: one line per verdict, the detail and remediation
    of every issue below it."""
    lines = []
    if result.get("candidates"):
        lines.append(f"{len(result['candidates'])} people match; run again with one sourcedId:")
        ids = max([9, *(len(c.get("sis_id") or "-") for c in result["candidates"])])
        lines.append(
            f"  {'SOURCEDID':<{ids}} {'BOOKMARKED':>10}  {'ROLE':<8} {'GRADE':<5} NAME (SCHOOLS)"
        )
        for c in result["candidates"]:
            schools = ", ".join(c.get("school_sis_ids") or [])
            lines.append(
                f"  {c.get('sis_id') or '-':<{ids}} {c.get('bookmarked_id') or '-':>10}  "
                f"{c.get('role') or '-':<8} {c.get('grade') or '-':<5} "
                f"{c.get('name') or ''} ({schools})"
            )
        return "\n".join(lines)
    if not result.get("people"):
        return "nobody matches this query"
    for person in result["people"]:
        lines.append(
            f"{person['role']} {person['name']} ({person['sis_id']}, Bookmarked "
            f"{person['bookmarked_id'] if person['bookmarked_id'] is not None else 'none'})"
        )
    lines.append("")
    # sourcedIds are often UUIDs: the column is as wide as the longest, so verdicts align
    ids = max([9, *(len(str(verdict["sis_id"])) for verdict in result["verdicts"])])
    lines.append(f"  {'SOURCEDID':<{ids}} {'RULE':<22} VERDICT")
    for verdict in result["verdicts"]:
        lines.append(f"  {verdict['sis_id']!s:<{ids}} {verdict['rule']:<22} {verdict['status']}")
        if verdict["status"] != "NO_ISSUE":
            for label, text in (("why", verdict["detail"]), ("fix", verdict["remediation"])):
                lines += textwrap.wrap(
                    text,
                    width,
                    initial_indent=f"      {label}: ",
                    subsequent_indent=" " * 11,
                )
    return "\n".join(lines)


def cmd_diagnose(args: argparse.Namespace) -> int:
    from reconciliation.cli import ensure_dagster_home
    from reconciliation.settings import load_settings

    folder = load_settings(Path(args.dir).resolve() if args.dir else None)
    if args.customer not in folder.customers:
        try:
            folder.get(args.customer)
        except KeyError as exc:
            print(f"ERROR {exc.args[0]}", file=sys.stderr)
        return 1
    if args.dir:
        # the code location reads the settings folder when it loads
        os.environ["RECONCILIATION_SETTINGS_DIR"] = str(Path(args.dir).resolve())
    home = ensure_dagster_home()
    from reconciliation.launch import allow_forked_runs

    allow_forked_runs()  # this command has computed nothing with polars: see launch.py
    run_id, metadata, failure = launch_diagnosis(args.customer, args.student, args.parent_email)
    if failure is not None:
        run = f" (Dagster run {run_id[:8]})" if run_id else ""
        print(f"ERROR the diagnosis failed{run}: {failure}", file=sys.stderr)
        return 1
    result = _result(metadata)
    notes = [n for n in str(metadata.get("notes", "")).splitlines() if n]
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        for note in notes:
            print(note, file=sys.stderr)
        return 0
    print(format_verdicts(result))
    print()
    print(f"last Bookmarked sync: {metadata.get('last_sync', 'unknown')}")
    for note in notes:
        print(f"- {note}")
    print(f"\nverdicts: {metadata.get('verdicts_file')}")
    print(f"Dagster run {run_id} in {home} (open it with `make dev`)")
    return 0


def add_commands(commands: Any) -> None:
    """Register `diagnose` on the `reconcile` parser's subcommands."""
    parser = commands.add_parser(
        "diagnose",
        help="diagnose one student or parent through Dagster (verdict per rule)",
        description="Launch the diagnose_student job for one person and print its verdicts. "
        "--student is tried as a sourcedId, then a student number, then an email (with @), "
        "then a name.",
    )
    parser.add_argument("--customer", required=True, metavar="ID", help="the customer's id")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--student", metavar="QUERY", help="sourcedId, student number, email or name")
    who.add_argument("--parent-email", metavar="EMAIL", help="a parent's login email")
    parser.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    parser.add_argument(
        "--dir", help="settings folder (default: $RECONCILIATION_SETTINGS_DIR or the project's)"
    )
    parser.set_defaults(func=cmd_diagnose)
