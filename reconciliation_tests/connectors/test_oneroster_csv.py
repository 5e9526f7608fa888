"""The OneRoster CSV connector on real public bulk sets and on broken copies of them.

The Grand Bend sets (`reconciliation_tests/data/oneroster/`) are real exports with their
authors' quirks: `manifest.version` 1, `metadata.*` columns, teacher rows with an extra
trailing comma, a course sourcedId with a leading zero, a 1.0 set without a manifest.
Broken variants are copies in `tmp_path`; every error is asserted down to its location.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import zipfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from reconciliation.audit import AuditLog
from reconciliation.connectors.base import ConnectorError, SourceDataError
from reconciliation.connectors.oneroster_csv import (
    OneRosterCsvConnector,
    open_bulk_set,
    read_bulk_set,
)
from reconciliation.roster import TABLES, Roster
from reconciliation.settings import CustomerSettings, validate_document

SAMPLES = Path(__file__).parent.parent / "data" / "oneroster"
GRAND_BEND_11 = SAMPLES / "edfi-grand-bend-1.1-csv"
GRAND_BEND_10 = SAMPLES / "edfi-grand-bend-1.0-csv"
STUDENTS = ["604863", "604874", "604918", "604927", "604938", "604969", "604974", "605015"]
TEACHERS = ["207270", "207268"]
ALGEBRA = "25590100102Trad220ALG112011"
ENGLISH = "25590100101Trad120ENG112011"
FALL = "255901001_2021_2020-2021_Fall"


# -- helpers ---------------------------------------------------------------------------


def copy_set(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def zip_set(
    folder: Path, target: Path, prefix: str = "", extra: dict[str, bytes] | None = None
) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.iterdir()):
            archive.write(file, prefix + file.name)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return target


def edit_csv(path: Path, change: Callable[[list[list[str]]], None]) -> None:
    """Rewrite a CSV file after `change` edits its rows (header included) in place."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    change(rows)
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


def lines(*rows: str) -> str:
    return "\n".join(rows) + "\n"


def read(location: Path) -> Roster:
    return read_bulk_set(open_bulk_set(location), "grand-bend")


def read_error(location: Path) -> SourceDataError:
    with pytest.raises(SourceDataError) as caught:
        read(location)
    return caught.value


def users_by_id(roster: Roster) -> dict[str, dict]:
    return {row["sis_id"]: row for row in roster.users.iter_rows(named=True)}


def assert_same_roster(left: Roster, right: Roster) -> None:
    for table in TABLES:
        assert left.table(table).equals(right.table(table)), table


def settings(tmp_path: Path, source: dict) -> CustomerSettings:
    return CustomerSettings(
        customer_id="grand-bend",
        name="Grand Bend ISD",
        environment="staging",
        bookmarked={"customer_id": 7, "database_url": "sqlite://"},
        source={"type": "oneroster_csv", **source},
        path=tmp_path / "settings" / "grand-bend.json",
    )


# -- the real samples ------------------------------------------------------------------


def test_grand_bend_1_1_canonical_values() -> None:
    roster = read(GRAND_BEND_11)
    assert roster.row_counts() == {
        "schools": 1,
        "users": 10,
        "links": 0,
        "classes": 2,
        "enrollments": 24,
    }
    assert roster.schools.select("sis_id", "name", "state_id", "active").rows() == [
        ("255901001", "Grand Bend High School", None, True)
    ]

    users = users_by_id(roster)
    assert [u for u in users if users[u]["role"] == "student"] == STUDENTS
    mary = users["604863"]
    assert {
        k: mary[k]
        for k in (
            "role",
            "role_raw",
            "first_name",
            "last_name",
            "email",
            "email_normalized",
            "username",
            "grade",
            "grade_raw",
            "school_sis_id",
            "active",
            "deleted",
        )
    } == {
        "role": "student",
        "role_raw": "student",
        "first_name": "Mary",
        "last_name": "Archer",
        "email": "Mary.Archer@studentgps.org",
        "email_normalized": "mary.archer@studentgps.org",
        "username": "Mary Archer",
        "grade": "09",
        "grade_raw": "09",
        "school_sis_id": "255901001",
        "active": True,
        "deleted": False,
    }
    # the two teacher rows carry a 19th, empty field: read, not refused
    assert [(users[t]["role"], users[t]["email_normalized"]) for t in TEACHERS] == [
        ("teacher", "kelley.christian@studentgps.org"),
        ("teacher", "sara.preston@studentgps.org"),
    ]

    # course sourcedId "03100500" keeps its leading zero and finds courseCode ALG-1
    assert roster.classes.sort("sis_id").select(
        "sis_id", "school_sis_id", "name", "course_code", "term_sis_id", "active"
    ).rows() == [
        (ENGLISH, "255901001", "ENG-1", "ENG-1", FALL, True),
        (ALGEBRA, "255901001", "ALG-1", "ALG-1", FALL, True),
    ]
    first = roster.enrollments.row(0, named=True)
    assert first == {
        "sis_id": "6F4283DC-F831-4437-A9A3-E030C7AF0493",
        "class_sis_id": ENGLISH,
        "user_sis_id": "604863",
        "role": "student",
        "active": False,  # ended in 2020
        "start_date": date(2020, 8, 17),
        "end_date": date(2020, 12, 18),
        "bookmarked_id": None,
    }
    assert roster.enrollments.group_by("role").len().sort("role").rows() == [
        ("student", 20),
        ("teacher", 4),
    ]


