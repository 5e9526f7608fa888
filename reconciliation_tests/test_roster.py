"""The canonical roster: conforming tables, normalization, and the one-student slice."""

from __future__ import annotations

import polars as pl
import pytest

from reconciliation.roster import SCHEMAS, Roster, normalize_email, normalize_grade, sync_role


def test_tables_get_the_canonical_columns_and_types() -> None:
    roster = Roster("c", "source", users=[{"sis_id": "u1", "role": "student"}])
    assert roster.users.schema == pl.Schema(SCHEMAS["users"])
    assert roster.row_counts() == {
        "schools": 0,
        "users": 1,
        "links": 0,
        "classes": 0,
        "enrollments": 0,
    }
    with pytest.raises(ValueError, match="not in the canonical roster"):
        Roster("c", "source", users=pl.DataFrame({"sis_id": ["u1"], "shoe_size": [9]}))


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("K", "KG"),
        ("kindergarten", "KG"),
        ("5", "05"),
        ("05", "05"),
        ("First grade", "01"),
        ("Grade 3", "03"),
        ("3rd", "03"),
        ("PreK", "PK"),
        ("P1", "P1"),
        ("  ", None),
        (None, None),
    ],
)
def test_grades_normalize_to_ceds_and_keep_unknown_codes(raw: str | None, code: str | None) -> None:
    assert normalize_grade(raw) == code


def test_roles_and_emails() -> None:
    assert [sync_role(r) for r in ("Guardian", "relative", "administrator", "aide", None)] == [
        "parent",
        "parent",
        "admin",
        "other",
        "other",
    ]
    assert normalize_email("  Ann.Lee@Example.ORG ") == "ann.lee@example.org"
    assert normalize_email("   ") is None


def test_the_slice_of_one_student() -> None:
    roster = Roster(
        "c",
        "bookmarked",
        schools=[{"sis_id": "s1", "name": "North"}, {"sis_id": "s2", "name": "South"}],
        users=[
            {"sis_id": "stu-1", "role": "student", "school_sis_id": "s1", "bookmarked_id": 1},
            {"sis_id": "stu-2", "role": "student", "school_sis_id": "s2", "bookmarked_id": 2},
            {"sis_id": "par-9", "role": "parent", "bookmarked_id": 3},
            {"sis_id": "tch-1", "role": "teacher", "school_sis_id": "s1", "bookmarked_id": 4},
        ],
        # a merged parent account: its sis_id belongs to another family's parent
        links=[
            {
                "parent_sis_id": "par-9",
                "student_sis_id": None,
                "parent_bookmarked_id": 3,
                "student_bookmarked_id": 1,
            },
            {
                "parent_sis_id": "par-9",
                "student_sis_id": "stu-2",
                "parent_bookmarked_id": 3,
                "student_bookmarked_id": 2,
            },
        ],
        classes=[{"sis_id": "c1", "school_sis_id": "s1", "name": "Reading"}],
        enrollments=[
            {"sis_id": "e1", "class_sis_id": "c1", "user_sis_id": "stu-1"},
            {"sis_id": "e2", "class_sis_id": "c1", "user_sis_id": "tch-1"},
        ],
    )
    one = roster.for_students(["stu-1"])
    assert sorted(one.users["sis_id"]) == ["par-9", "stu-1"]
    assert one.links.height == 1 and one.links["student_bookmarked_id"].to_list() == [1]
    assert one.enrollments["sis_id"].to_list() == ["e1"]
    assert one.classes["sis_id"].to_list() == ["c1"]
    assert one.schools["sis_id"].to_list() == ["s1"]
    assert one.meta["scope"] == {"students": ["stu-1"]}


def test_the_stored_roster_keeps_the_orgs(tmp_path) -> None:
    """Through Dagster the rosters are stored as Parquet between assets: the export's orgs
    (which say that a class at `d1` is at the district) must come back, and a roster stored
    before they existed still loads."""
    import dagster as dg

    from reconciliation.defs.io_managers import RosterIOManager

    roster = Roster(
        "c",
        "source",
        users=[{"sis_id": "u1", "role": "student", "org_sis_ids": ["s1", "d1"]}],
        orgs=[{"sis_id": "d1", "type": "district", "name": "USD", "active": True}],
    )
    manager = RosterIOManager(base_dir=str(tmp_path))
    key = dg.AssetKey("source_roster")
    manager.handle_output(dg.build_output_context(asset_key=key, partition_key="c"), roster)
    loaded = manager.load_input(dg.build_input_context(asset_key=key, partition_key="c"))
    assert loaded.orgs.equals(roster.orgs)
    assert loaded.users["org_sis_ids"].to_list() == [["s1", "d1"]]
    (tmp_path / "source_roster" / "c" / "orgs.parquet").unlink()
    older = manager.load_input(dg.build_input_context(asset_key=key, partition_key="c"))
    assert older.orgs.is_empty() and older.users.equals(roster.users)
