"""Remote file drops against real local servers: pyftpdlib (FTP, FTPS), asyncssh (SFTP) and
moto's S3 server. What users rely on: the newest matching file is the one read, it arrives
whole (size and SHA-256 recorded), and every failure says where without the password."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from reconciliation.audit import AuditLog
from reconciliation.connectors.base import ConnectorError, SourceDataError
from reconciliation.connectors.file_drops import (
    DropAccess,
    RemoteFile,
    download_from_settings,
    download_newest,
    newest,
)
from reconciliation.connectors.oneroster_csv import OneRosterCsvConnector
from reconciliation.credentials import CredentialResolver
from reconciliation.settings import parse_file
from reconciliation_tests.fixtures.aws import free_port
from reconciliation_tests.fixtures.file_servers import PASSWORD, DropServer

DAY = datetime(2026, 8, 1, 6, 0, tzinfo=UTC)


def login(server: DropServer, password: str = PASSWORD, **options: object) -> DropAccess:
    """The server's login, with the password resolved like a settings reference."""
    secret = CredentialResolver({"DROP_PASSWORD": password}).resolve("env:DROP_PASSWORD")
    trust: dict[str, object] = {}
    if server.ca_file:
        trust["tls_ca_file"] = server.ca_file
    if server.host_key_fingerprint:
        trust["host_key"] = server.host_key_fingerprint
    return DropAccess(username=server.username, password=secret, **{**trust, **options})  # type: ignore[arg-type]


@pytest.fixture(params=["ftp_server", "ftps_server", "sftp_server"])
def server(request: pytest.FixtureRequest) -> DropServer:
    return request.getfixturevalue(request.param)


def test_newest_matching_file_is_downloaded_whole(server: DropServer, tmp_path: Path) -> None:
    newer = b"PK\x03\x04 newer export " * 5000  # > one chunk of some transports
    server.put("exports/b_older.zip", b"older export", DAY)
    server.put("exports/a_newer.zip", newer, DAY + timedelta(hours=1))
    server.put("exports/z_newest.csv", b"not a zip", DAY + timedelta(hours=2))
    server.put("exports/later/zz.zip", b"in a sub-folder", DAY + timedelta(hours=3))
    dest = tmp_path / "dest"
    dest.mkdir()

    dropped = download_newest(server.url("exports"), dest, access=login(server))

    assert dropped.remote_name == "a_newer.zip"
    assert dropped.path == dest / "a_newer.zip"
    assert dropped.path.read_bytes() == newer
    assert dropped.size == len(newer)
    assert dropped.sha256 == hashlib.sha256(newer).hexdigest()
    assert dropped.modified == DAY + timedelta(hours=1)
    assert sorted(p.name for p in dest.iterdir()) == ["a_newer.zip"]  # no partial file left
    assert dropped.meta() == {
        "remote_name": "a_newer.zip",
        "size": len(newer),
        "sha256": hashlib.sha256(newer).hexdigest(),
        "modified": "2026-08-01T07:00:00+00:00",
    }


def test_pattern_picks_among_matching_files_only(server: DropServer, tmp_path: Path) -> None:
    server.put("roster_district.zip", b"district", DAY)
    server.put("gradebook.zip", b"gradebook", DAY + timedelta(hours=1))

    dropped = download_newest(server.url(), tmp_path, pattern="roster_*.zip", access=login(server))

    assert dropped.remote_name == "roster_district.zip"


def test_a_tie_in_time_goes_to_the_greater_name(server: DropServer, tmp_path: Path) -> None:
    server.put("roster_20260801.zip", b"first", DAY)
    server.put("roster_20260802.zip", b"second", DAY)

    assert download_newest(server.url(), tmp_path, access=login(server)).remote_name == (
        "roster_20260802.zip"
    )