def test_grand_bend_1_1_meta_names_files_with_checksums() -> None:
    meta = read(GRAND_BEND_11).meta
    assert meta["oneroster_version"] == "1.1"
    assert meta["manifest"]["manifest.version"] == "1"
    assert meta["manifest_notes"] == []
    assert sorted(meta["files"]) == [
        "classes.csv",
        "courses.csv",
        "enrollments.csv",
        "manifest.csv",
        "orgs.csv",
        "users.csv",
    ]
    users = (GRAND_BEND_11 / "users.csv").read_bytes()
    assert meta["files"]["users.csv"] == {
        "sha256": hashlib.sha256(users).hexdigest(),
        "bytes": len(users),
        "records": 10,
    }
    assert meta["as_of"] == date.today().isoformat()


@pytest.mark.parametrize("prefix", ["", "GrandBend/"])
def test_zipped_set_reads_like_the_folder(tmp_path: Path, prefix: str) -> None:
    archive = zip_set(
        GRAND_BEND_11,
        tmp_path / "oneroster.zip",
        prefix,
        extra={"__MACOSX/._users.csv": b"\x00\x05junk", ".DS_Store": b"\x00"}
        if not prefix
        else {f"{prefix}.DS_Store": b"\x00"},
    )
    zipped = read(archive)
    assert_same_roster(zipped, read(GRAND_BEND_11))
    assert zipped.meta["files"][f"{prefix}users.csv"]["records"] == 10


def test_grand_bend_1_0_without_manifest() -> None:
    roster = read(GRAND_BEND_10)
    assert roster.meta["oneroster_version"] == "1.0"
    assert roster.meta["manifest"] == {}
    assert roster.row_counts() == {
        "schools": 1,
        "users": 10,
        "links": 0,
        "classes": 2,
        "enrollments": 24,
    }
    users = users_by_id(roster)
    assert (users["604863"]["school_sis_id"], users["604863"]["grade"]) == ("255901001", None)
    # 1.0 names: termSourcedId (singular); course "3100500" without the leading zero
    assert roster.classes.sort("sis_id").select("sis_id", "course_code", "term_sis_id").rows() == [
        (ENGLISH, "ENG-1", FALL),
        (ALGEBRA, "ALG-1", FALL),
    ]
    # 1.0 enrollments have no dates: all active
    assert roster.enrollments["active"].all()
    assert roster.enrollments["end_date"].is_null().all()


# -- the connector ---------------------------------------------------------------------


def test_connector_reads_a_zip_relative_to_the_settings_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    zip_set(GRAND_BEND_11, tmp_path / "data" / "gb.zip")
    audit = AuditLog(None)
    connector = OneRosterCsvConnector(
        settings(tmp_path, {"location": "../data/gb.zip"}), audit=audit
    )

    description = connector.test_connection()
    assert description.startswith(f"OneRoster 1.1 bulk set at {tmp_path / 'data' / 'gb.zip'}")
    assert "users.csv" in description

    roster = connector.fetch_roster()
    assert roster.customer_id == "grand-bend" and roster.side == "source"
    assert roster.row_counts()["users"] == 10
    [event] = audit.events
    assert (event.system, event.action, event.row_count) == ("oneroster_csv", "read", 40)

    one = connector.fetch_student("604874")
    assert one.users["sis_id"].to_list() == ["604874"]
    assert sorted(one.enrollments["class_sis_id"].unique()) == [ENGLISH, ALGEBRA]
    assert one.schools["sis_id"].to_list() == ["255901001"]


def test_connector_settings_schema_is_unchanged(tmp_path: Path) -> None:
    document = {
        "customer_id": "grand-bend",
        "name": "Grand Bend",
        "environment": "staging",
        "bookmarked": {"customer_id": 7, "database_url": "sqlite://"},
        "source": {
            "type": "oneroster_csv",
            "location": "sftp://sis.example/exports",
            "pattern": "*.zip",
            "username": "bookmarked",
            "password": "env:SFTP_PASSWORD",
        },
    }
    assert validate_document(tmp_path / "x.json", document) == []


def test_pattern_picks_the_newest_match(tmp_path: Path) -> None:
    drops = tmp_path / "drops"
    drops.mkdir()
    old = zip_set(GRAND_BEND_10, drops / "roster-2024-01-01.zip")
    new = zip_set(GRAND_BEND_11, drops / "roster-2024-01-02.zip")
    os.utime(old, (1_700_000_000, 1_700_000_000))
    os.utime(new, (1_700_100_000, 1_700_100_000))
    connector = OneRosterCsvConnector(
        settings(tmp_path, {"location": str(drops), "pattern": "roster-*.zip"}),
        audit=AuditLog(None),
    )
    assert connector.bulk_path() == new
    assert connector.fetch_roster().meta["oneroster_version"] == "1.1"


def test_connector_location_problems(tmp_path: Path) -> None:
    missing = OneRosterCsvConnector(settings(tmp_path, {"location": str(tmp_path / "nope")}))
    with pytest.raises(ConnectorError, match="no such folder or file"):
        missing.test_connection()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceDataError, match=r"users\.csv is missing"):
        OneRosterCsvConnector(settings(tmp_path, {"location": str(empty)})).test_connection()


# -- tolerated quirks ------------------------------------------------------------------


def test_bom_and_crlf(tmp_path: Path) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")
    for file in folder.glob("*.csv"):
        text = file.read_text(encoding="utf-8").replace("\n", "\r\n")
        file.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8") + b"\r\n\r\n")
    assert (folder / "users.csv").read_bytes().startswith(b"\xef\xbb\xbfsourcedId,")
    # blank lines before the header, too
    enrollments = folder / "enrollments.csv"
    enrollments.write_bytes(b"\xef\xbb\xbf\r\n  \r\n" + enrollments.read_bytes()[3:])
    assert_same_roster(read(folder), read(GRAND_BEND_11))


