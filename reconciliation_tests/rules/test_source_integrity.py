"""source_integrity: references inside the SIS export that do not resolve."""

from __future__ import annotations

import json

from reconciliation_tests.rules.world import add, everything, keys, run, source, sync

RULE = "source_integrity"
SRC = "ISSUE_IN_SOURCE"


def _enrollment(sis_id: str, class_id: str, user_id: str, active: bool = True) -> dict:
    return {
        "sis_id": sis_id,
        "class_sis_id": class_id,
        "user_sis_id": user_id,
        "role": "student",
        "active": active,
    }


def test_an_enrollment_to_an_unknown_class() -> None:
    src = add(source(), "enrollments", _enrollment("e-bad-1", "cls-404", "stu-1"))
    found = run(src, sync(source()), RULE)
    assert keys(found) == {("enrollment", "e-bad-1", SRC)}
    row = found.row(0, named=True)
    assert "class cls-404 is not in the export" in row["detail"]
    assert row["remediation"].startswith("District data admin:")
    facts = json.loads(row["details_json"])
    assert facts["class_unknown"] is True and facts["user_unknown"] is False


def test_an_enrollment_to_an_unknown_user() -> None:
    src = add(source(), "enrollments", _enrollment("e-bad-2", "cls-1", "stu-404"))
    found = run(src, sync(source()), RULE)
    assert keys(found) == {("enrollment", "e-bad-2", SRC)}
    assert "user stu-404 is not in the export" in found["detail"][0]


def test_both_references_unknown_is_one_finding() -> None:
    src = add(source(), "enrollments", _enrollment("e-bad-3", "cls-404", "stu-404"))
    found = run(src, sync(source()), RULE)
    assert found.height == 1
    assert "user stu-404" in found["detail"][0] and "class cls-404" in found["detail"][0]


def test_a_class_of_an_unknown_school() -> None:
    src = add(
        source(),
        "classes",
        {"sis_id": "cls-9", "school_sis_id": "sch-404", "name": "Orphan", "active": True},
    )
    found = run(src, sync(src), RULE)
    assert keys(found) == {("class", "cls-9", SRC)}
    assert "sch-404" in found["detail"][0]


def test_dangling_references_are_source_issues_only_not_missing_data() -> None:
    src = add(
        source(),
        "enrollments",
        _enrollment("e-bad-1", "cls-404", "stu-1"),
        _enrollment("e-bad-2", "cls-1", "stu-404"),
    )
    assert everything(src, sync(source())) == {
        RULE: {("enrollment", "e-bad-1", SRC), ("enrollment", "e-bad-2", SRC)}
    }


def test_tobedeleted_enrollments_are_not_checked() -> None:
    src = add(source(), "enrollments", _enrollment("e-old", "cls-404", "stu-1", active=False))
    assert everything(src, sync(source())) == {}


def test_an_enrollment_of_an_aide_resolves() -> None:
    # aide-1 is in the export (role not synced): the reference resolves
    assert run(source(), sync(source()), RULE).is_empty()


def test_a_class_of_an_unknown_school_is_not_also_missing_from_bookmarked() -> None:
    # Bookmarked cannot hold a class without its school, so the only finding is the SIS's
    src = add(
        source(),
        "classes",
        {"sis_id": "cls-9", "school_sis_id": "sch-404", "name": "Orphan", "active": True},
    )
    assert everything(src, sync(source())) == {RULE: {("class", "cls-9", SRC)}}
