"""field_mismatch: a record live on both sides whose fields differ."""

from __future__ import annotations

import json

from reconciliation_tests.rules.world import everything, keys, run, source, sync, update

RULE = "field_mismatch"
BM = "ISSUE_IN_BOOKMARKED"


def _one(bm, **settings):
    found = run(source(), bm, RULE, settings or None)
    assert found.height == 1, found
    return found.row(0, named=True)


def test_a_name_difference_is_low_and_names_stay_out_of_details_json() -> None:
    row = _one(update(sync(source()), "users", {"sis_id": "stu-1"}, last_name="Li"))
    assert (row["entity_type"], row["sis_id"], row["status"]) == ("student", "stu-1", BM)
    assert row["severity"] == "low"
    assert "last_name: SIS 'Lee' vs Bookmarked 'Li'" in row["detail"]
    facts = json.loads(row["details_json"])
    assert facts["fields"] == ["last_name"]
    assert "Lee" not in row["details_json"] and "Li" not in row["details_json"]
    assert row["remediation"].startswith("Bookmarked support:")


def test_an_email_difference_is_medium_but_case_is_none() -> None:
    bm = update(
        sync(source()),
        "users",
        {"sis_id": "tch-1"},
        email="tess@other.example",
        email_normalized="tess@other.example",
    )
    row = _one(bm)
    assert row["severity"] == "medium" and json.loads(row["details_json"])["fields"] == ["email"]
    bm = update(
        sync(source()),
        "users",
        {"sis_id": "tch-1"},
        email="TESS.Reed@north.example",
        email_normalized=None,
    )
    assert run(source(), bm, RULE).is_empty()


def test_a_grade_difference_after_normalizing_is_low() -> None:
    row = _one(update(sync(source()), "users", {"sis_id": "stu-2"}, grade="01", grade_raw="01"))
    assert row["severity"] == "low"
    assert json.loads(row["details_json"])["values"] == [
        {"field": "grade", "source": "KG", "bookmarked": "01"}
    ]


def test_a_teacher_grade_is_not_compared() -> None:
    bm = update(sync(source()), "users", {"sis_id": "tch-1"}, grade="05")
    assert run(source(), bm, RULE).is_empty()


def test_student_number_and_school_differences_are_medium_in_one_finding() -> None:
    bm = update(
        sync(source()), "users", {"sis_id": "tch-2"}, student_number="T-9", school_sis_id="sch-1"
    )
    row = _one(bm)
    assert row["severity"] == "medium"
    assert json.loads(row["details_json"])["fields"] == ["student_number", "school"]


def test_surrounding_whitespace_in_names_is_no_difference() -> None:
    bm = update(sync(source()), "users", {"sis_id": "stu-1"}, first_name=" Ann ")
    assert run(source(), bm, RULE).is_empty()


def test_school_and_class_fields() -> None:
    bm = update(sync(source()), "schools", {"sis_id": "sch-1"}, name="North Elem")
    bm = update(bm, "classes", {"sis_id": "cls-1"}, school_sis_id="sch-2")
    found = run(source(), bm, RULE)
    assert keys(found) == {("school", "sch-1", BM), ("class", "cls-1", BM)}
    severity = dict(found.select("sis_id", "severity").iter_rows())
    assert severity == {"sch-1": "low", "cls-1": "medium"}


def test_settings_limit_the_compared_fields() -> None:
    bm = update(sync(source()), "users", {"sis_id": "stu-1"}, last_name="Li", grade="04")
    row = _one(bm, field_mismatch_fields=["grade"])
    assert json.loads(row["details_json"])["fields"] == ["grade"]


def test_inactive_records_are_not_compared() -> None:
    src = update(source(), "users", {"sis_id": "stu-6"}, last_name="Changed")
    assert everything(src, sync(source())) == {}
