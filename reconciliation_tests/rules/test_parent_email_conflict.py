"""parent_email_conflict: different families' parents sharing one email in the SIS."""

from __future__ import annotations

import json

from reconciliation_tests.rules.world import (
    bm_id,
    drop,
    everything,
    keys,
    run,
    source,
    sync,
    update,
)

RULE = "parent_email_conflict"
SRC = "ISSUE_IN_SOURCE"


def _shared_email_source():
    """par-4 (Kim family) gets par-3's (Ortiz family) email, written differently."""
    return update(
        source(),
        "users",
        {"sis_id": "par-4"},
        email=" OLGA.Ortiz@example.org",
        email_normalized=None,
    )


def _merged_bookmarked():
    """What the sync makes of it: one account keyed by the email, carrying the second
    parent's sis_id and name, linked to both families' children."""
    bm = sync(source())
    account = bm_id(bm, "par-3")
    bm = drop(bm, "users", sis_id="par-4")
    bm = update(bm, "users", {"sis_id": "par-3"}, sis_id="par-4", first_name="Kai", last_name="Kim")
    bm = update(bm, "links", {"parent_sis_id": "par-3"}, parent_sis_id="par-4")
    return update(bm, "links", {"parent_sis_id": "par-4"}, parent_bookmarked_id=account)


def test_merged_families_are_one_critical_finding_per_parent() -> None:
    bm = _merged_bookmarked()
    found = run(_shared_email_source(), bm, RULE)
    assert keys(found) == {("parent", "par-3", SRC), ("parent", "par-4", SRC)}
    assert set(found["severity"]) == {"critical"}
    account = bm.users.filter(bm.users["sis_id"] == "par-4")["bookmarked_id"].item()
    assert set(found["bookmarked_id"]) == {account}
    rows = {row["sis_id"]: row for row in found.iter_rows(named=True)}
    ortiz = rows["par-3"]
    assert "merged them into one parent account" in ortiz["detail"]
    assert "Cal Ortiz (stu-3)" in ortiz["detail"] and "Dee Kim (stu-4)" in ortiz["detail"]
    facts = json.loads(ortiz["details_json"])
    assert facts["own_children"] == ["stu-3"]
    assert facts["exposed_students"] == ["stu-4"]
    assert facts["families"] == 2
    assert json.loads(rows["par-4"]["details_json"])["exposed_students"] == ["stu-3"]
    assert ortiz["remediation"].startswith("District data admin:")
    assert "Bookmarked support:" in ortiz["remediation"]


def test_the_merge_is_reported_once_not_as_mismatch_or_missing_parent() -> None:
    found = everything(_shared_email_source(), _merged_bookmarked())
    assert found == {RULE: {("parent", "par-3", SRC), ("parent", "par-4", SRC)}}


def test_a_conflict_bookmarked_has_not_merged_yet_is_high() -> None:
    bm = update(
        sync(source()),
        "users",
        {"sis_id": "par-3"},
        email="old@example.org",
        email_normalized="old@example.org",
    )
    bm = update(
        bm,
        "users",
        {"sis_id": "par-4"},
        email="older@example.org",
        email_normalized="older@example.org",
    )
    found = run(_shared_email_source(), bm, RULE)
    assert keys(found) == {("parent", "par-3", SRC), ("parent", "par-4", SRC)}
    assert set(found["severity"]) == {"high"}
    assert found["detail"].str.contains("no live parent account with this email").all()


def test_a_parent_of_several_siblings_is_no_conflict() -> None:
    # par-1 is one sourcedId linked to stu-1 and stu-2
    assert run(source(), sync(source()), RULE).is_empty()


def test_two_guardians_of_one_family_sharing_an_email_are_no_conflict() -> None:
    src = update(
        source(),
        "users",
        {"sis_id": "par-2"},
        email="lia.lee@example.org",
        email_normalized="lia.lee@example.org",
    )
    # Bookmarked merged them: one account (par-2's sis_id) linked to both children
    bm = sync(source())
    bm = drop(bm, "users", sis_id="par-1")
    bm = drop(bm, "links", parent_sis_id="par-1")
    bm = update(
        bm,
        "users",
        {"sis_id": "par-2"},
        email="lia.lee@example.org",
        email_normalized="lia.lee@example.org",
    )
    assert everything(src, bm) == {}


def test_two_guardians_and_another_family_on_one_email_flag_all_three() -> None:
    src = source()
    for parent in ("par-1", "par-2", "par-3"):
        src = update(
            src,
            "users",
            {"sis_id": parent},
            email="family@example.org",
            email_normalized="family@example.org",
        )
    found = run(src, sync(source()), RULE)
    assert keys(found) == {("parent", p, SRC) for p in ("par-1", "par-2", "par-3")}
    facts = {row["sis_id"]: json.loads(row["details_json"]) for row in found.iter_rows(named=True)}
    assert {f["families"] for f in facts.values()} == {2}
    assert facts["par-1"]["own_children"] == ["stu-1", "stu-2"]
    assert facts["par-3"]["own_children"] == ["stu-3"]