def test_header_variants_metadata_columns_and_file_name_case(tmp_path: Path) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")

    def shout(rows: list[list[str]]) -> None:
        rows[0] = [f" {name.upper()} " for name in rows[0]]
        rows[0].append("metadata.ext.house")
        for row in rows[1:]:
            row.extend([""] * (len(rows[0]) - len(row)))
            row[-1] = "Blue"

    edit_csv(folder / "users.csv", shout)
    (folder / "users.csv").rename(folder / "Users.CSV")
    assert_same_roster(read(folder), read(GRAND_BEND_11))


def test_quoted_lists_inactive_and_boolean_variants(tmp_path: Path) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")

    def change(rows: list[list[str]]) -> None:
        rows[1][4] = "255901, 255901001"  # district first: the school still wins
        rows[2][1] = "inactive"
        rows[3][3] = "TRUE"
        rows[4][3] = "1"
        rows[5][3] = "FALSE"
        rows[6][3] = "0"
        rows[7][3] = "No"

    edit_csv(folder / "users.csv", change)
    assert '"255901, 255901001"' in (folder / "users.csv").read_text()
    users = users_by_id(read(folder))
    assert users["604863"]["school_sis_id"] == "255901001"
    assert [(users[u]["active"], users[u]["deleted"]) for u in STUDENTS[1:7]] == [
        (False, True),
        (True, False),
        (True, False),
        (False, False),
        (False, False),
        (False, False),
    ]


def test_relative_and_guardian_parents_with_one_sided_links(tmp_path: Path) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")

    def add_parents(rows: list[list[str]]) -> None:
        def parent(sis_id: str, role: str, agents: str) -> list[str]:
            return [
                sis_id,
                "",
                "",
                "true",
                "255901001",
                role,
                "",
                "",
                "Pat",
                sis_id,
                "",
                "",
                f"{sis_id}@Family.example",
                "",
                "",
                agents,
                "",
                "",
            ]

        rows[1][15] = "p-guardian"  # Mary lists her guardian, who lists her too
        rows[2][15] = "p-relative,p-ghost"  # Kyle lists a relative and a dangling agent
        rows.append(parent("p-guardian", "guardian", "604863,604918"))
        rows.append(parent("p-relative", "relative", ""))
        rows.append(parent("p-teacher-agent", "parent", "207270"))

    edit_csv(folder / "users.csv", add_parents)
    roster = read(folder)
    users = users_by_id(roster)
    assert [(users[p]["role"], users[p]["role_raw"]) for p in ("p-guardian", "p-relative")] == [
        ("parent", "guardian"),
        ("parent", "relative"),
    ]
    assert roster.links.select("parent_sis_id", "student_sis_id").rows() == [
        ("p-guardian", "604863"),
        ("p-relative", "604874"),
        ("p-ghost", "604874"),
        ("p-guardian", "604918"),
        ("p-teacher-agent", "207270"),
    ]


@pytest.mark.parametrize("count", [12_000, 60_000])
def test_quoted_line_breaks_in_large_files(tmp_path: Path, count: int) -> None:
    """pyarrow parses in blocks of about 1 MB: a quoted line break at a block boundary
    must send the file to the exact reader, never be misread."""
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")

    def grow(rows: list[list[str]]) -> None:
        template = rows[1]
        for n in range(count):
            row = [*template]
            row[0] = f"gen{n}"
            row[8] = f"Line one\nline two {n}" if n % 10 == 0 else f"Given {n}"
            row[15] = "a,b" if n % 3 == 0 else ""
            rows.append(row)

    edit_csv(folder / "users.csv", grow)
    assert (folder / "users.csv").stat().st_size > count * 120
    roster = read(folder)
    users, links = roster.users, roster.links
    assert users.height == count + 10
    named = dict(users.select("sis_id", "first_name").iter_rows())
    last = count - 10
    assert (named["gen0"], named["gen1"], named[f"gen{last}"]) == (
        "Line one\nline two 0",
        "Given 1",
        f"Line one\nline two {last}",
    )
    assert links.filter(pl.col("student_sis_id") == "gen3").rows() == [
        ("a", "gen3", None, None),
        ("b", "gen3", None, None),
    ]
    assert links.height == 2 * len(range(0, count, 3))


def test_files_absent_per_manifest_and_manifest_disagreements(tmp_path: Path) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")
    (folder / "courses.csv").unlink()
    (folder / "enrollments.csv").unlink()

    def declare_absent(rows: list[list[str]]) -> None:
        assert (rows[7][0], rows[10][0]) == ("file.courses", "file.enrollments")
        rows[7][1] = rows[10][1] = "absent"

    edit_csv(folder / "manifest.csv", declare_absent)
    roster = read(folder)
    # without courses no class has a course code (the sync writes the course's code only)
    assert roster.classes["course_code"].to_list() == [None, None]
    assert roster.enrollments.height == 0
    assert roster.meta["manifest_notes"] == []

    # the files win where the manifest disagrees; both cases are noted
    (folder / "orgs.csv").unlink()  # declared bulk
    edit_csv(folder / "manifest.csv", lambda rows: rows[8].__setitem__(1, "absent"))  # classes
    roster = read(folder)
    assert (roster.schools.height, roster.classes.height) == (0, 2)
    assert roster.users["school_sis_id"].is_null().all()  # no org is known to be a school
    assert roster.meta["manifest_notes"] == [
        "file.orgs is 'bulk' but orgs.csv is missing: read as empty",
        "file.classes is 'absent' but classes.csv is present: read anyway",
    ]


