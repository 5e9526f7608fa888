"""Sync-hold: an empty or cut export, or another district's database, is held, not
turned into findings (pure functions, on the demo's real files and database)."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from reconciliation.connectors import bookmarked_connector, source_connector
from reconciliation.demo import generate_demo
from reconciliation.hold import ACCEPT_TAG, check_plausibility, fingerprint, is_accepted
from reconciliation.roster import Roster
from reconciliation.settings import DEFAULT_SETTINGS_DIR, load_settings


@pytest.fixture(scope="module")
def demo_rosters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Roster, Roster]]:
    root = tmp_path_factory.mktemp("hold")
    generate_demo(root / "demo" / "data")
    (root / "settings").mkdir()
    for customer in ("riverside-usd", "maple-charter"):
        shutil.copy(DEFAULT_SETTINGS_DIR / f"{customer}.json", root / "settings")
    folder = load_settings(root / "settings")
    return {
        customer: (
            source_connector(folder.get(customer)).fetch_roster(),
            bookmarked_connector(folder.get(customer)).fetch_roster(),
        )
        for customer in ("riverside-usd", "maple-charter")
    }


def test_the_demo_is_plausible(demo_rosters: dict[str, tuple[Roster, Roster]]) -> None:
    for source, bookmarked in demo_rosters.values():
        assert check_plausibility(source, bookmarked) is None


def test_users_file_with_only_its_header_is_held(demo_rosters) -> None:
    source, bookmarked = demo_rosters["riverside-usd"]
    hold = check_plausibility(source.with_tables(users=source.users.clear()), bookmarked)
    assert hold is not None
    assert hold.reasons[0].startswith("users: the SIS export has no users rows (Bookmarked has")
    assert any(r.startswith("users: the SIS would drop") for r in hold.reasons)


def test_an_export_with_no_users_is_held_even_when_bookmarked_is_empty(demo_rosters) -> None:
    source, bookmarked = demo_rosters["riverside-usd"]
    empty_users = source.with_tables(users=source.users.clear())
    hold = check_plausibility(empty_users, bookmarked.with_tables(users=bookmarked.users.clear()))
    assert hold is not None and "users: the SIS export has no users rows" in hold.summary()


def test_empty_or_cut_enrollments_are_held(demo_rosters) -> None:
    source, bookmarked = demo_rosters["riverside-usd"]
    empty = check_plausibility(
        source.with_tables(enrollments=source.enrollments.clear()), bookmarked
    )
    assert empty is not None and "enrollments: the SIS export has no enrollments rows" in (
        empty.summary()
    )
    half = source.enrollments.head(source.enrollments.height // 2)
    cut = check_plausibility(source.with_tables(enrollments=half), bookmarked)
    assert cut is not None
    (reason,) = cut.reasons
    assert reason.startswith("enrollments: the SIS would drop ")
    assert "limit 30%" in reason


def test_the_limit_is_a_setting_per_table(demo_rosters) -> None:
    source, bookmarked = demo_rosters["riverside-usd"]
    half = source.with_tables(enrollments=source.enrollments.head(source.enrollments.height // 2))
    assert check_plausibility(half, bookmarked, max_missing_share={"enrollments": 0.6}) is None
    assert check_plausibility(half, bookmarked, max_missing_share={"users": 0.6}) is not None


def test_shrinking_since_the_last_run_is_held(demo_rosters) -> None:
    source, bookmarked = demo_rosters["riverside-usd"]
    live_users = source.users.filter(pl.col("active")).height
    hold = check_plausibility(source, bookmarked, previous_source_counts={"users": live_users * 3})
    assert hold is not None
    (reason,) = hold.reasons
    assert reason.startswith(f"users: the SIS export shrank from {live_users * 3} live users")


def test_another_districts_database_is_held(demo_rosters) -> None:
    source, _ = demo_rosters["riverside-usd"]
    _, other = demo_rosters["maple-charter"]
    hold = check_plausibility(source, other, bookmarked_customer_id=2002)
    assert hold is not None
    (reason,) = [r for r in hold.reasons if r.startswith("different customers: only 0 of")]
    # the names tell a person at once which district the settings point at
    bookmarked_name = other.meta["customer_name"]
    district = source.orgs.filter(pl.col("type") == "district")["name"].item()
    assert f"(Bookmarked customer 2002 is {bookmarked_name!r}; the export's district is " in (
        reason
    )
    assert repr(district) in reason


def test_holds_carry_counts_never_records(demo_rosters) -> None:
    source, bookmarked = demo_rosters["riverside-usd"]
    hold = check_plausibility(source.with_tables(users=source.users.clear()), bookmarked)
    assert hold is not None
    text = repr(hold.as_dict())
    for value in (
        bookmarked.users["sis_id"].head(50).to_list()
        + source.users["email"].drop_nulls().head(50).to_list()
    ):
        assert value not in text


def test_accepting_names_one_export(demo_rosters) -> None:
    source, bookmarked = demo_rosters["riverside-usd"]
    cut = source.with_tables(enrollments=source.enrollments.head(10))
    hold = check_plausibility(cut, bookmarked)
    assert hold is not None
    assert hold.fingerprint == fingerprint(cut) != fingerprint(source)
    assert not is_accepted(hold, None, {})
    assert not is_accepted(hold, fingerprint(source), {})
    assert is_accepted(hold, hold.fingerprint, {})
    assert is_accepted(hold, None, {ACCEPT_TAG: "true"})
    assert is_accepted(hold, None, {ACCEPT_TAG: hold.fingerprint})
    assert not is_accepted(hold, None, {ACCEPT_TAG: "0123456789ab"})


def test_fingerprint_is_stable(demo_rosters) -> None:
    source, _ = demo_rosters["riverside-usd"]
    assert fingerprint(source) == fingerprint(Roster(**{**source.__dict__}))
    assert len(fingerprint(source)) == 12
