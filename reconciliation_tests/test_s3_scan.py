"""The production shape end to end, once: `reconcile scan` of one demo customer on the
dagster-postgres instance (deploy/dagster.postgres.yaml), with its settings, reports and
stored rosters on S3 (moto's real server on loopback, reached through boto3's standard
AWS_ENDPOINT_URL, as the code reaches AWS). It is also the suite's one scan on the
dagster-postgres instance config: a scan on local folders there would add nothing but time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import dagster as dg
import pytest
import requests
import sqlalchemy as sa

from reconciliation.demo import generate_demo
from reconciliation.settings import DEFAULT_SETTINGS_DIR
from reconciliation_tests.fixtures.postgres import throwaway_database

ROOT = Path(__file__).resolve().parents[1]
RECONCILE = str(Path(sys.executable).with_name("reconcile"))
CUSTOMER = "riverside-usd"
BUCKET = "district-reconciliation"


@pytest.fixture(scope="module")
def dagster_db(pg_server_url: sa.URL) -> Iterator[str]:
    """A database of its own (the session's `pg_url` is shared with other scans)."""
    with throwaway_database(pg_server_url, "reconciliation_s3") as url:
        yield url.render_as_string(hide_password=False)


def _settings_with_absolute_paths(data: Path) -> bytes:
    """The demo customer's settings as production has them: no path relative to a
    settings folder (a bucket has no folder beside it)."""
    document = json.loads((DEFAULT_SETTINGS_DIR / f"{CUSTOMER}.json").read_text())
    document["bookmarked"]["database_url"] = f"sqlite:///{data / 'bookmarked.db'}"
    document["source"]["location"] = str(data / CUSTOMER / "oneroster.zip")
    return json.dumps(document, indent=2).encode()


@pytest.mark.postgres
def test_scan_on_dagster_postgres_with_s3(
    aws_env: str, dagster_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "demo" / "data"
    generate_demo(data)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(
        Bucket=BUCKET,
        Key=f"settings/{CUSTOMER}.json",
        Body=_settings_with_absolute_paths(data),
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    local = tmp_path / "local"  # nothing of the run may land here
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": dagster_db,
        "RECONCILIATION_SETTINGS_DIR": f"s3://{BUCKET}/settings",
        "RECONCILIATION_REPORTS_DIR": f"s3://{BUCKET}/reports",
        "RECONCILIATION_STORAGE_DIR": f"s3://{BUCKET}/storage",
        # the application database (with the audit trail) is its own concern, not on S3
        "RECONCILIATION_APP_DB": f"sqlite:///{local / 'app.db'}",
    }
    local.mkdir()
    result = subprocess.run(
        [RECONCILE, "scan", "--customer", CUSTOMER],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    latest = {k.rsplit("/", 1)[1] for k in keys if k.startswith(f"reports/{CUSTOMER}/latest/")}
    assert latest == {
        "district_issues.csv",
        "mismatches.csv",
        "mismatches.parquet",
        "resolved.csv",
        "summary.json",
    }
    runs = {k.split("/")[2] for k in keys if k.startswith(f"reports/{CUSTOMER}/2")}
    assert len(runs) == 1, keys
    assert not [k for k in keys if "/." in k], "no partial or staging objects are left"
    summary = json.loads(
        s3.get_object(Bucket=BUCKET, Key=f"reports/{CUSTOMER}/latest/summary.json")["Body"].read()
    )
    assert summary["total"] > 0 and summary["folder"].startswith(f"s3://{BUCKET}/reports/")
    assert any(k.startswith(f"storage/rosters/source_roster/{CUSTOMER}/") for k in keys)
    assert any(k.startswith(f"storage/rosters/bookmarked_roster/{CUSTOMER}/") for k in keys)
    for key in keys:  # everything the scan wrote (the settings are the operator's)
        if key.startswith("settings/"):
            continue
        assert s3.head_object(Bucket=BUCKET, Key=key)["ServerSideEncryption"] == "AES256", key
    assert not (tmp_path / "reports").exists() and not (tmp_path / "storage").exists()

    # the run is in PostgreSQL, and its report links are presigned, short-lived URLs
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_db)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.fetch_materializations(dg.AssetKey("mismatch_report"), limit=1)
        (record,) = records.records
        metadata = record.asset_materialization.metadata  # type: ignore[union-attr]
    link = metadata["mismatches.csv"].value
    assert isinstance(link, str) and link.startswith(aws_env)
    assert parse_qs(urlsplit(link).query)["X-Amz-Expires"] == ["3600"]
    download = requests.get(link, timeout=10)
    assert download.status_code == 200 and download.content.startswith(b"\xef\xbb\xbfcustomer_id")
    engine = sa.create_engine(dagster_db)
    with engine.connect() as connection:
        statuses = connection.execute(sa.text("select status from runs")).scalars().all()
    engine.dispose()
    assert statuses == ["SUCCESS"]