def test_wrong_password_names_the_location_not_the_password(
    server: DropServer, tmp_path: Path
) -> None:
    server.put("roster.zip", b"x", DAY)
    wrong = "wrong-password-5678"

    with pytest.raises(ConnectorError) as caught:
        download_newest(server.url("x"), tmp_path, access=login(server, password=wrong))

    message = str(caught.value)
    assert f"{server.scheme}://127.0.0.1:{server.port}/x" in message
    assert "login refused for user 'drop-user'" in message
    assert wrong not in message and PASSWORD not in message


def test_no_matching_file_is_a_clear_error(server: DropServer, tmp_path: Path) -> None:
    server.put("readme.txt", b"nothing to see", DAY)

    with pytest.raises(ConnectorError, match=r"/: no file matching '\*\.zip'$"):
        download_newest(server.url(), tmp_path, access=login(server))


@pytest.mark.parametrize("scheme", ["ftp", "ftps", "sftp"])
def test_unreachable_host_is_a_clear_error(scheme: str, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(ConnectorError, match=rf"{scheme}://127\.0\.0\.1:{port}/in: cannot reach"):
        download_newest(
            f"{scheme}://127.0.0.1:{port}/in",
            tmp_path,
            access=DropAccess(username="u", host_key="SHA256:x", timeout=5),
        )


def test_missing_folder_is_a_clear_error(server: DropServer, tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match=r"/nope: .*(not found|no access)"):
        download_newest(server.url("nope"), tmp_path, access=login(server))


def test_ftp_server_without_mlsd_is_listed_with_mdtm(
    ftp_server_without_mlsd: DropServer, tmp_path: Path
) -> None:
    server = ftp_server_without_mlsd
    server.put("b_older.zip", b"older", DAY)
    server.put("a_newer.zip", b"newer!", DAY + timedelta(minutes=1))
    server.put("folder.zip/inner.txt", b"a folder named like a zip", DAY + timedelta(hours=1))

    dropped = download_newest(server.url(), tmp_path, access=login(server))

    assert (dropped.remote_name, dropped.size) == ("a_newer.zip", 6)
    assert dropped.modified == DAY + timedelta(minutes=1)


def test_password_in_the_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError) as caught:
        download_newest("sftp://user:hunter2hunter2@127.0.0.1:22/in", tmp_path)
    assert "hunter2hunter2" not in str(caught.value)
    assert "credential reference" in str(caught.value)


def test_unsupported_scheme(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match="unsupported scheme 'http'"):
        download_newest("http://example.org/exports", tmp_path)


# -- trust -------------------------------------------------------------------------------


def test_ftps_refuses_a_certificate_it_was_not_told_to_trust(
    ftps_server: DropServer, tmp_path: Path
) -> None:
    ftps_server.put("roster.zip", b"x", DAY)
    untrusting = DropAccess(username=ftps_server.username, password=login(ftps_server).password)

    with pytest.raises(ConnectorError, match=r"TLS certificate is not trusted.*tls_ca_file"):
        download_newest(ftps_server.url(), tmp_path, access=untrusting)


def test_sftp_refuses_an_unknown_host_key_and_shows_its_fingerprint(
    sftp_server: DropServer, tmp_path: Path
) -> None:
    sftp_server.put("roster.zip", b"x", DAY)
    unpinned = login(sftp_server, host_key=None)

    with pytest.raises(ConnectorError) as caught:
        download_newest(sftp_server.url(), tmp_path, access=unpinned)

    offered = f"ssh-ed25519 {sftp_server.host_key_fingerprint}"
    assert f"{offered} is not in known_hosts" in str(caught.value)


def test_sftp_refuses_a_host_key_other_than_the_pinned_one(
    sftp_server: DropServer, tmp_path: Path
) -> None:
    sftp_server.put("roster.zip", b"x", DAY)
    other = "SHA256:" + "A" * 43

    with pytest.raises(ConnectorError, match="does not match `host_key`"):
        download_newest(sftp_server.url(), tmp_path, access=login(sftp_server, host_key=other))