def test_header_only_files_are_empty_tables(tmp_path: Path) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")
    for name in ("classes.csv", "enrollments.csv"):
        header = (folder / name).read_text().splitlines()[0]
        (folder / name).write_text(header)  # not even a line end
    roster = read(folder)
    assert (roster.classes.height, roster.enrollments.height, roster.users.height) == (0, 0, 10)


def test_1_2_set_with_roles_csv(tmp_path: Path) -> None:
    """A small 1.2 bulk set written from the spec: roles.csv, primaryOrgSourcedId."""
    folder = tmp_path / "v1p2"
    folder.mkdir()
    files = {
        "manifest.csv": lines(
            "propertyName,value",
            "manifest.version,1.0",
            "oneroster.version,1.2",
            "file.academicSessions,absent",
            *(
                f"file.{name},bulk"
                for name in ("orgs", "courses", "classes", "users", "roles", "enrollments")
            ),
        ),
        "orgs.csv": lines(
            "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId",
            "d1,,,North District,district,ND,",
            "s1,,,North High,school,0101,d1",
            "s2,,,North Middle,school,0102,d1",
        ),
        "users.csv": lines(
            "sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,"
            "familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,"
            "userMasterIdentifier,resourceSourcedIds,preferredGivenName,preferredMiddleName,"
            "preferredFamilyName,primaryOrgSourcedId,pronouns",
            "stu1,,,true,ana,,Ana,Lopez,,1001,ana@north.example,,,,10,,M1,,,,,s1,",
            'stu2,,,true,ben,,Ben,Kim,,1002,ben@north.example,,,"gdn1",K,,,,,,,,',
            "tch1,,,true,tea,,Tea,Cher,,,tea@north.example,,,,,,,,,,,d1,",
            "gdn1,,,true,gina,,Gina,Kim,,,Gina@North.example,,,stu1,,,,,,,,,",
            "adm1,,,false,al,,Al,Admin,,,al@north.example,,,,,,,,,,,d1,",
        ),
        "roles.csv": lines(
            "sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,"
            "orgSourcedId,userProfileSourcedId",
            "r0,tobedeleted,2024-08-01T00:00:00Z,stu1,primary,teacher,,,s2,",
            "r1,,,stu1,primary,student,2024-08-15,,s1,",
            "r2,,,stu2,secondary,aide,,,s1,",
            "r3,,,stu2,primary,student,,,s2,",
            "r4,,,tch1,secondary,teacher,,,s2,",
            "r5,,,tch1,secondary,aide,,,s1,",
            "r6,,,gdn1,primary,guardian,,,s2,",
            "r7,,,adm1,primary,districtAdministrator,,,d1,",
        ),
        "courses.csv": lines(
            "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,"
            "orgSourcedId,subjects,subjectCodes",
            "co1,,,y2025,Biology,BIO-1,10,s1,,",
        ),
        "classes.csv": lines(
            "sourcedId,status,dateLastModified,title,classCode,classType,location,grades,"
            "courseSourcedId,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods",
            'cl1,,,Biology P1,BIO-1-P1,scheduled,,10,co1,s1,"fall,spring",,,1',
        ),
        "enrollments.csv": lines(
            "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,"
            "role,primary,beginDate,endDate",
            "e1,,,cl1,s1,stu1,student,false,2024-08-15,2099-06-01",
            "e2,,,cl1,s1,tch1,teacher,true,2024-08-15,",
            "e3,,,cl1,s1,stu2,student,false,2024-08-15,2024-12-20",
        ),
    }
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    roster = read(folder)
    assert roster.meta["oneroster_version"] == "1.2"
    users = users_by_id(roster)
    assert {
        k: (v["role"], v["role_raw"], v["school_sis_id"], v["active"], v["grade"])
        for k, v in users.items()
    } == {
        "stu1": ("student", "student", "s1", True, "10"),
        "stu2": ("student", "student", "s2", True, "KG"),
        "tch1": ("teacher", "teacher", "s2", True, None),
        "gdn1": ("parent", "guardian", "s2", True, None),
        "adm1": ("other", "districtAdministrator", None, False, None),  # not synced
    }
    assert users["gdn1"]["email_normalized"] == "gina@north.example"
    assert roster.links.select("parent_sis_id", "student_sis_id").rows() == [
        ("gdn1", "stu2"),
        ("gdn1", "stu1"),
    ]
    assert roster.classes.select("sis_id", "course_code", "term_sis_id").rows() == [
        ("cl1", "BIO-1", "fall")
    ]
    assert roster.enrollments.select("sis_id", "role", "active").rows() == [
        ("e1", "student", True),
        ("e2", "teacher", True),
        ("e3", "student", False),
    ]


# -- refused, with a located error -----------------------------------------------------


def test_missing_required_column(tmp_path: Path) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")
    edit_csv(folder / "users.csv", lambda rows: [row.pop(5) for row in rows if len(row) > 5])
    error = read_error(folder)
    assert (error.file, error.line, error.column, error.field) == (
        str(folder / "users.csv"),
        1,
        None,
        "role",
    )
    assert "required column 'role' is missing" in str(error)


def test_bad_date(tmp_path: Path) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")
    edit_csv(folder / "enrollments.csv", lambda rows: rows[4].__setitem__(9, "2020-13-45"))
    error = read_error(folder)
    assert (error.file, error.line, error.column, error.field, error.record) == (
        str(folder / "enrollments.csv"),
        5,
        10,
        "endDate",
        "B3599829-090C-4BC5-AA59-15E90427A7BA",
    )
    assert "'2020-13-45' is not a date (expected YYYY-MM-DD)" in str(error)


