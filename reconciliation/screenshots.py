"""The Dagster UI as an engineer sees it: the README's screenshots, and the page checks of the
UI tests.

`make screenshots` (`python -m reconciliation.screenshots`) builds the demo in a temporary
folder, runs `reconcile scan` on it with its own Dagster instance (the project's
`.dagster_home/`, reports and demo data are left alone), serves that instance with
dagster-webserver, and saves PNGs of the pages below to `docs/images/`. The browser part,
`capture_ui(base_url, out_dir)`, is what the UI tests run against their own webserver: it
fails on a page that shows Dagster's error UI or stays blank.

The browser is Debian's Chromium (`/usr/bin/chromium`, or `$RECONCILIATION_CHROMIUM`)
driven by playwright; playwright's own browser downloads are never used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from reconciliation.paths import PROJECT_ROOT

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright

CHROMIUM_ENV = "RECONCILIATION_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1600, "height": 1000}
#: what Dagster's UI shows when a page broke: its error boxes and the GraphQL error type
UI_ERROR_MARKERS = (
    "An error occurred",
    "Unexpected GraphQL error",
    "PythonError",
    "Something went wrong",
    "Error loading",
)
#: the first-visit "Join the Dagster community" dialog, dismissed as its Skip button does
SKIP_COMMUNITY_DIALOG = "window.localStorage.setItem('communityNux', JSON.stringify('1'))"
WORKSPACE = PROJECT_ROOT / "workspace.yaml"
DOCS_IMAGES = PROJECT_ROOT / "docs" / "images"
RECONCILE_JOB = "reconcile_customer"
REPORT_ASSET = "mismatch_report"
DIAGNOSE_JOB = "diagnose_student"
LOCATION = "reconciliation"
#: the rule whose check the checks screenshot shows (it finds in both directions)
SHOWN_RULE = "student_mismatch"
STEPS = 4  # source_roster, bookmarked_roster, mismatch_report, source_roster_quality
DAGSTER_YAML = "telemetry:\n  enabled: false\n"
DEMO_CUSTOMERS = ("hillcrest-academy", "maple-charter", "riverside-usd")


class DagsterUIError(RuntimeError):
    """The webserver did not come up, or a page of the UI shows an error."""


# --- the webserver -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _default_signals() -> None:
    """In the child before exec: a shell's `&` or a test runner may have left SIGINT ignored,
    and `dagster` copies that onto SIGTERM, so the server could never be stopped."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _start(command: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as stderr:
        return subprocess.Popen(
            command,
            env=dict(env),
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            process_group=0,  # its own group: stopping it stops its code server and runs too
            preexec_fn=_default_signals,
        )


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def _stop(processes: Sequence[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    """SIGTERM to each process group at once; SIGKILL to every group after its leader has
    exited (a run's worker may outlive it) or after `grace` seconds."""
    for process in processes:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        with suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _tail(log: Path, lines: int = 20, width: int = 300) -> str:
    """The end of a server's stderr, each line cut to `width` (a config error is one long
    line listing every valid key)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    tail = [f"{line[:width]}…" if len(line) > width else line for line in text.splitlines()]
    return "\n".join(tail[-lines:]).strip() or "(nothing on stderr)"


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@contextmanager
def serve_dagster_ui(
    env: Mapping[str, str],
    logs: Path,
    *,
    daemon: bool = False,
    timeout: float = 180.0,
) -> Iterator[str]:
    """dagster-webserver on 127.0.0.1 and a free port for the instance `env["DAGSTER_HOME"]`,
    with the project's workspace.yaml; yields its base URL and stops it (its whole process
    group) afterwards. `daemon=True` also runs dagster-daemon, as `make dev` does: runs
    launched from the UI wait in the queue until the daemon starts them.

    `timeout` is generous: on a loaded two-core machine the webserver took 36 s to serve.
    """
    logs.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        if daemon:
            command = [_bin("dagster-daemon"), "run", "-w", str(WORKSPACE)]
            processes.append(_start(command, env, logs / "daemon.stderr"))
        for _attempt in range(3):  # another process may take the free port before we bind it
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            command = [_bin("dagster-webserver"), "-w", str(WORKSPACE), "-h", "127.0.0.1"]
            webserver_log = logs / "webserver.stderr"
            webserver = _start([*command, "-p", str(port)], env, webserver_log)
            processes.append(webserver)
            if _wait_until_serving(url, webserver, timeout):
                break
            if "address already in use" not in _tail(webserver_log).lower():
                code = webserver.poll()
                why = (
                    f"exited with code {code} before serving {url}"
                    if code is not None
                    else f"did not serve {url}/server_info within {timeout:.0f} s"
                )
                raise DagsterUIError(
                    f"dagster-webserver {why}; its stderr ends with:\n{_tail(webserver_log)}"
                )
        else:
            raise DagsterUIError(f"dagster-webserver found no free port:\n{_tail(webserver_log)}")
        for process in processes[:-1]:
            if process.poll() is not None:
                raise DagsterUIError(
                    f"dagster-daemon exited ({process.returncode}); its stderr ends with:\n"
                    f"{_tail(logs / 'daemon.stderr')}"
                )
        yield url
    finally:
        _stop(processes)


def _wait_until_serving(url: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if requests.get(f"{url}/server_info", timeout=2).ok:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.5)
    return False


def graphql(url: str, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """POST a query to the webserver's GraphQL API; its `data`, or an error naming the cause."""
    response = requests.post(
        f"{url}/graphql", json={"query": query, "variables": dict(variables or {})}, timeout=60
    )
    try:
        body = response.json()
    except ValueError:
        body = None
    if not response.ok or not isinstance(body, dict) or body.get("errors"):
        errors = body.get("errors") if isinstance(body, dict) else response.text[:2000]
        raise DagsterUIError(f"GraphQL answered {response.status_code}: {errors}")
    return body["data"]


# --- the browser ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanRun:
    """The `reconcile scan` run a screenshot shows: its id and customer (partition)."""

    run_id: str
    customer_id: str


LATEST_SCAN_RUN = """
query ($job: String!) {
  runsOrError(filter: {pipelineName: $job, statuses: [SUCCESS]}, limit: 20) {
    __typename
    ... on Runs { results { runId tags { key value } } }
    ... on PythonError { message }
  }
}
"""


def latest_scan_run(url: str, customer: str | None = None) -> ScanRun:
    """The newest successful `reconcile_customer` run (of `customer`, when given)."""
    runs = graphql(url, LATEST_SCAN_RUN, {"job": RECONCILE_JOB})["runsOrError"]
    if runs["__typename"] != "Runs":
        raise DagsterUIError(f"listing the runs failed: {runs.get('message')}")
    for run in runs["results"]:
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        partition = tags.get("dagster/partition")
        if partition and customer in (None, partition):
            return ScanRun(run["runId"], partition)
    raise DagsterUIError(
        f"no successful {RECONCILE_JOB} run{f' of {customer}' if customer else ''} "
        f"at {url}: run `reconcile scan` on this instance first"
    )


LAUNCH_RUN = """
mutation ($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message }
    ... on Error { message }
  }
}
"""

RUN_STATUS = """
query ($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }
"""

RUN_OUTPUT = """
query ($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepOutputEvent {
          metadataEntries {
            label
            ... on MarkdownMetadataEntry { mdStr }
            ... on JsonMetadataEntry { jsonString }
            ... on PathMetadataEntry { path }
            ... on TextMetadataEntry { text }
            ... on IntMetadataEntry { intValue }
          }
        }
      }
    }
  }
}
"""


def launch_diagnosis(url: str, customer: str, *, student: str = "", parent_email: str = "") -> str:
    """Launch `diagnose_student` as the launchpad does (the `launchRun` mutation with the
    scaffolded config filled in); its run id."""
    config = {"customer_id": customer, "student": student, "parent_email": parent_email}
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": "__repository__",
            "jobName": DIAGNOSE_JOB,
        },
        "runConfigData": {"ops": {"diagnose": {"config": config}}},
    }
    result = graphql(url, LAUNCH_RUN, {"executionParams": params})["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise DagsterUIError(f"launching {DIAGNOSE_JOB} failed: {result}")
    return result["run"]["runId"]


def wait_for_run(url: str, run_id: str, timeout: float = 180.0) -> str:
    """Poll the run until it ends; its final status (SUCCESS, FAILURE, CANCELED)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = graphql(url, RUN_STATUS, {"runId": run_id})["runOrError"]
        if run.get("status") in ("SUCCESS", "FAILURE", "CANCELED"):
            return run["status"]
        time.sleep(0.5)
    raise DagsterUIError(f"run {run_id} did not end within {timeout:.0f} s")


def run_output_metadata(url: str, run_id: str) -> dict[str, Any]:
    """The metadata of a run's step outputs, label -> value, as the run page shows it."""
    logs = graphql(url, RUN_OUTPUT, {"runId": run_id})["logsForRun"]
    if logs["__typename"] != "EventConnection":
        raise DagsterUIError(f"reading run {run_id}'s events failed: {logs}")
    out: dict[str, Any] = {}
    for event in logs["events"]:
        for entry in event.get("metadataEntries") or []:
            value = next((v for k, v in entry.items() if k not in ("label", "__typename")), None)
            out[entry["label"]] = value
    return out


def latest_run(url: str, job: str) -> str:
    """The newest successful run of `job`."""
    runs = graphql(url, LATEST_SCAN_RUN, {"job": job})["runsOrError"]
    if runs["__typename"] != "Runs" or not runs["results"]:
        raise DagsterUIError(f"no successful {job} run at {url}")
    return runs["results"][0]["runId"]


def demo_diagnosis_subject(demo_dir: Path, customer: str) -> str:
    """A parent of the demo whose Bookmarked account sees the wrong child (a planted
    student_mismatch case): the person the diagnosis screenshot shows."""
    import csv

    with (demo_dir / "ground_truth.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if (
                row["customer_id"] == customer
                and row["rule"] == "student_mismatch"
                and row["status"] == "ISSUE_IN_BOOKMARKED"
            ):
                return row["sis_id"]
    raise DagsterUIError(f"the demo in {demo_dir} plants no student_mismatch for {customer}")


def chromium_path() -> str:
    path = os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM
    if not Path(path).exists():
        raise DagsterUIError(
            f"no Chromium at {path}: `make browser` installs Debian's (apt-get install -y "
            f"chromium, as root), or set {CHROMIUM_ENV} to a Chromium or Chrome binary"
        )
    return path


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless, with nothing that phones home."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=list(CHROMIUM_ARGS))


def check_page(page: Page, what: str, graphql_failures: list[str]) -> None:
    """Fail on Dagster's error UI, a failed GraphQL request or a page with no content."""
    text = page.locator("body").inner_text()
    for marker in UI_ERROR_MARKERS:
        if marker.lower() in text.lower():
            raise DagsterUIError(f"{what} ({page.url}) shows {marker!r}")
    if graphql_failures:
        raise DagsterUIError(f"{what} ({page.url}): GraphQL failed: {'; '.join(graphql_failures)}")
    if len(text.strip()) < 200:
        raise DagsterUIError(f"{what} ({page.url}) is blank: {text.strip()!r}")


def _checks_of_customer(page: Page, url: str, customer: str) -> None:
    """The report's asset page, Checks tab, one rule's check, the customer's partition."""
    page.goto(f"{url}/assets/{REPORT_ASSET}?view=checks&checkDetail={SHOWN_RULE}")
    page.get_by_role("tab", name="Execution history").wait_for()
    page.get_by_role("tab", name="Partitions").last.click()  # the check's, not the asset's
    page.get_by_text("Partitions Selected").wait_for()
    page.get_by_text(customer, exact=True).filter(visible=True).last.click()
    page.get_by_text("Latest execution", exact=True).wait_for()
    page.get_by_text("findings", exact=True).wait_for()


def _finding_preview(page: Page, url: str, customer: str) -> None:
    """The customer's report materialization, its `preview` Markdown opened."""
    page.goto(f"{url}/assets/{REPORT_ASSET}?view=partitions&partition={customer}")
    page.get_by_text("Latest materialization", exact=True).wait_for()
    preview = page.locator("tr", has=page.get_by_text("preview", exact=True))
    preview.get_by_text("[Show Markdown]").click()
    table = page.get_by_role("dialog").get_by_role("table")
    table.wait_for()
    # the dialog opens scrolled to its buttons: show the most severe findings, at the top
    table.get_by_role("row").first.scroll_into_view_if_needed()


def _scan_run(page: Page, url: str, run_id: str) -> None:
    """The run's page: its steps and its event log."""
    page.goto(f"{url}/runs/{run_id}")
    page.get_by_text("Loading run logs").wait_for(state="hidden")
    page.get_by_text("RUN_SUCCESS", exact=True).first.wait_for()
    # the timeline draws each step green once it has read the step's events
    # (a locator, not wait_for_function: the UI's Content-Security-Policy refuses the eval
    # of a string expression, and only sometimes is the condition met before it is needed)
    page.locator(".chart-element.box[style*=accent-green]").nth(STEPS - 1).wait_for()


def _diagnosis_run(page: Page, url: str, run_id: str) -> None:
    """A diagnose_student run's page, its verdicts (the step's Markdown) opened."""
    page.goto(f"{url}/runs/{run_id}")
    page.get_by_text("Loading run logs").wait_for(state="hidden")
    page.get_by_text("RUN_SUCCESS", exact=True).first.wait_for()
    page.get_by_text("[Show Markdown]").first.click()
    page.get_by_role("dialog").get_by_role("table").first.wait_for()


def capture_ui(url: str, out_dir: Path, *, customer: str | None = None) -> list[Path]:
    """Screenshots of the UI at `url` into `out_dir`; a DagsterUIError when a page shows
    an error. Shows the newest `reconcile scan` run (of `customer`, when given)."""
    run = latest_scan_run(url, customer)
    pages = (
        ("checks-per-customer.png", "a customer's checks", _checks_of_customer, run.customer_id),
        ("finding-preview.png", "the findings preview", _finding_preview, run.customer_id),
        ("scan-run.png", "a run of reconcile scan", _scan_run, run.run_id),
    )
    return _capture(url, out_dir, pages)


def capture_diagnosis(url: str, out_dir: Path, run_id: str) -> Path:
    """A screenshot of a diagnose_student run's page with its verdicts (`diagnose-run.png`)."""
    [saved] = _capture(
        url, out_dir, [("diagnose-run.png", "a diagnosis run", _diagnosis_run, run_id)]
    )
    return saved


def _capture(url: str, out_dir: Path, pages: Sequence[tuple[str, str, Any, str]]) -> list[Path]:
    """Open each page (name, what, how to show it, its subject) in headless Chromium and save
    it; a DagsterUIError when a page shows an error."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.add_init_script(SKIP_COMMUNITY_DIALOG)
            context.set_default_timeout(60_000)
            for name, what, show, subject in pages:
                page = context.new_page()
                failures: list[str] = []
                page.on(
                    "response",
                    lambda r, failures=failures: (
                        failures.append(f"{r.status} {r.url}")
                        if "/graphql" in r.url and r.status >= 400
                        else None
                    ),
                )
                try:
                    show(page, url, subject)
                    page.wait_for_load_state("networkidle")
                except PlaywrightError as exc:
                    page.screenshot(path=out_dir / name)
                    check_page(page, what, failures)  # the page's own error says more
                    raise DagsterUIError(
                        f"{what} ({page.url}): {exc.message.splitlines()[0]}; "
                        f"the page as it was is in {out_dir / name}"
                    ) from None
                page.screenshot(path=out_dir / name)
                check_page(page, what, failures)
                saved.append(out_dir / name)
                page.close()
        finally:
            browser.close()
    return saved


# --- make screenshots ----------------------------------------------------------------------


def demo_project(root: Path, customers: Sequence[str] = DEMO_CUSTOMERS) -> dict[str, str]:
    """The demo data and the shipped settings of the demo `customers` side by side under `root`
    (so the settings' relative paths hold), and the environment that points the reconciliation
    and a fresh Dagster instance (telemetry off) at them."""
    from reconciliation.demo import generate_demo
    from reconciliation.settings import DEFAULT_SETTINGS_DIR

    generate_demo(root / "demo" / "data")
    (root / "settings").mkdir()
    for customer in customers:
        shutil.copy(DEFAULT_SETTINGS_DIR / f"{customer}.json", root / "settings")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    return {
        **os.environ,
        "RECONCILIATION_SETTINGS_DIR": str(root / "settings"),
        "RECONCILIATION_REPORTS_DIR": str(root / "reports"),
        "RECONCILIATION_STORAGE_DIR": str(root / "storage"),
        "DAGSTER_HOME": str(home),
    }


def _take_screenshots(root: Path, customer: str) -> list[Path]:
    """Demo, scan, webserver, browser, all under `root`; the PNGs in `root/screenshots`."""
    env = demo_project(root)
    print(f"demo built in {root}; scanning it with reconcile scan", flush=True)
    if subprocess.run([_bin("reconcile"), "scan"], env=env, cwd=PROJECT_ROOT).returncode != 0:
        raise DagsterUIError("reconcile scan failed")
    parent = demo_diagnosis_subject(root / "demo" / "data", customer)
    diagnose = [_bin("reconcile"), "diagnose", "--customer", customer, "--student", parent]
    if subprocess.run(diagnose, env=env, cwd=PROJECT_ROOT).returncode != 0:
        raise DagsterUIError("reconcile diagnose failed")
    with serve_dagster_ui(env, root / "logs") as url:
        print(f"dagster-webserver at {url}; taking screenshots", flush=True)
        taken = capture_ui(url, root / "screenshots", customer=customer)
        return [*taken, capture_diagnosis(url, root / "screenshots", latest_run(url, DIAGNOSE_JOB))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DOCS_IMAGES, help="folder for the PNGs")
    parser.add_argument("--customer", default="maple-charter", help="the customer shown")
    args = parser.parse_args(argv)
    try:
        chromium_path()  # before minutes of work
    except DagsterUIError as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="reconciliation-screenshots-"))
    try:
        taken = _take_screenshots(root, args.customer)
    except DagsterUIError as exc:
        # the README keeps its pictures; the evidence stays for a look
        print(
            f"ERROR {exc}\nno screenshot replaced; the demo, the Dagster instance, the server "
            f"logs and the pages taken are in {root}",
            file=sys.stderr,
        )
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for path in taken:
        shutil.copyfile(path, args.out / path.name)
        print(f"saved {args.out / path.name}")
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
