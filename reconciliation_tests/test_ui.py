"""The Dagster UI after `reconcile scan`, through a real webserver (GraphQL) and a real browser:
what an engineer opens `make dev` for.

One webserver (and daemon) for the module, on the instance the scan wrote to. The two
customers differ on purpose: riverside-usd's settings disable `campus_transfer`, so that
rule's check fails for maple-charter and passes for riverside-usd, and results read under
the wrong partition would show.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from reconciliation.rules import RULE_IDS
from reconciliation.screenshots import (
    VIEWPORT,
    DagsterUIError,
    capture_ui,
    check_page,
    graphql,
    launch_chromium,
    serve_dagster_ui,
)

if TYPE_CHECKING:
    from reconciliation_tests.fixtures.dagster_webserver import UIProject

# the fixtures dagster_webserver and ui_project; only this module uses them
pytest_plugins = ["reconciliation_tests.fixtures.dagster_webserver"]

DISABLED_FOR_RIVERSIDE = "campus_transfer"

CHECK_EXECUTIONS = """
query ($check: String!, $partition: String) {
  assetCheckExecutions(
    assetKey: {path: ["mismatch_report"]}, checkName: $check, limit: 20, partition: $partition
  ) {
    runId
    status
    partition
    evaluation { success partition metadataEntries { label ... on IntMetadataEntry { intValue } } }
  }
}
"""

SCAN_RUNS = """
query ($job: String!) {
  runsOrError(filter: {pipelineName: $job}) {
    __typename
    ... on Runs { results { runId status pipelineName tags { key value } } }
    ... on PythonError { message }
  }
}
"""

REEXECUTE = """
mutation ($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}
"""

RUN_STATUS = """
query ($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status parentRunId tags { key value } }
  }
}
"""


@pytest.fixture(scope="module")
def scan(ui_project: UIProject) -> Iterator[subprocess.Popen[str]]:
    """`reconcile scan --customer maple-charter riverside-usd`, started before the webserver
    so that both start side by side; in its own process group, stopped if a test fails
    before it ends."""
    riverside = ui_project.settings / "riverside-usd.json"
    settings = json.loads(riverside.read_text())
    settings["rules"] = {"disabled": [DISABLED_FOR_RIVERSIDE]}
    riverside.write_text(json.dumps(settings, indent=2))
    with ui_project.reconcile(
        "scan", "--customer", *ui_project.customers, stderr=subprocess.STDOUT
    ) as process:
        yield process


@pytest.fixture(scope="module")
def scanned(
    scan: subprocess.Popen[str], ui_project: UIProject, dagster_webserver: str
) -> dict[str, dict[str, Any]]:
    """The scan, finished, on the served instance; each customer's report summary."""
    output, _ = scan.communicate(timeout=600)
    assert scan.returncode == 0, output
    reports = ui_project.reports
    return {
        customer: json.loads((reports / customer / "latest" / "summary.json").read_text())
        for customer in ui_project.customers
    }


def _findings(summary: dict[str, Any], rule_id: str) -> int:
    return sum(summary["by_rule_status"].get(rule_id, {}).values())


def test_each_customer_sees_only_its_own_check_results(
    scanned: dict[str, dict[str, Any]], dagster_webserver: str
) -> None:
    """Per partition, every rule's check: only that customer's evaluations, failed exactly when
    the customer's report has findings of that rule, with the report's count."""
    passed: dict[tuple[str, str], bool] = {}
    for customer, summary in scanned.items():
        for rule_id in RULE_IDS:
            executions = graphql(
                dagster_webserver, CHECK_EXECUTIONS, {"check": rule_id, "partition": customer}
            )["assetCheckExecutions"]
            assert executions, f"no {rule_id} check result for {customer}"
            for execution in executions:
                assert execution["partition"] == customer, (rule_id, customer, execution)
                assert execution["evaluation"]["partition"] == customer
            latest = executions[0]["evaluation"]
            expected = _findings(summary, rule_id)
            assert latest["success"] is (expected == 0), (customer, rule_id, expected)
            assert executions[0]["status"] == ("SUCCEEDED" if expected == 0 else "FAILED")
            counts = {e["label"]: e.get("intValue") for e in latest["metadataEntries"]}
            if rule_id == DISABLED_FOR_RIVERSIDE and customer == "riverside-usd":
                assert "findings" not in counts
            else:
                assert counts["findings"] == expected, (customer, rule_id, counts)
            passed[customer, rule_id] = latest["success"]
    # the two customers' results really differ where their reports do
    assert passed["maple-charter", DISABLED_FOR_RIVERSIDE] is False
    assert passed["riverside-usd", DISABLED_FOR_RIVERSIDE] is True