def test_bad_date_is_located_in_a_zip_after_a_multi_line_record(tmp_path: Path) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")

    def change(rows: list[list[str]]) -> None:
        rows[1][1] = "active"
        rows[2][0] = "two\nlines"  # the record after it starts one line later
        rows[3][8] = "17/08/2020"

    edit_csv(folder / "enrollments.csv", change)
    archive = zip_set(folder, tmp_path / "set.zip")
    error = read_error(archive)
    assert (error.file, error.line, error.column, error.field) == (
        f"{archive}!enrollments.csv",
        5,
        9,
        "beginDate",
    )


def test_row_with_missing_fields(tmp_path: Path) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")
    edit_csv(folder / "users.csv", lambda rows: rows.__setitem__(4, rows[4][:15]))
    error = read_error(folder)
    assert (error.file, error.line, error.column, error.field) == (
        str(folder / "users.csv"),
        5,
        16,
        "agentSourcedIds",
    )
    assert "the row has 15 fields, the header has 18" in str(error)


def test_row_with_extra_non_empty_fields(tmp_path: Path) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")
    edit_csv(folder / "orgs.csv", lambda rows: rows[2].extend(["", "surprise"]))
    error = read_error(folder)
    assert (error.file, error.line, error.column) == (str(folder / "orgs.csv"), 3, 14)


def test_quote_never_closed(tmp_path: Path) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")
    text = (folder / "enrollments.csv").read_text().splitlines(keepends=True)
    text[6] = text[6].replace(",25590100102", ',"25590100102', 1)
    (folder / "enrollments.csv").write_text("".join(text))
    error = read_error(folder)
    assert (error.line, error.column, error.field) == (7, 4, "classSourcedId")
    assert "never closed" in str(error)


def test_not_utf8(tmp_path: Path) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")
    data = (
        (folder / "users.csv").read_bytes().replace(b"Kyle,Hughes", "Kylé,Hughes".encode("latin-1"))
    )
    (folder / "users.csv").write_bytes(data)
    error = read_error(folder)
    assert (error.file, error.line, error.column) == (str(folder / "users.csv"), 3, 9)
    assert "byte 0xE9 is not UTF-8" in str(error)
    assert "Kyl" not in str(error)  # no student data in messages


@pytest.mark.parametrize(
    ("file", "row", "column", "value", "message"),
    [
        ("users.csv", 2, 2, "deleted", "'deleted' is not a status"),
        ("users.csv", 9, 4, "enabled", "'enabled' is not a boolean"),
        ("classes.csv", 2, 1, " ", "sourcedId is blank"),
    ],
)
def test_bad_tokens(
    tmp_path: Path, file: str, row: int, column: int, value: str, message: str
) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")
    edit_csv(folder / file, lambda rows: rows[row].__setitem__(column - 1, value))
    error = read_error(folder)
    assert (error.file, error.line, error.column) == (str(folder / file), row + 1, column)
    assert message in str(error)


def test_duplicate_and_empty_files(tmp_path: Path) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")
    edit_csv(folder / "orgs.csv", lambda rows: rows[0].__setitem__(4, "Name"))
    error = read_error(folder)
    assert (error.file, error.line, error.column, error.field) == (
        str(folder / "orgs.csv"),
        1,
        5,
        "Name",
    )
    assert "column 'name' appears twice (also column 4)" in str(error)

    shutil.copy(GRAND_BEND_11 / "orgs.csv", folder / "orgs.csv")
    (folder / "classes.csv").write_bytes(b"")
    error = read_error(folder)
    assert (error.file, error.line) == (str(folder / "classes.csv"), 1)
    assert "no header line" in str(error)


def test_delta_manifest_is_refused(tmp_path: Path) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")
    edit_csv(folder / "manifest.csv", lambda rows: rows[9].__setitem__(1, "delta"))
    error = read_error(folder)
    assert (error.file, error.line, error.column, error.field) == (
        str(folder / "manifest.csv"),
        10,
        2,
        "value",
    )
    assert "file.users is declared 'delta'" in str(error)
    assert "full bulk set" in str(error)
    connector = OneRosterCsvConnector(settings(tmp_path, {"location": str(folder)}))
    with pytest.raises(SourceDataError, match="delta"):
        connector.test_connection()


def test_corrupt_zips(tmp_path: Path) -> None:
    good = zip_set(GRAND_BEND_11, tmp_path / "good.zip")
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[:200])
    error = read_error(truncated)
    assert error.file == str(truncated)
    assert "not a readable zip file" in str(error)

    not_a_zip = tmp_path / "roster.zip"
    not_a_zip.write_text("sourcedId,name\n")
    assert read_error(not_a_zip).file == str(not_a_zip)

    damaged = tmp_path / "damaged.zip"
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as archive:
        info = archive.getinfo("users.csv")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for offset in range(start + 20, start + 60):
        data[offset] ^= 0xFF
    damaged.write_bytes(bytes(data))
    error = read_error(damaged)
    assert error.file == f"{damaged}!users.csv"
    assert "cannot be extracted from the zip" in str(error)


def test_zip_with_files_in_several_folders(tmp_path: Path) -> None:
    archive = tmp_path / "mixed.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.write(GRAND_BEND_11 / "users.csv", "a/users.csv")
        out.write(GRAND_BEND_11 / "orgs.csv", "b/orgs.csv")
    error = read_error(archive)
    assert error.file == str(archive)
    assert "found folders: a, b" in str(error)


def test_missing_users_file(tmp_path: Path) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")
    (folder / "users.csv").unlink()
    error = read_error(folder)
    assert error.file == str(folder / "users.csv")
    assert "users.csv is missing" in str(error)


