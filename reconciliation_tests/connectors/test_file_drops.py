"""Remote file drops against real local servers: pyftpdlib (FTP, FTPS), asyncssh (SFTP) and
moto's S3 server. What users rely on: the newest matching file is the one read, it arrives
whole (size and SHA-256 recorded), and every failure says where without the password."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import paramiko
import pytest

from reconciliation.audit import AuditLog
from reconciliation.connectors.base import ConnectorError, SourceDataError
from reconciliation.connectors.file_drops import (
    DropAccess,
    RemoteFile,
    download_from_settings,
    download_newest,
    list_matching,
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


def test_no_matching_file_names_the_pattern_and_a_few_files_found(
    server: DropServer, tmp_path: Path
) -> None:
    for number in range(7):
        server.put(f"exports/Roster_{number}.ZIP", b"x", DAY)
    server.put("exports/readme.txt", b"nothing to see", DAY)

    with pytest.raises(ConnectorError) as caught:
        download_newest(server.url("exports"), tmp_path, access=login(server))

    assert str(caught.value) == (
        f"{server.url('exports')}: no file matching '*.zip'; found Roster_0.ZIP, "
        "Roster_1.ZIP, Roster_2.ZIP, Roster_3.ZIP, Roster_4.ZIP and 3 more"
    )


def test_an_empty_folder_is_said_to_be_empty(server: DropServer, tmp_path: Path) -> None:
    (server.root / "exports").mkdir()

    with pytest.raises(ConnectorError) as caught:
        download_newest(server.url("exports"), tmp_path, access=login(server))

    assert str(caught.value) == (
        f"{server.url('exports')}: no file matching '*.zip'; the folder is empty"
    )


# -- a file still being uploaded is not read ---------------------------------------------


def test_files_named_as_uploads_in_progress_are_never_chosen(
    server: DropServer, tmp_path: Path
) -> None:
    server.put("roster_0801.zip", b"yesterday, complete", DAY)
    later = DAY + timedelta(days=1)
    for in_progress in ("roster_0802.zip.part", "roster_0802.zip.filepart", "roster_0802.tmp"):
        server.put(in_progress, b"half of it", later)
    server.put(".roster_0802.zip.Xy12Ab", b"rsync's temporary copy", later)

    dropped = download_newest(server.url(), tmp_path, pattern="roster*", access=login(server))
    assert dropped.remote_name == "roster_0801.zip"
    assert [
        f.name for f in list_matching(server.url(), pattern="roster*", access=login(server))
    ] == ["roster_0801.zip"]


def test_only_an_upload_in_progress_is_said_to_be_one(server: DropServer, tmp_path: Path) -> None:
    server.put("roster.zip.part", b"half of it", DAY)

    with pytest.raises(ConnectorError) as caught:
        download_newest(server.url(), tmp_path, pattern="roster*", access=login(server))

    assert str(caught.value) == (
        f"{server.url()}: no file matching 'roster*' but uploads in progress (roster.zip.part); "
        "found roster.zip.part"
    )


def test_a_file_that_grows_while_it_is_read_is_not_kept(server: DropServer, tmp_path: Path) -> None:
    first_part = b"PK\x03\x04 the first part of the export"
    server.put("roster.zip", first_part, DAY)

    def upload_goes_on(path: Path) -> None:
        with path.open("ab") as out:
            out.write(b" and the rest")

    server.after_read = upload_goes_on
    dest = tmp_path / "dest"
    dest.mkdir()

    with pytest.raises(ConnectorError) as caught:
        download_newest(server.url(), dest, access=login(server))

    assert str(caught.value) == (
        f"{server.url()}: roster.zip changed while it was read (is it still being uploaded?)"
    )
    assert list(dest.iterdir()) == []  # neither the file nor a partial copy


# -- permissions -------------------------------------------------------------------------


def test_a_folder_the_user_may_not_enter_is_named(server: DropServer, tmp_path: Path) -> None:
    server.put("exports/roster.zip", b"x", DAY)
    server.lock("exports")

    with pytest.raises(ConnectorError) as caught:
        download_newest(server.url("exports"), tmp_path, access=login(server))

    message = str(caught.value)
    assert message.startswith(f"{server.url('exports')}: ")
    assert re.search(r"(no access to|permission denied on) folder '/exports'", message), message
    assert PASSWORD not in message


def test_a_file_the_user_may_not_read_is_named(server: DropServer, tmp_path: Path) -> None:
    server.put("exports/roster.zip", b"x", DAY)
    server.lock("exports", listable=True)
    dest = tmp_path / "dest"
    dest.mkdir()

    with pytest.raises(ConnectorError) as caught:
        download_newest(server.url("exports"), dest, access=login(server))

    message = str(caught.value)
    assert message.startswith(f"{server.url('exports')}: ")
    assert re.search(r"(no access to|permission denied on) file 'roster.zip'", message), message
    assert list(dest.iterdir()) == []


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


def test_ftps_data_connections_resume_the_tls_session(
    ftps_server_requiring_session_reuse: DropServer, tmp_path: Path
) -> None:
    server = ftps_server_requiring_session_reuse
    server.put("roster.zip", b"over a protected data channel", DAY)

    dropped = download_newest(server.url(), tmp_path, access=login(server))

    assert dropped.path.read_bytes() == b"over a protected data channel"


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


def test_sftp_pinned_key_line_of_the_servers_other_key_type_is_asked_for(
    sftp_server: DropServer, tmp_path: Path
) -> None:
    """The server has an Ed25519 and an ECDSA key and would offer Ed25519 first; a provider
    that gave us its ECDSA key line must not see the connection refused."""
    sftp_server.put("roster.zip", b"x", DAY)
    access = login(sftp_server, host_key=sftp_server.other_host_key_line)

    assert download_newest(sftp_server.url(), tmp_path, access=access).size == 1


def test_sftp_pinned_key_line_that_differs_is_refused(
    sftp_server: DropServer, tmp_path: Path
) -> None:
    sftp_server.put("roster.zip", b"x", DAY)
    stranger = paramiko.ECDSAKey.generate()
    access = login(sftp_server, host_key=f"{stranger.get_name()} {stranger.get_base64()}")

    with pytest.raises(ConnectorError) as caught:
        download_newest(sftp_server.url(), tmp_path, access=access)

    assert str(caught.value).startswith(
        f"{sftp_server.url()}: the server's host key ecdsa-sha2-nistp256 SHA256:"
    )
    assert str(caught.value).endswith("differs from `host_key`")


def test_sftp_accepts_the_fingerprint_line_ssh_keygen_prints(
    sftp_server: DropServer, tmp_path: Path
) -> None:
    sftp_server.put("roster.zip", b"x", DAY)
    printed = f"256 {sftp_server.host_key_fingerprint} root@sftp.example (ED25519)"

    dropped = download_newest(
        sftp_server.url(), tmp_path, access=login(sftp_server, host_key=printed)
    )
    assert dropped.remote_name == "roster.zip"


@pytest.mark.parametrize(
    "host_key",
    ["MD5:16:27:ac:a5:76:28:2d:36", "ssh-ed25519 not-base64!", "ssh-ed25519 AAAA", "x y z", ""],
)
def test_sftp_host_key_that_is_no_key_is_a_clear_error(
    sftp_server: DropServer, tmp_path: Path, host_key: str
) -> None:
    with pytest.raises(ConnectorError) as caught:
        download_newest(sftp_server.url(), tmp_path, access=login(sftp_server, host_key=host_key))

    assert str(caught.value) == (
        f"{sftp_server.url()}: `host_key` must be the server key's fingerprint `SHA256:...` "
        "or its public key line `ssh-ed25519 AAAA...`"
    )


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


def test_s3_reads_past_the_first_thousand_keys(aws_env: str, tmp_path: Path) -> None:
    """ListObjectsV2 answers 1000 keys a page; the newest file sorts after all of them."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="big-drops")

    def put(number: int) -> None:
        s3.put_object(Bucket="big-drops", Key=f"d7/a_{number:04}.zip", Body=b"old")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(1000)))
    time.sleep(1.05)  # S3 times have one-second resolution
    s3.put_object(Bucket="big-drops", Key="d7/b_newest.zip", Body=b"newest")

    dropped = download_newest("s3://big-drops/d7/", tmp_path)

    assert (dropped.remote_name, dropped.path.read_bytes()) == ("b_newest.zip", b"newest")
    with pytest.raises(ConnectorError) as caught:
        download_newest("s3://big-drops/d7/", tmp_path, pattern="roster_*.zip")
    assert str(caught.value) == (
        "s3://big-drops/d7/: no file matching 'roster_*.zip'; found a_0000.zip, a_0001.zip, "
        "a_0002.zip, a_0003.zip, a_0004.zip and 996 more"
    )


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

