"""Reports, settings and stored rosters on S3 (moto's real server on loopback): the same
code paths as the local folders, through `reconciliation/storage.py`."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import polars as pl
import pytest
import requests

from reconciliation import storage
from reconciliation.fleet import FLEET_SCHEMA, write_fleet_csv
from reconciliation.paths import reports_dir, settings_dir
from reconciliation.reports import (
    ReportWriteError,
    previous_summary,
    write_hold,
    write_report,
)
from reconciliation.settings import DEFAULT_SETTINGS_DIR, load_settings
from reconciliation.storage import S3Path

AT = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


def _findings(*sis_ids: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "rule": ["student_mismatch"] * len(sis_ids),
            "entity_type": ["user"] * len(sis_ids),
            "sis_id": list(sis_ids),
            "bookmarked_id": [None] * len(sis_ids),
            "status": ["ISSUE_IN_BOOKMARKED"] * len(sis_ids),
            "severity": ["high"] * len(sis_ids),
            "detail": [f"Student {s} is missing from Bookmarked." for s in sis_ids],
            "remediation": ["Re-run the sync."] * len(sis_ids),
            "details_json": ["{}"] * len(sis_ids),
        },
        schema_overrides={"bookmarked_id": pl.Int64},
    )


@pytest.fixture
def bucket(aws_env: str, request: pytest.FixtureRequest) -> str:
    name = f"reports-{request.node.name.lower().replace('_', '-')}"[:63]
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def _keys(bucket: str, prefix: str = "") -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_location_parses_s3_urls_and_local_paths(tmp_path: Path) -> None:
    where = storage.location("s3://bucket/reports/")
    assert isinstance(where, S3Path) and str(where) == "s3://bucket/reports"
    assert str(where / "lincoln-usd" / "latest") == "s3://bucket/reports/lincoln-usd/latest"
    assert (where / "a" / "b.json").name == "b.json" and (where / "b.json").suffix == ".json"
    assert [str(p) for p in (where / "a").parents] == ["s3://bucket/reports", "s3://bucket"]
    assert storage.location(str(tmp_path / "x" / ".." / "y")) == tmp_path / "y"
    with pytest.raises(ValueError, match="needs a bucket"):
        storage.location("s3:///reports")


def test_paths_follow_s3_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILIATION_REPORTS_DIR", "s3://district-reports/prod")
    monkeypatch.setenv("RECONCILIATION_SETTINGS_DIR", "s3://district-settings")
    assert reports_dir() == S3Path("district-reports", "prod")
    assert settings_dir() == S3Path("district-settings")


def test_reports_on_s3_history_latest_and_encryption(bucket: str) -> None:
    folder = storage.location(f"s3://{bucket}/reports")
    first = write_report("lincoln-usd", _findings("s-1", "s-2"), folder=folder, at=AT)
    later = AT + timedelta(days=1)
    second = write_report("lincoln-usd", _findings("s-2", "s-3"), folder=folder, at=later)

    # history read back from S3: s-2 persists with its first_seen, s-1 resolved, s-3 new
    assert (second.new, second.persisting, second.resolved) == (1, 1, 1)
    assert second.report is not None
    first_seen = dict(second.report.select("sis_id", "first_seen").iter_rows())
    assert first_seen["s-2"] == AT.isoformat(timespec="seconds")
    assert first_seen["s-3"] == later.isoformat(timespec="seconds")
    assert str(second.folder) == f"s3://{bucket}/reports/lincoln-usd/{second.run}"

    files = [
        "district_issues.csv",
        "mismatches.csv",
        "mismatches.parquet",
        "resolved.csv",
        "summary.json",
    ]
    base = "reports/lincoln-usd"
    assert _keys(bucket, base) == sorted(
        [f"{base}/{first.run}/{f}" for f in files]
        + [f"{base}/{second.run}/{f}" for f in files]
        + [f"{base}/latest/{f}" for f in files]
    ), "no partial or staging prefix is left behind"
    s3 = boto3.client("s3")
    latest = json.loads(
        s3.get_object(Bucket=bucket, Key=f"{base}/latest/summary.json")["Body"].read()
    )
    assert latest["run"] == second.run
    for key in _keys(bucket):
        assert s3.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256", key
    assert previous_summary("lincoln-usd", folder)["run"] == second.run  # type: ignore[index]


def test_leftovers_of_a_dead_run_on_s3_are_removed(bucket: str) -> None:
    folder = S3Path(bucket, "reports")
    dead = "reports/lincoln-usd/.20260301T030000.000000Z.partial/mismatches.csv"
    S3Path(bucket, dead).write_bytes(b"half")
    S3Path(bucket, "reports/lincoln-usd/.latest.x.tmp/summary.json").write_bytes(b"{}")
    summary = write_report("lincoln-usd", _findings("s-1"), folder=folder, at=AT)
    assert summary.warnings == []
    assert not [k for k in _keys(bucket) if "/." in k]


def test_kms_key_is_requested_when_configured(bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    key_id = boto3.client("kms").create_key()["KeyMetadata"]["KeyId"]
    monkeypatch.setenv(storage.KMS_KEY_ENV, key_id)
    target = S3Path(bucket, "reports/x.json")
    target.write_text("{}")
    head = boto3.client("s3").head_object(Bucket=bucket, Key="reports/x.json")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"].endswith(key_id)


def test_damaged_report_on_s3_is_skipped_with_a_warning(bucket: str) -> None:
    folder = S3Path(bucket, "reports")
    first = write_report("lincoln-usd", _findings("s-1"), folder=folder, at=AT)
    (first.folder / "mismatches.parquet").write_bytes(b"PAR1 cut")
    second = write_report("lincoln-usd", _findings("s-1"), folder=folder, at=AT + timedelta(1))
    assert second.new == 1
    assert len(second.warnings) == 1 and "skipped the damaged earlier report" in second.warnings[0]
    assert f"s3://{bucket}/reports/lincoln-usd/{first.run}" in second.warnings[0]


def test_holds_and_fleet_csv_on_s3(bucket: str) -> None:
    folder = S3Path(bucket, "reports")
    hold = write_hold("lincoln-usd", {"reasons": ["users: 0 rows"]}, folder=folder, at=AT)
    assert json.loads(hold.read_text()) == {"reasons": ["users: 0 rows"]}
    assert _keys(bucket, "reports/lincoln-usd/holds") == [f"reports/lincoln-usd/holds/{hold.name}"]
    fleet = write_fleet_csv(pl.DataFrame(schema=FLEET_SCHEMA), folder / "_fleet" / "latest.csv")
    assert fleet.read_bytes().startswith(b"\xef\xbb\xbfrank,")
    assert _keys(bucket, "reports/_fleet") == ["reports/_fleet/latest.csv"]


def test_report_link_is_a_short_lived_presigned_url(bucket: str) -> None:
    summary = write_report("lincoln-usd", _findings("s-1"), folder=S3Path(bucket, "r"), at=AT)
    url = storage.link(summary.folder / "mismatches.csv")
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == [str(storage.LINK_SECONDS)] and storage.LINK_SECONDS <= 3600
    assert "X-Amz-Signature" in query
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content.startswith(b"\xef\xbb\xbfcustomer_id,")
    local = Path("/tmp/x")
    assert storage.link(local) == str(local)


def test_write_to_a_missing_bucket_is_one_clean_error(aws_env: str) -> None:
    with pytest.raises(ReportWriteError) as caught:
        write_report("lincoln-usd", _findings("s-1"), folder=S3Path("no-such-bucket", "r"), at=AT)
    message = str(caught.value)
    assert message.startswith("cannot write the report: ") and "s3://no-such-bucket/r" in message
    assert "\n" not in message


def test_settings_folder_on_s3(bucket: str) -> None:
    for name in ("riverside-usd.json", "maple-charter.json"):
        document = (DEFAULT_SETTINGS_DIR / name).read_bytes()
        S3Path(bucket, f"settings/{name}").write_bytes(document)
    S3Path(bucket, "settings/broken.json").write_bytes(b"{")
    S3Path(bucket, "settings/.hidden.json").write_bytes(b"{")
    folder = load_settings(S3Path(bucket, "settings"), sources=False)
    assert sorted(folder.customers) == ["maple-charter", "riverside-usd"]
    assert [(e.file, e.where) for e in folder.errors] == [
        (f"s3://{bucket}/settings/broken.json", "line 1, column 2")
    ]
    riverside = folder.customers["riverside-usd"]
    assert riverside.resolve_path("/data/oneroster.zip") == Path("/data/oneroster.zip")
    with pytest.raises(ValueError, match="relative, and a settings file on S3"):
        riverside.resolve_path("../demo/data/bookmarked.db")
    missing = load_settings(S3Path(bucket, "nothing-here"))
    assert [e.message for e in missing.errors] == ["settings folder not found"]


def test_local_reports_unchanged(tmp_path: Path) -> None:
    """The local folder keeps its atomic renames (no S3 code on the way)."""
    summary = write_report("lincoln-usd", _findings("s-1"), folder=tmp_path, at=AT)
    assert isinstance(summary.folder, Path)
    assert sorted(p.name for p in (tmp_path / "lincoln-usd").iterdir()) == [summary.run, "latest"]
    shutil.rmtree(tmp_path / "lincoln-usd")