def test_errors_are_single_source_data_errors_not_tracebacks(tmp_path: Path) -> None:
    """Whatever goes wrong in a file surfaces as SourceDataError (a ConnectorError)."""
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")
    (folder / "courses.csv").write_bytes(b"\x00\xff\xfe garbage \x81")
    error = read_error(folder)
    assert isinstance(error, ConnectorError)
    assert error.file == str(folder / "courses.csv") and error.line == 1


# -- variants seen in third-party exports ----------------------------------------------


@pytest.mark.parametrize(
    "layout",
    [
        {"": "export/2024-09-01/"},  # two folders deep
        {"": "export\\"},  # PowerShell's Compress-Archive writes backslashes
        {"": "export/", "README.txt": "README.txt", "__MACOSX/export/._users.csv": None},
    ],
    ids=["nested", "backslashes", "readme-beside"],
)
def test_zip_with_the_set_in_any_one_folder(tmp_path: Path, layout: dict[str, str | None]) -> None:
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for file in sorted(GRAND_BEND_11.iterdir()):
            out.write(file, layout[""] + file.name)
        for name in layout.keys() - {""}:
            out.writestr(name, b"\x00junk")
    zipped = read(archive)
    assert_same_roster(zipped, read(GRAND_BEND_11))
    assert f"{layout['']}users.csv" in zipped.meta["files"]


def test_a_csv_file_as_location_is_a_clear_error(tmp_path: Path) -> None:
    error = read_error(GRAND_BEND_11 / "users.csv")
    assert error.file == str(GRAND_BEND_11 / "users.csv")
    assert "not a readable zip file" in str(error)
    assert "a bulk set is a folder or a .zip" in str(error)


def test_rows_of_separators_only_are_blank_lines(tmp_path: Path) -> None:
    """Excel saves emptied rows as `,,,,`: skipped, and later lines keep their numbers."""
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")
    with (folder / "users.csv").open("a") as users:
        users.write("\n" + "," * 17 + "\n , ,\n")
    enrollments = (folder / "enrollments.csv").read_text().splitlines()
    enrollments[2:2] = ["," * 9, "", " ,,"]
    (folder / "enrollments.csv").write_text("\r\n".join(enrollments) + "\r\n")
    assert_same_roster(read(folder), read(GRAND_BEND_11))

    enrollments[6] = enrollments[6].replace("2020-12-18", "2020-12-32")
    (folder / "enrollments.csv").write_text("\r\n".join(enrollments) + "\r\n")
    error = read_error(folder)
    assert (error.line, error.column, error.field) == (7, 10, "endDate")


@pytest.mark.parametrize("separator", [";", "\t", "|"])
def test_other_separators_are_refused(tmp_path: Path, separator: str) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")
    text = (folder / "users.csv").read_text()
    (folder / "users.csv").write_text(text.replace(",", separator))
    error = read_error(folder)
    assert (error.file, error.line) == (str(folder / "users.csv"), 1)
    assert f"separated by {separator!r}" in str(error)
    assert "commas" in str(error)


def test_windows_1252_is_refused_and_utf16_with_bom_is_read(tmp_path: Path) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")
    text = (folder / "users.csv").read_text().replace("Mary,Archer", "Mary,Muñoz")
    (folder / "users.csv").write_bytes(text.encode("cp1252"))
    error = read_error(folder)
    assert (error.line, error.column) == (2, 10)
    assert "byte 0xF1 is not UTF-8 (is the file Windows-1252 or Latin-1?)" in str(error)
    assert "Mu" not in str(error)

    (folder / "users.csv").write_bytes(text.encode("utf-16"))  # with its BOM
    users = users_by_id(read(folder))
    assert users["604863"]["last_name"] == "Muñoz"


def test_tokens_as_exporters_write_them(tmp_path: Path) -> None:
    """Filled status and ISO datetimes, roles and grades in other spellings, `primary`
    in any case: read, with the raw role and grade kept."""
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")
    variants = [("Student", "9"), ("TEACHER", "KG"), ("administrator", "PK")]
    variants += [("aide", "Other"), ("proctor", "K"), ("Guardian", "")]

    def change_users(rows: list[list[str]]) -> None:
        for row, (role, grade) in zip(rows[1:], variants, strict=False):
            row[1:3] = ["Active", "2023-08-01T00:00:00Z"]
            row[5], row[16] = role, grade

    def change_enrollments(rows: list[list[str]]) -> None:
        for row, primary in zip(rows[1:], ["True", "FALSE", "", "1"], strict=False):
            row[1:3] = ["active", "2023-08-01 12:30:00.000"]
            row[7] = primary
        rows[1][8:10] = ["2020-08-17 00:00:00", "2020-12-18T00:00:00.000-05:00"]

    edit_csv(folder / "users.csv", change_users)
    edit_csv(folder / "enrollments.csv", change_enrollments)
    roster = read(folder)
    assert roster.users.select("role", "role_raw", "grade", "grade_raw", "active").rows()[:6] == [
        ("student", "Student", "09", "9", True),
        ("teacher", "TEACHER", "KG", "KG", True),
        ("admin", "administrator", "PK", "PK", True),
        ("other", "aide", "Other", "Other", True),
        ("other", "proctor", "KG", "K", True),
        ("parent", "Guardian", None, None, True),
    ]
    assert roster.enrollments.row(0, named=True)["start_date"] == date(2020, 8, 17)
    assert roster.enrollments.row(0, named=True)["end_date"] == date(2020, 12, 18)
    assert roster.enrollments.height == 24