def test_sftp_accepts_a_pinned_public_key_line_and_a_private_key(
    sftp_server: DropServer, tmp_path: Path
) -> None:
    sftp_server.put("roster.zip", b"by key", DAY)
    key = CredentialResolver({"DROP_KEY": sftp_server.client_key or ""}).resolve("env:DROP_KEY")
    access = DropAccess(
        username=sftp_server.username,
        private_key=key,
        host_key=f"[127.0.0.1]:{sftp_server.port} {sftp_server.host_key_line}",
    )

    dropped = download_newest(sftp_server.url(), tmp_path, access=access)
    assert dropped.path.read_bytes() == b"by key"


# -- S3 ----------------------------------------------------------------------------------


def test_s3_newest_object_directly_under_the_prefix(aws_env: str, tmp_path: Path) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="sis-drops")
    s3.put_object(Bucket="sis-drops", Key="district-7/b_older.zip", Body=b"older")
    s3.put_object(Bucket="sis-drops", Key="district-7/notes.txt", Body=b"not a zip")
    time.sleep(1.05)  # S3 times have one-second resolution
    s3.put_object(Bucket="sis-drops", Key="district-7/a_newer.zip", Body=b"newer")
    s3.put_object(Bucket="sis-drops", Key="district-7/archive/zz.zip", Body=b"deeper")
    s3.put_object(Bucket="sis-drops", Key="district-70/zz.zip", Body=b"other customer")

    dropped = download_newest("s3://sis-drops/district-7", tmp_path)

    assert (dropped.remote_name, dropped.path.read_bytes()) == ("a_newer.zip", b"newer")
    assert dropped.sha256 == hashlib.sha256(b"newer").hexdigest()
    head = s3.head_object(Bucket="sis-drops", Key="district-7/a_newer.zip")
    assert dropped.modified == head["LastModified"]


def test_s3_missing_bucket_and_missing_file(aws_env: str, tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match=r"s3://no-such-bucket/x: bucket .* not found"):
        download_newest("s3://no-such-bucket/x", tmp_path)
    boto3.client("s3").create_bucket(Bucket="empty-drops")
    with pytest.raises(ConnectorError, match=r"s3://empty-drops/x: no file matching"):
        download_newest("s3://empty-drops/x", tmp_path)


# -- from a settings file ----------------------------------------------------------------


def write_settings(folder: Path, source: dict[str, object]) -> Path:
    path = folder / "drop-customer.json"
    path.write_text(
        json.dumps(
            {
                "customer_id": "drop-customer",
                "name": "Drop ISD",
                "environment": "staging",
                "bookmarked": {"customer_id": 7, "database_url": "sqlite:///unused.db"},
                "source": {"type": "oneroster_csv", **source},
            }
        )
    )
    return path


def test_settings_block_drives_the_download(ftps_server: DropServer, tmp_path: Path) -> None:
    ftps_server.put("in/roster.zip", b"from settings", DAY)
    assert ftps_server.ca_file is not None
    settings = parse_file(
        write_settings(
            tmp_path,
            {
                "location": ftps_server.url("in"),
                "pattern": "roster*.zip",
                "username": "env:DROP_USER",
                "password": "env:DROP_PASSWORD",
                "tls_ca_file": ftps_server.ca_file.name,  # relative to the settings file
                "passive": True,
            },
        )
    )
    credentials = CredentialResolver({"DROP_USER": ftps_server.username, "DROP_PASSWORD": PASSWORD})
    dest = tmp_path / "dest"
    dest.mkdir()

    dropped = download_from_settings(settings, credentials, dest)

    assert dropped.path.read_bytes() == b"from settings"


def test_newest_is_pure() -> None:
    files = [
        RemoteFile("b.zip", DAY),
        RemoteFile("a.zip", DAY + timedelta(seconds=1)),
        RemoteFile("c.zip", DAY),
    ]
    assert newest(files) == files[1]
    assert newest([RemoteFile("b.zip", DAY), RemoteFile("c.zip", DAY)]).name == "c.zip"  # type: ignore[union-attr]
    assert newest([]) is None


# -- end to end: a OneRoster zip on an SFTP drop -----------------------------------------

GRAND_BEND = Path("/work/shared/external/oneroster/edfi-grand-bend-1.1-csv")


