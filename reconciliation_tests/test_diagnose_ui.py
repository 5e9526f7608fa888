"""`diagnose_student` end to end: the launchpad's path through a real webserver, the run page
in headless Chromium, and `reconcile diagnose --json` through the workspace.

One webserver (with its daemon, which starts the runs the launchpad queues) for the
module; the CLI's run starts beside it (its own code server, as `reconcile scan`'s), so
the two start-ups overlap. The person diagnosed is a parent the demo plants as seeing the
wrong child (student_mismatch, ISSUE_IN_BOOKMARKED).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from reconciliation.rules import RULE_IDS
from reconciliation.screenshots import (
    capture_diagnosis,
    demo_diagnosis_subject,
    graphql,
    launch_diagnosis,
    run_output_metadata,
    wait_for_run,
)

if TYPE_CHECKING:
    from reconciliation_tests.fixtures.dagster_webserver import UIProject

pytest_plugins = ["reconciliation_tests.fixtures.dagster_webserver"]

CUSTOMER = "maple-charter"
JSON_KEYS = ["customer_id", "query", "people", "verdicts", "last_sync", "candidates"]

CONFIG_SCHEMA = """
query {
  runConfigSchemaOrError(selector: {
    repositoryLocationName: "reconciliation", repositoryName: "__repository__",
    pipelineName: "diagnose_student"
  }) {
    __typename
    ... on RunConfigSchema {
      allConfigTypes {
        key
        ... on CompositeConfigType { fields { name description isRequired configTypeKey } }
      }
    }
  }
}
"""

RUN_MESSAGES = """
query ($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection { events { ... on MessageEvent { message } } }
  }
}
"""


@pytest.fixture(scope="module")
def parent(ui_project: UIProject) -> str:
    return demo_diagnosis_subject(ui_project.root / "demo" / "data", CUSTOMER)


@pytest.fixture(scope="module")
def cli_run(ui_project: UIProject, parent: str) -> Iterator[subprocess.Popen[str]]:
    """`reconcile diagnose --json`, started before the webserver so both start side by side."""
    with ui_project.reconcile(
        "diagnose", "--customer", CUSTOMER, "--student", parent, "--json"
    ) as process:
        yield process


@pytest.fixture(scope="module")
def launched(
    cli_run: subprocess.Popen[str], dagster_webserver: str, parent: str
) -> tuple[str, str]:
    """A diagnose_student run launched over GraphQL as the launchpad does, finished."""
    run_id = launch_diagnosis(dagster_webserver, CUSTOMER, student=parent)
    assert wait_for_run(dagster_webserver, run_id) == "SUCCESS"
    return dagster_webserver, run_id


def _check_document(document: dict[str, Any], parent: str) -> None:
    assert list(document) == JSON_KEYS
    assert document["customer_id"] == CUSTOMER
    assert document["query"] == {"student": parent}
    assert document["candidates"] == []
    people = [p["sis_id"] for p in document["people"]]
    assert people[0] == parent and document["people"][0]["role"] == "parent"
    assert len(document["verdicts"]) == len(people) * len(RULE_IDS)
    [verdict] = [
        v for v in document["verdicts"] if v["rule"] == "student_mismatch" and v["sis_id"] == parent
    ]
    assert verdict["status"] == "ISSUE_IN_BOOKMARKED"
    assert verdict["remediation"].startswith("Bookmarked support:")
    linked = verdict["evidence"]["linked"]
    assert linked["sis"] != linked["bookmarked"]
    assert set(document["last_sync"]) == {"started_at", "status"}


def test_the_launchpad_form_needs_only_values(dagster_webserver: str) -> None:
    """Every config field is described and required, so "Scaffold missing config" writes
    all three with empty values."""
    schema = graphql(dagster_webserver, CONFIG_SCHEMA)["runConfigSchemaOrError"]
    assert schema["__typename"] == "RunConfigSchema"
    fields = {
        field["name"]: field
        for config_type in schema["allConfigTypes"]
        for field in config_type.get("fields") or []
        if field["name"] in ("customer_id", "student", "parent_email")
    }
    assert set(fields) == {"customer_id", "student", "parent_email"}
    for field in fields.values():
        assert field["description"] and field["isRequired"], field
        # String, or StringSourceType (a string or an env var): scaffolded as ''
        assert field["configTypeKey"] in ("String", "StringSourceType"), field


def test_a_launchpad_run_gives_the_verdicts(
    launched: tuple[str, str], ui_project: UIProject, parent: str
) -> None:
    url, run_id = launched
    metadata = run_output_metadata(url, run_id)
    assert metadata["outcome"] == "verdicts"
    assert "student\\_mismatch" in metadata["diagnosis"]
    assert "ISSUE_IN_BOOKMARKED" in metadata["diagnosis"]
    path = Path(metadata["verdicts_file"])
    assert path == ui_project.reports / CUSTOMER / "people" / f"{parent}-{run_id}.json"
    _check_document(json.loads(path.read_text()), parent)
    # no report folder, history or latest/ for the customer: only the people/ files
    assert [p.name for p in (ui_project.reports / CUSTOMER).iterdir()] == ["people"]
    # log lines carry counts, never the people's ids or names
    events = graphql(url, RUN_MESSAGES, {"runId": run_id})["logsForRun"]["events"]
    names = [p["name"] for p in json.loads(path.read_text())["people"]]
    for event in events:
        message = event.get("message") or ""
        assert parent not in message and not any(n in message for n in names), message


def test_the_run_page_shows_the_verdicts(launched: tuple[str, str], tmp_path: Path) -> None:
    url, run_id = launched
    shot = capture_diagnosis(url, tmp_path, run_id)  # raises on Dagster's error UI, blank
    assert shot.stat().st_size > 20_000


def test_reconcile_diagnose_json(
    cli_run: subprocess.Popen[str], launched: tuple[str, str], parent: str
) -> None:
    stdout, stderr = cli_run.communicate(timeout=600)
    assert cli_run.returncode == 0, stderr
    _check_document(json.loads(stdout), parent)
    assert "narrow lookups" in stderr  # where it looked, beside the JSON


def test_no_match_ends_the_run_successfully(ui_project: UIProject) -> None:
    """Nobody found is an answer, not a failed run (in process: same op, no server)."""
    import dagster as dg

    from reconciliation.defs.diagnose import diagnose_student
    from reconciliation.defs.resources import ReconciliationResource

    config = {"customer_id": CUSTOMER, "student": "", "parent_email": "nobody@example.org"}
    resource = ReconciliationResource(
        settings_dir=str(ui_project.settings),
        reports_dir=str(ui_project.root / "in-process-reports"),
    )
    with dg.instance_for_test() as instance:
        result = diagnose_student.execute_in_process(
            run_config={"ops": {"diagnose": {"config": config}}},
            resources={"reconciliation": resource},
            instance=instance,
        )
    assert result.success
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata
    assert metadata["outcome"].value == "not_found"
    assert "Nobody matches" in metadata["diagnosis"].value
    assert "nobody found by parent login email" in metadata["notes"].value
    saved = list((ui_project.root / "in-process-reports" / CUSTOMER / "people").iterdir())
    assert [p.name.startswith("not-found-") for p in saved] == [True]
