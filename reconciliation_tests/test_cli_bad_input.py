"""The command line under bad input, as a careless operator meets it: a cut export is held
(and accepted once), another district's Bookmarked id is refused, a disabled customer is
not scanned, a foreign demo folder is not overwritten."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciliation.cli import main
from reconciliation.demo import generate_demo
from reconciliation.settings import DEFAULT_SETTINGS_DIR

ROOT = Path(__file__).resolve().parents[1]
RECONCILE = str(Path(sys.executable).with_name("reconcile"))
CUSTOMER = "maple-charter"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo, with maple-charter's settings beside it as the project lays them out."""
    root = tmp_path_factory.mktemp("bad-input")
    generate_demo(root / "demo" / "data")
    (root / "settings").mkdir()
    for customer in (CUSTOMER, "riverside-usd"):
        shutil.copy(DEFAULT_SETTINGS_DIR / f"{customer}.json", root / "settings")
    return root


def _settings(project: Path, customer: str = CUSTOMER) -> dict:
    return json.loads((project / "settings" / f"{customer}.json").read_text())


def _scan(root: Path, settings: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RECONCILIATION_SETTINGS_DIR": str(settings),
        "RECONCILIATION_REPORTS_DIR": str(root / "reports"),
        "RECONCILIATION_STORAGE_DIR": str(root / "storage"),
        "DAGSTER_HOME": str(root / "dagster_home"),
    }
    return subprocess.run(
        [RECONCILE, "scan", *args], env=env, capture_output=True, text=True, cwd=ROOT
    )


def test_a_users_file_with_only_its_header_is_held_then_accepted_once(
    project: Path, tmp_path: Path
) -> None:
    # a copy of the export whose users.csv lost every row
    export = tmp_path / "oneroster"
    shutil.copytree(project / "demo" / "data" / CUSTOMER / "oneroster", export)
    users = export / "users.csv"
    users.write_text(users.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    settings = tmp_path / "settings"
    settings.mkdir()
    doc = _settings(project)
    doc["source"]["location"] = str(export)
    doc["bookmarked"]["database_url"] = f"sqlite:///{project / 'demo' / 'data' / 'bookmarked.db'}"
    (settings / f"{CUSTOMER}.json").write_text(json.dumps(doc))

    held = _scan(tmp_path, settings)
    assert held.returncode == 0, held.stdout + held.stderr  # a hold is an outcome
    assert f"{CUSTOMER}: held (Dagster run " in held.stdout
    assert "users: the SIS export has no users rows (Bookmarked has" in held.stdout
    summary_row = next(line for line in held.stdout.splitlines() if line.startswith(CUSTOMER))
    assert summary_row.split()[1] == "held"
    assert not (tmp_path / "reports" / CUSTOMER / "latest").exists()  # no findings report
    (hold_file,) = (tmp_path / "reports" / CUSTOMER / "holds").glob("*.json")
    fingerprint = re.search(r'accept_once to "([0-9a-f]{12})"', held.stdout).group(1)
    assert json.loads(hold_file.read_text())["fingerprint"] == fingerprint

    # accepted once from the command line: the run reports. A damaged earlier report in the
    # customer's folder never blocks it: skipped, with a warning
    damaged = tmp_path / "reports" / CUSTOMER / "20260101T000000.000000Z"
    damaged.mkdir(parents=True)
    (damaged / "summary.json").write_text('{"total": 3, ')
    (damaged / "mismatches.parquet").write_bytes(b"PAR1 cut short")
    accepted = _scan(tmp_path, settings, "--customer", CUSTOMER, "--accept-hold")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert f"{CUSTOMER}: ok" in accepted.stdout
    assert f"WARNING skipped the damaged earlier report {damaged}: summary.json is not" in (
        accepted.stdout
    )
    assert (tmp_path / "reports" / CUSTOMER / "latest" / "summary.json").exists()

    # ... or by naming that export's fingerprint in the settings
    doc["hold"] = {"accept_once": fingerprint}
    (settings / f"{CUSTOMER}.json").write_text(json.dumps(doc))
    assert f"{CUSTOMER}: ok" in _scan(tmp_path, settings).stdout


def test_accept_hold_names_one_customer(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "--dir", str(project / "settings"), "--accept-hold"]) == 1
    assert "--accept-hold accepts one customer's export" in capsys.readouterr().out