def test_oneroster_connector_reads_the_newest_zip_from_a_drop(
    sftp_server: DropServer, tmp_path: Path
) -> None:
    archive = tmp_path / "grand-bend.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for csv_file in sorted(GRAND_BEND.glob("*.csv")):
            out.write(csv_file, csv_file.name)
    data = archive.read_bytes()
    sftp_server.put("outgoing/roster_20260802.zip", data, DAY + timedelta(days=1))
    sftp_server.put("outgoing/roster_20260801.zip", b"yesterday's, not a zip", DAY)
    settings = parse_file(
        write_settings(
            tmp_path,
            {
                "location": sftp_server.url("outgoing"),
                "username": sftp_server.username,
                "password": "env:DROP_PASSWORD",
                "host_key": sftp_server.host_key_fingerprint,
            },
        )
    )
    audit = AuditLog(None)
    connector = OneRosterCsvConnector(
        settings, CredentialResolver({"DROP_PASSWORD": PASSWORD}), audit
    )

    roster = connector.fetch_roster()

    local = OneRosterCsvConnector(
        parse_file(write_settings(tmp_path, {"location": str(archive)})), audit=AuditLog(None)
    ).fetch_roster()
    for table in ("schools", "users", "links", "classes", "enrollments"):
        assert roster.table(table).equals(local.table(table)), table
    assert roster.row_counts()["users"] == 10
    assert roster.meta["drop"] == {
        "remote_name": "roster_20260802.zip",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "modified": "2026-08-02T06:00:00+00:00",
    }
    assert roster.meta["location"] == sftp_server.url("outgoing")
    assert audit.events[-1].detail == sftp_server.url("outgoing")
    assert PASSWORD not in json.dumps(roster.meta, default=str)


# -- the OneRoster connector's test_connection on a drop: listed, not downloaded ---------


def drop_source(server: DropServer, folder: str = "exports") -> dict[str, object]:
    """A settings `source` block for the server, trusting it as the settings would."""
    source: dict[str, object] = {
        "location": server.url(folder),
        "username": server.username,
        "password": "env:DROP_PASSWORD",
    }
    if server.ca_file:
        source["tls_ca_file"] = str(server.ca_file)
    if server.host_key_fingerprint:
        source["host_key"] = server.host_key_fingerprint
    return source


def csv_connector(tmp_path: Path, source: dict[str, object]) -> OneRosterCsvConnector:
    return OneRosterCsvConnector(
        parse_file(write_settings(tmp_path, source)),
        CredentialResolver({"DROP_PASSWORD": PASSWORD}),
        AuditLog(None),
    )


def test_test_connection_names_the_newest_file_without_downloading_it(
    server: DropServer, tmp_path: Path
) -> None:
    newest_time = DAY + timedelta(days=1)
    server.put("exports/roster_20260801.zip", b"older", DAY)
    newest_file = server.put("exports/roster_20260802.zip", b"n" * 1234, newest_time)
    server.put("exports/notes.txt", b"not matched", DAY + timedelta(days=2))
    connector = csv_connector(tmp_path, drop_source(server))

    report = connector.test_connection()

    assert report == (
        f"{server.url('exports')}: 2 file(s) match '*.zip'; the newest, roster_20260802.zip "
        "(1,234 bytes, modified 2026-08-02T06:00:00+00:00), is the one the next read will "
        "download"
    )
    # nobody read the file: a read would have set its access time (relatime) ...
    assert newest_file.stat().st_atime == newest_time.timestamp()
    # ... as a download does, which proves the check above can fail
    download_newest(server.url("exports"), tmp_path, access=login(server))
    assert newest_file.stat().st_atime != newest_time.timestamp()