def _wait_for_run(url: str, run_id: str, timeout: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = graphql(url, RUN_STATUS, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", run
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']} after {timeout} s"
        time.sleep(1)


def test_a_scan_run_is_listed_under_the_job_and_can_be_reexecuted(
    scanned: dict[str, dict[str, Any]], dagster_webserver: str
) -> None:
    runs = graphql(dagster_webserver, SCAN_RUNS, {"job": "reconcile_customer"})["runsOrError"]
    assert runs["__typename"] == "Runs", runs
    scan_runs: dict[str, dict[str, Any]] = {}
    for run in runs["results"]:
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        if tags.get("reconciliation/trigger") == "cli":
            scan_runs.setdefault(tags["dagster/partition"], run)
    assert set(scan_runs) == set(scanned)
    parent = scan_runs["maple-charter"]
    assert parent["status"] == "SUCCESS"

    launched = graphql(
        dagster_webserver,
        REEXECUTE,
        {"params": {"parentRunId": parent["runId"], "strategy": "ALL_STEPS"}},
    )["launchRunReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    run = _wait_for_run(dagster_webserver, run_id)
    assert run["status"] == "SUCCESS", run
    assert run["parentRunId"] == parent["runId"]
    assert {"key": "dagster/partition", "value": "maple-charter"} in run["tags"]
    # the re-execution evaluated the customer's checks again, under its partition
    executions = graphql(
        dagster_webserver, CHECK_EXECUTIONS, {"check": "missing_data", "partition": "maple-charter"}
    )["assetCheckExecutions"]
    assert executions[0]["runId"] == run_id


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_the_ui_pages_show_checks_preview_and_run_without_errors(
    scanned: dict[str, dict[str, Any]], dagster_webserver: str, tmp_path: Path
) -> None:
    """The pages of the README's screenshots, in Chromium: each one loads its content and shows
    no Dagster error (capture_ui raises on error text, failed GraphQL or a blank page)."""
    saved = capture_ui(dagster_webserver, tmp_path, customer="riverside-usd")
    assert [p.name for p in saved] == [
        "checks-per-customer.png",
        "finding-preview.png",
        "scan-run.png",
    ]
    for path in saved:
        assert _png_size(path) == (VIEWPORT["width"], VIEWPORT["height"])
        assert path.stat().st_size > 30_000, f"{path} looks empty"


def test_a_webserver_that_does_not_come_up_fails_with_its_stderr(tmp_path: Path) -> None:
    """A broken instance: the fixture's error says so and quotes the server's own words."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nno_such_setting: 1\n")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    with (
        pytest.raises(DagsterUIError, match="exited with code 1 before serving") as failure,
        serve_dagster_ui(env, tmp_path / "logs", timeout=120),
    ):
        pass
    assert 'unexpected config entry "no_such_setting"' in str(failure.value)
    assert "its stderr ends with" in str(failure.value)


DAGSTER_NAV = "<nav>" + " ".join(["Overview Runs Catalog Jobs Automation Lineage"] * 6) + "</nav>"


BROKEN_PAGES = [
    (f"{DAGSTER_NAV}<div>Unexpected GraphQL error</div>", "shows 'Unexpected GraphQL error'"),
    (f"{DAGSTER_NAV}<h3>An error occurred</h3><pre>PythonError</pre>", "shows 'An error occurred'"),
    ("<div id='root'></div>", "is blank"),
]


def test_the_page_check_catches_dagsters_error_ui_and_blank_pages() -> None:
    """What makes the UI test fail: Dagster's error texts, a blank page, a failed GraphQL call."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            for body, reason in BROKEN_PAGES:
                page.set_content(f"<html><body>{body}</body></html>")
                with pytest.raises(DagsterUIError, match=reason):
                    check_page(page, "the page", [])
            page.set_content(f"<html><body>{DAGSTER_NAV}<p>mismatch_report</p></body></html>")
            check_page(page, "the page", [])
            with pytest.raises(DagsterUIError, match="GraphQL failed: 500"):
                check_page(page, "the page", ["500 http://127.0.0.1/graphql"])
        finally:
            browser.close()