GRAND_BEND = Path(__file__).parent.parent / "data" / "oneroster" / "edfi-grand-bend-1.1-csv"


def grand_bend_zip(folder: Path) -> bytes:
    """Grand Bend's bulk set as `folder/grand-bend.zip`; its bytes."""
    archive = folder / "grand-bend.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for csv_file in sorted(GRAND_BEND.glob("*.csv")):
            out.write(csv_file, csv_file.name)
    return archive.read_bytes()


def test_oneroster_connector_reads_the_newest_zip_from_a_drop(
    sftp_server: DropServer, tmp_path: Path
) -> None:
    archive = tmp_path / "grand-bend.zip"
    data = grand_bend_zip(tmp_path)
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


def test_the_downloaded_copy_is_deleted_after_a_read_and_after_a_failed_one(
    sftp_server: DropServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Student data must not stay in the temporary folder, whatever happens to the read."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # the standard library's setting
    sftp_server.put("drops/export.zip", bad_grand_bend_zip(tmp_path), DAY)
    sftp_server.put("good/export.zip", grand_bend_zip(tmp_path), DAY)

    with pytest.raises(SourceDataError):
        csv_connector(tmp_path, drop_source(sftp_server, "drops")).fetch_roster()
    assert list(temp.iterdir()) == []
    roster = csv_connector(tmp_path, drop_source(sftp_server, "good")).fetch_roster()
    assert roster.row_counts()["users"] == 10
    assert list(temp.iterdir()) == []


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


def test_a_dropped_zip_bomb_is_refused_under_the_settings_limits(
    sftp_server: DropServer, tmp_path: Path
) -> None:
    """source.limits reach a dropped zip too, and the error names it on the drop."""
    sftp_server.put("drops/export-2026-11-25.zip", grand_bend_zip(tmp_path), DAY)
    source = {**drop_source(sftp_server, "drops"), "limits": {"max_uncompressed_bytes": 5_000}}

    with pytest.raises(SourceDataError) as caught:
        csv_connector(tmp_path, source).fetch_roster()

    remote = f"{sftp_server.url('drops')}/export-2026-11-25.zip"
    assert caught.value.file == f"{remote}!enrollments.csv"
    assert "over the limit of 5,000 (source.limits.max_uncompressed_bytes)" in str(caught.value)
    assert "reconciliation-drop-" not in str(caught.value)  # never the temporary copy