def test_connections_test_refuses_another_districts_bookmarked_id(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _settings(project)
    doc["source"]["location"] = str(project / "demo" / "data" / CUSTOMER / "oneroster")
    doc["bookmarked"]["database_url"] = f"sqlite:///{project / 'demo' / 'data' / 'bookmarked.db'}"
    (tmp_path / f"{CUSTOMER}.json").write_text(json.dumps(doc))
    assert main(["connections", "test", "--customer", CUSTOMER, "--dir", str(tmp_path)]) == 0
    assert "ok    customer   " in capsys.readouterr().out

    # copied from riverside's file: the connections open, the data is another district's
    doc["bookmarked"]["customer_id"] = _settings(project, "riverside-usd")["bookmarked"][
        "customer_id"
    ]
    (tmp_path / f"{CUSTOMER}.json").write_text(json.dumps(doc))
    assert main(["connections", "test", "--customer", CUSTOMER, "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "ok    bookmarked" in out
    assert "FAIL  customer   different customers: only " in out
    assert "is 'Riverside Unified" in out  # the district the settings point at, by name
    assert "check $.bookmarked.customer_id" in out


def test_scanning_a_disabled_customer_says_so(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = {**_settings(project), "enabled": False}
    (tmp_path / f"{CUSTOMER}.json").write_text(json.dumps(doc))
    assert main(["scan", "--customer", CUSTOMER, "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"ERROR customer {CUSTOMER} is disabled ($.enabled is false in ")


def test_settings_validate_counts_customers_and_the_template_apart(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["settings", "validate", "--dir", str(DEFAULT_SETTINGS_DIR)]) == 0
    out = capsys.readouterr().out.splitlines()
    customers = len([p for p in DEFAULT_SETTINGS_DIR.glob("*.json") if p.name != "template.json"])
    assert out[0].startswith(f"{customers} customer(s) valid, 0 error(s) in customer files")
    assert out[1] == "template: template.json valid"


def test_demo_refuses_a_folder_it_did_not_make(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "thesis.docx").write_text("years of work")
    assert main(["demo", "--out", str(tmp_path)]) == 1
    assert "was not made by the demo generator" in capsys.readouterr().out
    assert main(["demo", "--out", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "thesis.docx").read_text() == "years of work"


def test_every_option_has_help() -> None:
    import argparse

    from reconciliation.cli import build_parser

    def walk(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{parser.prog} {action.option_strings} has no help"
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)

    walk(build_parser())


def test_a_reports_folder_that_cannot_be_written_is_one_line_at_the_terminal(
    project: Path, tmp_path: Path
) -> None:
    settings = tmp_path / "settings"
    settings.mkdir()
    doc = _settings(project)
    doc["source"]["location"] = str(project / "demo" / "data" / CUSTOMER / "oneroster")
    doc["bookmarked"]["database_url"] = f"sqlite:///{project / 'demo' / 'data' / 'bookmarked.db'}"
    (settings / f"{CUSTOMER}.json").write_text(json.dumps(doc))

    # a file where the reports folder should be fails the customer with the cause and path
    (tmp_path / "reports").write_text("not a folder")
    failed = _scan(tmp_path, settings, "--customer", CUSTOMER)
    assert failed.returncode == 1
    line = next(x for x in failed.stdout.splitlines() if f"{CUSTOMER}: FAILED" in x)
    assert "cannot write the report: not a folder: " in line and str(tmp_path / "reports") in line
    assert "Traceback" not in failed.stdout + failed.stderr