def test_blank_manifest_mode_and_empty_file_for_an_absent_one(tmp_path: Path) -> None:
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")

    def change(rows: list[list[str]]) -> None:
        assert (rows[7][0], rows[9][0]) == ("file.courses", "file.users")
        rows[7][1], rows[9][1] = "absent", ""

    edit_csv(folder / "manifest.csv", change)
    (folder / "courses.csv").write_bytes(b"\xef\xbb\xbf\r\n")  # a BOM and a line end
    roster = read(folder)
    assert roster.users.height == 10
    assert "courses.csv" not in roster.meta["files"]
    assert roster.meta["manifest_notes"] == []


def test_duplicate_sourced_ids_are_kept_for_the_rules(tmp_path: Path) -> None:
    """A bulk file listing a user twice breaks the spec; the reader drops neither row
    (the rules pick one per sourcedId and can tell what happened)."""
    folder = copy_set(GRAND_BEND_11, tmp_path / "set")

    def duplicate(rows: list[list[str]]) -> None:
        rows.append([*rows[1]])
        rows[-1][1] = "tobedeleted"

    edit_csv(folder / "users.csv", duplicate)
    users = read(folder).users.filter(pl.col("sis_id") == "604863")
    assert users.select("active", "deleted").rows() == [(True, False), (False, True)]


def write_1_2_set(folder: Path, roles: str | None) -> Path:
    folder.mkdir()
    manifest = ["propertyName,value", "manifest.version,1.0", "oneroster.version,1.2"]
    manifest += [f"file.{t},bulk" for t in ("orgs", "users", "classes", "enrollments")]
    manifest.append(f"file.roles,{'absent' if roles is None else 'bulk'}")
    files = {
        "manifest.csv": lines(*manifest),
        "orgs.csv": lines("sourcedId,status,dateLastModified,name,type", "s1,,,North,school"),
        "users.csv": lines(
            "sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,"
            "familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,"
            "userMasterIdentifier,resourceSourcedIds,preferredFirstName,preferredMiddleName,"
            "preferredLastName,primaryOrgSourcedId,pronouns,metadata.house",
            'stu1,,,TRUE,ana,,Ana,Lopez,,1001,ana@n.example,,,"gdn1, rel1",9,,M-1,,Annie,,,s1,,'
            "Blue",
            "gdn1,,,true,gina,,Gina,Lopez,,,gina@n.example,,,,,,,,,,,,,",
            "rel1,,,True,rui,,Rui,Lopez,,,rui@n.example,,,,,,,,,,,,,",
            "new1,,,true,nu,,Nu,Comer,,,nu@n.example,,,,,,,,,,,,,",
        ),
        "classes.csv": lines("sourcedId,title,courseSourcedId,schoolSourcedId", "c1,Bio,co1,s1"),
        "enrollments.csv": lines(
            "sourcedId,classSourcedId,schoolSourcedId,userSourcedId,role,primary",
            "e1,c1,s1,stu1,Student,",
        ),
    }
    if roles is not None:
        files["roles.csv"] = roles
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_1_2_users_without_role_rows_are_kept_as_other(tmp_path: Path) -> None:
    folder = write_1_2_set(
        tmp_path / "v1p2",
        lines(
            "sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,"
            "orgSourcedId,userProfileSourcedId",
            "r1,,,stu1,Primary,Student,,,s1,",
            "r2,,,gdn1,primary,guardian,,,s1,",
            "r3,,,rel1,PRIMARY,relative,,,s1,",
        ),
    )
    roster = read(folder)
    users = users_by_id(roster)
    assert {k: (v["role"], v["role_raw"], v["school_sis_id"]) for k, v in users.items()} == {
        "stu1": ("student", "Student", "s1"),
        "gdn1": ("parent", "guardian", "s1"),
        "rel1": ("parent", "relative", "s1"),
        "new1": ("other", None, None),
    }
    assert (users["stu1"]["grade"], users["stu1"]["student_number"]) == ("09", "1001")
    assert roster.links.select("parent_sis_id", "student_sis_id").rows() == [
        ("gdn1", "stu1"),
        ("rel1", "stu1"),
    ]
    assert roster.enrollments.select("role", "active").rows() == [("student", True)]


def test_1_2_set_without_roles_is_refused(tmp_path: Path) -> None:
    folder = write_1_2_set(tmp_path / "v1p2", None)
    error = read_error(folder)
    assert error.file == str(folder / "roles.csv")
    assert "roles.csv is missing" in str(error)


# -- empty header names ----------------------------------------------------------------

ROLES_HEADER = (
    "sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,"
    "orgSourcedId,userProfileSourcedId"
)
ROLE_ROWS = ("r1,,,stu1,primary,student,,,s1,", "r2,,,gdn1,primary,guardian,,,s1,")


def test_trailing_empty_header_names_are_padding(tmp_path: Path) -> None:
    """An exporter that pads the header (`...,orgSourcedId,,`) pads its rows or not, or
    some: the empty names at the end name no column, like a row's trailing commas."""
    plain = read(write_1_2_set(tmp_path / "plain", lines(ROLES_HEADER, *ROLE_ROWS)))
    for name, rows in {
        "unpadded-rows": ROLE_ROWS,
        "padded-rows": (ROLE_ROWS[0] + ",,", ROLE_ROWS[1] + ",,"),
        "mixed": (ROLE_ROWS[0] + ",", ROLE_ROWS[1] + ",, ,"),
    }.items():
        padded = read(write_1_2_set(tmp_path / name, lines(ROLES_HEADER + ", ,", *rows)))
        assert_same_roster(padded, plain)
        assert {r["role_raw"] for r in padded.users.iter_rows(named=True)} >= {"student"}

    folder = copy_set(GRAND_BEND_11, tmp_path / "gb")
    users = (folder / "users.csv").read_text().splitlines()
    (folder / "users.csv").write_text("\n".join([users[0] + ",,,", *users[1:]]) + "\n")
    assert_same_roster(read(folder), read(GRAND_BEND_11))


