"""The OneRoster -> canonical mapping: what Bookmarked's correct sync would write.

Records are plain dicts, as the REST connector hands them over; one test checks that the
DataFrame form the CSV connector uses gives the same roster.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from reconciliation.connectors.oneroster_model import (
    RecordError,
    build_source_roster,
    parse_bool,
    parse_date,
    parse_status,
    split_list,
)

AS_OF = date(2025, 3, 1)

ORGS = [
    {"sourcedId": "d1", "type": "district", "name": "District", "identifier": "D-1"},
    {"sourcedId": "s1", "type": "school", "name": "North High", "identifier": "0101"},
    {
        "sourcedId": "s2",
        "type": "School",
        "name": "North Middle",
        "identifier": None,
        "status": "tobedeleted",
    },
]


def roster(**tables):
    """A roster from the given tables; the others empty."""
    tables.setdefault("orgs", ORGS)
    for name in ("users", "classes", "enrollments"):
        tables.setdefault(name, [])
    return build_source_roster("acme", as_of=AS_OF, **tables)


def user(sis_id: str, **fields: object) -> dict[str, object]:
    return {"sourcedId": sis_id, "role": "student", "orgSourcedIds": "s1", **fields}


def users_by_id(result) -> dict[str, dict]:
    return {row["sis_id"]: row for row in result.users.iter_rows(named=True)}


def pairs(result) -> set[tuple[str, str]]:
    return set(result.links.select("parent_sis_id", "student_sis_id").iter_rows())


# -- schools ---------------------------------------------------------------------------


def test_schools_are_orgs_of_type_school_with_identifier_as_state_id() -> None:
    schools = roster().schools.sort("sis_id")
    assert schools.select("sis_id", "name", "state_id", "active").rows() == [
        ("s1", "North High", "0101", True),
        ("s2", "North Middle", None, False),
    ]


def test_every_org_of_any_type_is_kept_in_orgs_and_schools_stay_schools() -> None:
    # a class or user pointing at the district points at the district, not nowhere
    result = roster()
    assert result.orgs.sort("sis_id").rows() == [
        ("d1", "district", "District", True),
        ("s1", "school", "North High", True),
        ("s2", "school", "North Middle", False),
    ]
    assert set(result.schools["sis_id"]) == {"s1", "s2"}


# -- users -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "role"),
    [
        ("student", "student"),
        ("teacher", "teacher"),
        ("parent", "parent"),
        ("guardian", "parent"),
        ("relative", "parent"),
        ("Guardian", "parent"),
        ("administrator", "admin"),
        ("aide", "other"),
        ("proctor", "other"),
        ("ext:coach", "other"),
        (None, "other"),
    ],
)
def test_roles_are_mapped_and_the_raw_token_is_kept(raw: str | None, role: str) -> None:
    row = users_by_id(roster(users=[user("u1", role=raw)]))["u1"]
    assert (row["role"], row["role_raw"]) == (role, raw)


def test_user_fields() -> None:
    row = users_by_id(
        roster(
            users=[
                user(
                    "u1",
                    givenName="Ana",
                    familyName="Lopez",
                    username="ana.l",
                    identifier="1001",
                    email="  Ana.Lopez@Example.ORG ",
                    grades="K,01",
                )
            ]
        )
    )["u1"]
    assert row == {
        "sis_id": "u1",
        "role": "student",
        "role_raw": "student",
        "first_name": "Ana",
        "last_name": "Lopez",
        "email": "  Ana.Lopez@Example.ORG ",
        "email_normalized": "ana.lopez@example.org",
        "username": "ana.l",
        "student_number": "1001",
        "grade": "KG",
        "grade_raw": "K",
        "school_sis_id": "s1",
        "org_sis_ids": ["s1"],
        "active": True,
        "deleted": False,
        "bookmarked_id": None,
    }


@pytest.mark.parametrize(
    ("grades", "grade", "grade_raw"),
    [
        ("5", "05", "5"),
        (["09", "10"], "09", "09"),
        ("P1", "P1", "P1"),
        (None, None, None),
        ("", None, None),
        ("First grade", "01", "First grade"),
    ],
)
def test_grade_is_the_first_grade_normalized(grades, grade, grade_raw) -> None:
    row = users_by_id(roster(users=[user("u1", grades=grades)]))["u1"]
    assert (row["grade"], row["grade_raw"]) == (grade, grade_raw)


@pytest.mark.parametrize(
    ("orgs", "school"),
    [
        ("d1,s2,s1", "s2"),  # the first org that is a school, deleted or not
        (" d1 , s1 ", "s1"),
        (["d1", "s1"], "s1"),
        ("d1", None),  # district only
        ("nowhere,s1", "s1"),  # an org that is not in the export is not a school
        (None, None),
    ],
)
def test_1_1_school_is_the_first_school_of_org_sourced_ids(orgs, school) -> None:
    assert (
        users_by_id(roster(users=[user("u1", orgSourcedIds=orgs)]))["u1"]["school_sis_id"] == school
    )


@pytest.mark.parametrize(
    ("status", "enabled", "active", "deleted"),
    [
        (None, None, True, False),
        ("active", "true", True, False),
        ("Active", "TRUE", True, False),
        (None, "1", True, False),
        (None, "yes", True, False),
        (None, "false", False, False),  # login disabled: inactive, not deleted
        (None, "FALSE", False, False),
        (None, "0", False, False),
        (None, False, False, False),  # a JSON boolean from a REST server
        ("tobedeleted", "true", False, True),
        ("inactive", None, False, True),  # the 1.0 token
        ("INACTIVE", "true", False, True),
    ],
)
def test_active_and_deleted(status, enabled, active, deleted) -> None:
    row = users_by_id(roster(users=[user("u1", status=status, enabledUser=enabled)]))["u1"]
    assert (row["active"], row["deleted"]) == (active, deleted)


# -- 1.2 roles -------------------------------------------------------------------------


def role(user_id: str, role_type: str, token: str, org: str, **fields: object) -> dict:
    return {
        "userSourcedId": user_id,
        "roleType": role_type,
        "role": token,
        "orgSourcedId": org,
        **fields,
    }


def test_1_2_role_and_school_come_from_roles_and_primary_org() -> None:
    users = [
        {"sourcedId": "a"},  # primary role wins over an earlier secondary one
        {"sourcedId": "b"},  # no primary role: the first one listed
        {"sourcedId": "c", "primaryOrgSourcedId": "s2"},  # primaryOrg beats the role's org
        {"sourcedId": "d", "primaryOrgSourcedId": "d1"},  # a district is no school
        {"sourcedId": "e"},  # a deleted role does not count
        {"sourcedId": "f"},  # no role at all
    ]
    roles = [
        role("a", "secondary", "aide", "s2"),
        role("a", "primary", "teacher", "s1"),
        role("b", "secondary", "guardian", "s2"),
        role("b", "secondary", "teacher", "s1"),
        role("c", "primary", "student", "s1"),
        role("d", "Primary", "districtAdministrator", "d1"),
        role("e", "primary", "teacher", "s1", status="tobedeleted"),
        role("e", "secondary", "proctor", "s2"),
    ]
    rows = users_by_id(roster(users=users, roles=roles))
    assert {k: (v["role"], v["role_raw"], v["school_sis_id"]) for k, v in rows.items()} == {
        "a": ("teacher", "teacher", "s1"),
        "b": ("parent", "guardian", "s2"),
        "c": ("student", "student", "s2"),
        # the contract syncs `administrator` only: a 1.2 district administrator is not synced
        "d": ("other", "districtAdministrator", None),
        "e": ("other", "proctor", "s2"),
        "f": ("other", None, None),
    }


def test_every_org_of_a_user_is_kept_in_order_once() -> None:
    # shared-time students belong to several schools; 1.2 adds the primary org and the
    # orgs of the user's (not deleted) roles
    users = [
        user("a", orgSourcedIds="s2,s1"),
        {"sourcedId": "b", "orgSourcedIds": "s1", "primaryOrgSourcedId": "d1"},
        {"sourcedId": "c", "primaryOrgSourcedId": "s1"},
        user("d", orgSourcedIds=None),
    ]
    roles = [
        role("b", "primary", "teacher", "s1"),
        role("c", "primary", "teacher", "s1"),
        role("c", "secondary", "teacher", "s2"),
        role("c", "secondary", "teacher", "d1", status="tobedeleted"),
    ]
    rows = users_by_id(roster(users=users, roles=roles))
    assert {k: v["org_sis_ids"] for k, v in rows.items()} == {
        "a": ["s2", "s1"],
        "b": ["s1", "d1"],
        "c": ["s1", "s2"],
        "d": [],
    }
    # a 1.2 users.csv has no orgSourcedIds column at all: the roles' orgs still count
    users_12 = pl.DataFrame({"sourcedId": ["e"], "primaryOrgSourcedId": ["s1"]})
    rows = users_by_id(roster(users=users_12, roles=[role("e", "primary", "teacher", "s2")]))
    assert rows["e"]["org_sis_ids"] == ["s1", "s2"]


# -- links -----------------------------------------------------------------------------


def test_links_from_either_side_one_row_per_pair() -> None:
    users = [
        user("kid1", agentSourcedIds="mom"),  # listed on both sides
        user("mom", role="guardian", agentSourcedIds="kid1,kid2"),
        user("kid2"),  # listed on the parent's side only
        user("kid3", agentSourcedIds=["dad", "ghost"]),  # student side only; ghost dangles
        user("dad", role="relative"),
        user("kid4", agentSourcedIds="mr-t"),  # a teacher listed as agent: kept
        user("mr-t", role="teacher"),
        user("gran", role="parent", agentSourcedIds="mom"),  # a parent's parent: kept
    ]
    result = roster(users=users)
    assert pairs(result) == {
        ("mom", "kid1"),
        ("mom", "kid2"),
        ("dad", "kid3"),
        ("ghost", "kid3"),
        ("mr-t", "kid4"),
        ("gran", "mom"),
    }
    assert result.links.height == 6


def test_rest_references_and_json_booleans() -> None:
    users = [
        user("kid", agentSourcedIds=[{"sourcedId": "mom", "type": "user"}], enabledUser=True),
        user("mom", role="parent", enabledUser=False),
    ]
    result = roster(users=users)
    assert pairs(result) == {("mom", "kid")}
    rows = users_by_id(result)
    assert (rows["kid"]["active"], rows["mom"]["active"]) == (True, False)


# -- classes and enrollments ----------------------------------------------------------


def test_classes_take_the_course_code_and_first_term() -> None:
    classes = [
        {
            "sourcedId": "c1",
            "title": "Algebra I",
            "courseSourcedId": "03100500",
            "classCode": "ALG-1-P2",
            "schoolSourcedId": "s1",
            "termSourcedIds": "fall, spring",
        },
        {
            "sourcedId": "c2",
            "title": "Art",
            "courseSourcedId": "missing",
            "classCode": "ART-1",
            "schoolSourcedId": "s9",
            "termSourcedIds": ["t1"],
        },
        {
            "sourcedId": "c3",
            "title": "Old",
            "courseSourcedId": "nocode",
            "classCode": "OLD",
            "schoolSourcedId": "s1",
            "status": "tobedeleted",
        },
    ]
    courses = [
        {"sourcedId": "03100500", "courseCode": "ALG-1"},
        {"sourcedId": "nocode", "courseCode": ""},
    ]
    result = roster(classes=classes, courses=courses)
    assert result.classes.select(
        "sis_id", "school_sis_id", "name", "course_code", "term_sis_id", "active"
    ).rows() == [
        ("c1", "s1", "Algebra I", "ALG-1", "fall", True),
        # the sync writes the course's code only: none for an unknown course or a blank code
        ("c2", "s9", "Art", None, "t1", True),
        ("c3", "s1", "Old", None, None, False),
    ]


def test_enrollments_end_date_is_exclusive_and_roles_map() -> None:
    def enrollment(sis_id: str, **fields: object) -> dict:
        return {
            "sourcedId": sis_id,
            "classSourcedId": "c1",
            "userSourcedId": "u1",
            "role": "student",
            **fields,
        }

    enrollments = [
        enrollment("ended-today", endDate="2025-03-01"),
        enrollment("ends-tomorrow", beginDate="2024-08-15", endDate="2025-03-02"),
        enrollment("open", endDate=None),
        enrollment("deleted", status="tobedeleted", endDate="2099-01-01"),
        enrollment("teacher", role="Teacher"),
        enrollment("admin", role="administrator"),
        enrollment("datetime", endDate="2025-06-01T00:00:00Z"),
        enrollment("nowhere", classSourcedId="no-such-class", userSourcedId="no-such-user"),
    ]
    result = roster(enrollments=enrollments)
    rows = {r["sis_id"]: r for r in result.enrollments.iter_rows(named=True)}
    assert {k: v["active"] for k, v in rows.items()} == {
        "ended-today": False,
        "ends-tomorrow": True,
        "open": True,
        "deleted": False,
        "teacher": True,
        "admin": True,
        "datetime": True,
        "nowhere": True,
    }
    assert {k: v["role"] for k, v in rows.items() if k in ("teacher", "admin")} == {
        "teacher": "teacher",
        "admin": "other",
    }
    assert (rows["ends-tomorrow"]["start_date"], rows["ends-tomorrow"]["end_date"]) == (
        date(2024, 8, 15),
        date(2025, 3, 2),
    )
    assert rows["datetime"]["end_date"] == date(2025, 6, 1)
    assert (rows["nowhere"]["class_sis_id"], rows["nowhere"]["user_sis_id"]) == (
        "no-such-class",
        "no-such-user",
    )


def test_dataframe_input_gives_the_same_roster() -> None:
    users = [
        user("kid", agentSourcedIds="mom", grades="5", enabledUser="TRUE"),
        user("mom", role="guardian", orgSourcedIds="d1, s1", status="inactive"),
    ]
    enrollments = [
        {
            "sourcedId": "e1",
            "classSourcedId": "c1",
            "userSourcedId": "kid",
            "role": "student",
            "endDate": "2026-01-01",
        }
    ]
    as_dicts = roster(users=users, enrollments=enrollments)

    def frame(records: list[dict]) -> pl.DataFrame:
        columns = sorted({k for r in records for k in r})
        return pl.DataFrame(
            [{c: r.get(c) or "" for c in columns} for r in records],
            schema=dict.fromkeys(columns, pl.String()),
        )

    as_frames = roster(orgs=frame(ORGS), users=frame(users), enrollments=frame(enrollments))
    for table in ("schools", "users", "links", "classes", "enrollments"):
        assert as_frames.table(table).equals(as_dicts.table(table)), table


def test_meta_is_kept_and_as_of_recorded() -> None:
    result = build_source_roster(
        "acme",
        orgs=[],
        users=[],
        classes=[],
        enrollments=[],
        as_of=AS_OF,
        meta={"oneroster_version": "1.1"},
    )
    assert result.meta == {"oneroster_version": "1.1", "as_of": "2025-03-01"}
    assert result.side == "source" and result.customer_id == "acme"
    assert result.row_counts() == dict.fromkeys(
        ("schools", "users", "links", "classes", "enrollments"), 0
    )


# -- invalid records -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tables", "where", "message"),
    [
        (
            {
                "enrollments": [
                    {"sourcedId": "e1", "endDate": "2025-01-01"},
                    {"sourcedId": "e2", "endDate": "2025-13-45"},
                ]
            },
            ("enrollments", "endDate", 1, "e2"),
            "'2025-13-45' is not a date",
        ),
        (
            {"enrollments": [{"sourcedId": "e1", "beginDate": "01/09/2024"}]},
            ("enrollments", "beginDate", 0, "e1"),
            "'01/09/2024' is not a date",
        ),
        (
            {"users": [user("u1"), user("u2", status="deleted")]},
            ("users", "status", 1, "u2"),
            "'deleted' is not a status",
        ),
        (
            {"users": [user("u1", enabledUser="maybe")]},
            ("users", "enabledUser", 0, "u1"),
            "'maybe' is not a boolean",
        ),
        ({"users": [user("u1"), user(" ")]}, ("users", "sourcedId", 1, None), "sourcedId is blank"),
        (
            {"roles": [role("u1", "main", "teacher", "s1")]},
            ("roles", "roleType", 0, "u1"),
            "'main' is not a roleType",
        ),
    ],
)
def test_invalid_records_raise_located_errors(tables, where, message) -> None:
    with pytest.raises(RecordError) as caught:
        roster(**tables)
    error = caught.value
    assert (error.table, error.field, error.row, error.record) == where
    assert message in error.message


# -- record-level helpers --------------------------------------------------------------


def test_helpers() -> None:
    assert split_list(" a, b ,,c ") == ["a", "b", "c"]
    assert split_list([{"sourcedId": "x"}, " y ", None]) == ["x", "y"]
    assert split_list(None) == []
    assert [parse_bool(v) for v in ("TRUE", "1", "Yes", "false", "0", "", None, True)] == [
        True,
        True,
        True,
        False,
        False,
        None,
        None,
        True,
    ]
    assert [parse_status(v) for v in ("active", "inactive", " ToBeDeleted ", "")] == [
        "active",
        "tobedeleted",
        "tobedeleted",
        None,
    ]
    assert parse_date("2024-02-29") == date(2024, 2, 29)
    assert parse_date("2024-02-29T12:00:00Z") == date(2024, 2, 29)
    for bad in ("2023-02-29", "2024-2-9", "tomorrow"):
        with pytest.raises(ValueError, match="is not a date"):
            parse_date(bad)
    with pytest.raises(ValueError, match="is not a boolean"):
        parse_bool("enabled")