def test_test_connection_on_s3_names_the_newest_object_without_downloading_it(
    aws_env: str, tmp_path: Path
) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="archived-drops")
    s3.put_object(Bucket="archived-drops", Key="district-7/roster_20260801.zip", Body=b"older")
    # archived to Glacier: listed like any object, but GetObject is refused until restored
    s3.put_object(
        Bucket="archived-drops",
        Key="district-7/roster_20260802.zip",
        Body=b"newer",
        StorageClass="GLACIER",
    )
    modified = s3.head_object(Bucket="archived-drops", Key="district-7/roster_20260802.zip")[
        "LastModified"
    ]
    connector = csv_connector(tmp_path, {"location": "s3://archived-drops/district-7"})

    report = connector.test_connection()

    assert report == (
        "s3://archived-drops/district-7: 2 file(s) match '*.zip'; the newest, roster_20260802.zip "
        f"(5 bytes, modified {modified.isoformat(timespec='seconds')}), is the one the next "
        "read will download"
    )
    with pytest.raises(ConnectorError, match="InvalidObjectState"):  # a download fails
        connector.fetch_roster()


def test_test_connection_on_a_drop_without_a_matching_file(
    ftp_server: DropServer, tmp_path: Path
) -> None:
    ftp_server.put("exports/readme.txt", b"nothing to read", DAY)
    connector = csv_connector(tmp_path, {**drop_source(ftp_server), "pattern": "roster_*.zip"})

    with pytest.raises(ConnectorError) as caught:
        connector.test_connection()

    assert str(caught.value) == (
        f"{ftp_server.url('exports')}: logged in, but no file matches 'roster_*.zip'"
    )


def test_test_connection_with_a_wrong_password_names_the_drop_not_the_password(
    sftp_server: DropServer, tmp_path: Path
) -> None:
    connector = OneRosterCsvConnector(
        parse_file(write_settings(tmp_path, drop_source(sftp_server))),
        CredentialResolver({"DROP_PASSWORD": "wrong-password-5678"}),
        AuditLog(None),
    )

    with pytest.raises(ConnectorError) as caught:
        connector.test_connection()

    assert str(caught.value).startswith(f"{sftp_server.url('exports')}: login refused for user")
    assert "wrong-password-5678" not in str(caught.value)


# -- a bad file inside a downloaded zip is located on the drop ---------------------------


def bad_grand_bend_zip(folder: Path) -> bytes:
    """Grand Bend as a zip whose users.csv has `enabledUser` = `maybe` on line 7."""
    with (GRAND_BEND / "users.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    rows[6][rows[0].index("enabledUser")] = "maybe"  # rows[6] is line 7
    users = io.StringIO()
    csv.writer(users, lineterminator="\n").writerows(rows)
    archive = folder / "bad.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for csv_file in sorted(GRAND_BEND.glob("*.csv")):
            if csv_file.name != "users.csv":
                out.write(csv_file, csv_file.name)
        out.writestr("users.csv", users.getvalue())
    return archive.read_bytes()


def test_a_bad_file_in_a_dropped_zip_is_named_by_its_remote_location(
    sftp_server: DropServer, tmp_path: Path
) -> None:
    sftp_server.put("drops/export-2026-11-25.zip", bad_grand_bend_zip(tmp_path), DAY)
    connector = csv_connector(tmp_path, drop_source(sftp_server, "drops"))

    with pytest.raises(SourceDataError) as caught:
        connector.fetch_roster()

    error = caught.value
    remote = f"{sftp_server.url('drops')}/export-2026-11-25.zip!users.csv"
    assert (error.file, error.line, error.column, error.field) == (remote, 7, 4, "enabledUser")
    assert str(error).startswith(f"{remote}, line 7, column 4 (enabledUser), record ")
    assert "reconciliation-drop-" not in str(error)  # never the temporary copy


def test_a_dropped_file_that_is_not_a_zip_is_named_by_its_remote_location(
    sftp_server: DropServer, tmp_path: Path
) -> None:
    sftp_server.put("drops/export-2026-11-25.zip", b"sourcedId,name\n", DAY)
    connector = csv_connector(tmp_path, drop_source(sftp_server, "drops"))

    with pytest.raises(SourceDataError) as caught:
        connector.fetch_roster()

    assert caught.value.file == f"{sftp_server.url('drops')}/export-2026-11-25.zip"
    assert "not a readable zip file" in str(caught.value)