def test_a_value_under_a_padding_header_name_is_located(tmp_path: Path) -> None:
    folder = write_1_2_set(
        tmp_path / "v1p2", lines(ROLES_HEADER + ",,", ROLE_ROWS[0], ROLE_ROWS[1] + ",,oops")
    )
    error = read_error(folder)
    assert (error.file, error.line, error.column) == (str(folder / "roles.csv"), 3, 12)
    assert "column 12 has a value but no name in the header" in str(error)
    assert "oops" not in str(error)


def test_an_empty_header_name_in_the_middle_is_refused(tmp_path: Path) -> None:
    """Between named columns an empty name is not padding: whatever the column holds,
    the columns after it may be shifted, so the file is refused, located."""
    header = ROLES_HEADER.replace(",roleType,", ",,roleType,")
    rows = [row.replace(",primary,", ",x,primary,") for row in ROLE_ROWS]
    folder = write_1_2_set(tmp_path / "v1p2", lines(header, *rows))
    error = read_error(folder)
    assert (error.file, error.line, error.column, error.field) == (
        str(folder / "roles.csv"),
        1,
        5,
        None,
    )
    assert "column 5 has no name in the header" in str(error)


# -- zip bombs -------------------------------------------------------------------------

#: zeros deflate about 1000x: 3 MB of them take 3 KB in the zip
HIGHLY_COMPRESSIBLE = b"0" * 3_000_000


def test_a_member_over_the_compression_ratio_is_refused_before_extraction(
    tmp_path: Path,
) -> None:
    archive = zip_set(
        GRAND_BEND_11, tmp_path / "bomb.zip", extra={"notes.csv": HIGHLY_COMPRESSIBLE}
    )
    with pytest.raises(SourceDataError) as caught:
        open_bulk_set(archive)  # only opened: nothing extracted yet
    assert caught.value.file == f"{archive}!notes.csv"
    assert "expands 9" in str(caught.value) or "expands 1," in str(caught.value)
    assert "over the limit of 100x (source.limits.max_compression_ratio)" in str(caught.value)
    assert "refused before extracting anything" in str(caught.value)


def test_the_limits_are_settings_and_a_lowered_byte_limit_refuses_the_zip(
    tmp_path: Path,
) -> None:
    (tmp_path / "data").mkdir()
    archive = zip_set(GRAND_BEND_11, tmp_path / "data" / "gb.zip")
    source = {"location": "../data/gb.zip", "limits": {"max_uncompressed_bytes": 5_000}}
    connector = OneRosterCsvConnector(settings(tmp_path, source), audit=AuditLog(None))
    for attempt in (connector.test_connection, connector.fetch_roster):
        with pytest.raises(SourceDataError) as caught:
            attempt()
        assert caught.value.file == f"{archive}!enrollments.csv"  # the largest member
        assert "members would expand to 6,988 bytes in all" in str(caught.value)
        assert "over the limit of 5,000 (source.limits.max_uncompressed_bytes)" in str(caught.value)

    roomy = {**source, "limits": {"max_uncompressed_bytes": 7_000, "max_compression_ratio": 2}}
    connector = OneRosterCsvConnector(settings(tmp_path, roomy), audit=AuditLog(None))
    assert connector.fetch_roster().row_counts()["users"] == 10  # small members: no ratio

    document = {
        "customer_id": "grand-bend",
        "name": "Grand Bend",
        "environment": "staging",
        "bookmarked": {"customer_id": 7, "database_url": "sqlite://"},
        "source": {"type": "oneroster_csv", **roomy},
    }
    assert validate_document(tmp_path / "x.json", document) == []
    for wrong in ({"max_uncompressed_bytes": 0}, {"max_compression_ratio": "100x"}, {"ratio": 9}):
        document["source"]["limits"] = wrong
        assert len(validate_document(tmp_path / "x.json", document)) == 1, wrong


def test_declared_sizes_that_lie_are_caught_while_reading(tmp_path: Path) -> None:
    """A zip whose central directory declares users.csv barely compressed (ratio 1)
    passes the check of the declared sizes; the bytes that come out do not."""
    archive = tmp_path / "lying.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("users.csv", b"sourcedId,role\n" + HIGHLY_COMPRESSIBLE * 4)
        info = out.getinfo("users.csv")
        info.compress_size = info.file_size  # written so into the central directory
        out.writestr("photo.jpg", os.urandom(200_000), zipfile.ZIP_STORED)
        for file in sorted(GRAND_BEND_11.iterdir()):
            if file.name != "users.csv":
                out.write(file, file.name)
    bulk = open_bulk_set(archive)
    with pytest.raises(SourceDataError) as caught:
        read_bulk_set(bulk, "grand-bend")
    assert caught.value.file == f"{archive}!users.csv"
    assert "expanded more than 100x while being read" in str(caught.value)
    assert "the zip's declared sizes are wrong" in str(caught.value)


def test_a_member_compressed_another_way_than_deflate_is_refused(tmp_path: Path) -> None:
    """bzip2 and LZMA members cannot be read in bounded steps (Python's zipfile gives
    their decompressors no output limit), so no guard could stop a bomb among them."""
    archive = tmp_path / "bzip2.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_BZIP2) as out:
        for file in sorted(GRAND_BEND_11.iterdir()):
            out.write(file, file.name)
    error = read_error(archive)
    assert error.file == f"{archive}!manifest.csv"
    assert "compressed with bzip2" in str(error)
