"""The `reconcile` command: settings validation and connection tests, as an engineer runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reconciliation.cli import main
from reconciliation.demo import generate_demo
from reconciliation.settings import DEFAULT_SETTINGS_DIR
from reconciliation_tests.fixtures.hubspot_server import TOKEN, HubSpotServer


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    generate_demo(root / "demo" / "data")
    (root / "settings").mkdir()
    shutil.copy(DEFAULT_SETTINGS_DIR / "riverside-usd.json", root / "settings")
    return root


def test_settings_validate_passes_on_the_shipped_folder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings", "validate", "--dir", str(DEFAULT_SETTINGS_DIR)]) == 0
    assert "0 error(s)" in capsys.readouterr().out


def test_settings_validate_lists_every_error_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.json").write_text("{\n  oops\n}")
    (tmp_path / "b.json").write_text(json.dumps({"customer_id": "b", "name": "B"}))
    assert main(["settings", "validate", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"ERROR {tmp_path / 'a.json'}: line 2, column 3: invalid JSON" in out
    assert f"ERROR {tmp_path / 'b.json'}: $.environment: missing required key" in out
    assert f"ERROR {tmp_path / 'b.json'}: $.source: missing required key" in out


def test_connections_test_says_ok_for_each_connection(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["connections", "test", "--customer", "riverside-usd", "--dir", str(project / "settings")]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("ok    source") and "oneroster" in lines[0].lower()
    assert lines[1].startswith("ok    bookmarked")


def test_connections_test_says_why_not_without_the_secret(
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = json.loads((project / "settings" / "riverside-usd.json").read_text())
    settings["bookmarked"]["database_url"] = "env:TEST_BM_URL"
    settings["source"]["location"] = str(tmp_path / "missing.zip")
    (tmp_path / "riverside-usd.json").write_text(json.dumps(settings))
    monkeypatch.setenv("TEST_BM_URL", "postgresql://ro:Sup3r-s3cret@127.0.0.1:1/bookmarked")
    code = main(["connections", "test", "--customer", "riverside-usd", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  source" in out and "missing.zip" in out
    assert "FAIL  bookmarked" in out
    assert "Sup3r-s3cret" not in out


def _with_hubspot_company(project: Path, folder: Path, company_id: str) -> Path:
    settings = json.loads((project / "settings" / "riverside-usd.json").read_text())
    settings["hubspot_company_id"] = company_id
    for block in ("source", "bookmarked"):  # keep the demo paths valid from the new folder
        for key in ("location", "database_url"):
            if key in settings[block]:
                settings[block][key] = settings[block][key].replace(
                    "../demo", str(project / "demo")
                )
    folder.mkdir(exist_ok=True)
    (folder / "riverside-usd.json").write_text(json.dumps(settings))
    return folder


def _hubspot_configured(monkeypatch: pytest.MonkeyPatch, server: HubSpotServer) -> None:
    """The deployment's HubSpot settings: a token reference and the local portal's URL."""
    monkeypatch.setenv("RECONCILIATION_HUBSPOT_TOKEN", "env:TEST_HUBSPOT_PAT")
    monkeypatch.setenv("TEST_HUBSPOT_PAT", TOKEN)
    monkeypatch.setenv("RECONCILIATION_HUBSPOT_URL", server.url)


def test_connections_test_reads_the_hubspot_company_and_checks_its_customer_id(
    project: Path,
    tmp_path: Path,
    hubspot_server: HubSpotServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _hubspot_configured(monkeypatch, hubspot_server)
    hubspot_server.companies["555"]["bookmarked_customer_id"] = "1001"  # riverside's id
    folder = _with_hubspot_company(project, tmp_path / "settings", "555")

    code = main(["connections", "test", "--customer", "riverside-usd", "--dir", str(folder)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert (
        "ok    hubspot    company 555 'Springfield USD', owner Casey Morgan, "
        "Bookmarked customer 1001"
    ) in out

    # a company that belongs to another customer is a configuration error
    hubspot_server.companies["555"]["bookmarked_customer_id"] = "101"
    assert main(["connections", "test", "--customer", "riverside-usd", "--dir", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "its Bookmarked customer id is '101', the settings say '1001'" in out
    assert TOKEN not in out


def test_connections_test_hubspot_skipped_when_not_configured_and_failing_when_wrong(
    project: Path,
    tmp_path: Path,
    hubspot_server: HubSpotServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = _with_hubspot_company(project, tmp_path / "settings", "999")
    monkeypatch.delenv("RECONCILIATION_HUBSPOT_TOKEN", raising=False)
    assert main(["connections", "test", "--customer", "riverside-usd", "--dir", str(folder)]) == 0
    assert "skip  hubspot    company 999: RECONCILIATION_HUBSPOT_TOKEN is not set" in (
        capsys.readouterr().out
    )

    _hubspot_configured(monkeypatch, hubspot_server)
    assert main(["connections", "test", "--customer", "riverside-usd", "--dir", str(folder)]) == 1
    assert "FAIL  hubspot    HubSpot GET /crm/v3/objects/companies/999: no company 999" in (
        capsys.readouterr().out
    )

    monkeypatch.setenv("RECONCILIATION_HUBSPOT_TOKEN", TOKEN)  # the token itself: refused
    assert main(["connections", "test", "--customer", "riverside-usd", "--dir", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "RECONCILIATION_HUBSPOT_TOKEN must be a credential reference" in out
    assert TOKEN not in out


def test_connections_test_names_an_unknown_customer(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["connections", "test", "--customer", "nobody"]) == 1
    assert "no valid settings for customer 'nobody'" in capsys.readouterr().out


def test_scan_takes_several_customers_either_way() -> None:
    from reconciliation.cli import build_parser

    args = build_parser().parse_args(["scan", "--customer", "a", "b", "--customer", "c"])
    assert args.customer == ["a", "b", "c"]
    assert build_parser().parse_args(["scan"]).customer is None
