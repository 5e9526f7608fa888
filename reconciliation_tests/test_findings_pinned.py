"""The exact findings on the demo customers and on a generated customer, pinned.

Speed work (the IO manager's Parquet files, the connectors' reads, the order steps run
in) must never change what a scan reports. These tests run the pure rules in process on
worlds generated for a fixed date, so they are deterministic and take seconds:

- every rule's findings (count, and a digest of the sorted entity type, SIS id, status
  and severity of each) are pinned per customer; a change to the rules or the demo
  generator that moves them updates `PINNED` on purpose, in the same commit;
- a roster stored by the IO manager and loaded back gives the same tables (schemas
  included) and the same findings, every column of every row.
"""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from reconciliation.defs.io_managers import RosterIOManager
from reconciliation.demo import World, generate_world
from reconciliation.demo.demo import demo_worlds
from reconciliation.roster import ALL_TABLES, Roster
from reconciliation.rules import all_findings, run_rules

TODAY = date(2026, 10, 14)
PINNED_COLUMNS = ["rule", "entity_type", "sis_id", "status", "severity"]

#: customer -> rule -> (findings, digest of the sorted PINNED_COLUMNS rows)
PINNED: dict[str, dict[str, tuple[int, str]]] = {
    "riverside-usd": {
        "campus_transfer": (5, "5e1bed8626c984cd"),
        "duplicate_identity": (3, "3f1161cf008d7820"),
        "field_mismatch": (13, "042c5df3c477705a"),
        "missing_data": (19, "dc0aad5d8fa14112"),
        "parent_email_conflict": (9, "54485552adba6f8e"),
        "source_integrity": (6, "152498a747c281d1"),
        "stale_record": (12, "5ff5149c553f0eef"),
        "student_mismatch": (9, "07202b2e679313f9"),
    },
    "maple-charter": {
        "campus_transfer": (5, "962551d8323a0009"),
        "duplicate_identity": (3, "9b1f77a48f809c9c"),
        "field_mismatch": (13, "2c31dd3f0198bfc2"),
        "missing_data": (16, "e423b0c905697922"),
        "parent_email_conflict": (9, "eafb088602f146da"),
        "source_integrity": (6, "d2bad7ff47bc48c7"),
        "stale_record": (12, "45c2cdcf8e9b9fa6"),
        "student_mismatch": (9, "215ee7bab373063a"),
    },
    "hillcrest-academy": {
        "duplicate_identity": (3, "2b7d0fdec781e295"),
        "field_mismatch": (13, "e396ca123a745f82"),
        "missing_data": (16, "201ba83def399f8a"),
        "parent_email_conflict": (9, "864298f5858962cc"),
        "source_integrity": (6, "f1f89074ef0de5c7"),
        "stale_record": (12, "694f60703fabbb5a"),
        "student_mismatch": (9, "fb33a7b95cfe2ddd"),
    },
    "benchmark": {
        "campus_transfer": (15, "99376af7c23b6d9a"),
        "duplicate_identity": (9, "a7fe968a63b39799"),
        "field_mismatch": (39, "d0664537c7671023"),
        "missing_data": (46, "2753cee119881e3c"),
        "parent_email_conflict": (27, "3c2bb05523764600"),
        "source_integrity": (18, "d493562407b0e4a7"),
        "stale_record": (32, "267a70b56433a55c"),
        "student_mismatch": (27, "b90f921c6cb0c28b"),
    },
}


def digest(findings: pl.DataFrame) -> dict[str, tuple[int, str]]:
    """Per rule: how many findings, and a digest of what they say (sorted, so the order
    rules emit them in does not matter)."""
    rows = findings.select(PINNED_COLUMNS).sort(PINNED_COLUMNS, nulls_last=True)
    out = {}
    for (rule,), part in rows.group_by("rule", maintain_order=True):
        text = "\n".join("\t".join(str(v) for v in row) for row in part.iter_rows())
        out[str(rule)] = (part.height, hashlib.sha256(text.encode()).hexdigest()[:16])
    return dict(sorted(out.items()))


@pytest.fixture(scope="module")
def worlds() -> list[World]:
    demo, _unrelated = demo_worlds(seed=7, today=TODAY)
    return [*demo, generate_world(3000, 11, today=TODAY)]


@pytest.fixture(scope="module")
def findings(worlds: list[World]) -> dict[str, pl.DataFrame]:
    out = {}
    for world in worlds:
        source, bookmarked = world.rosters()
        out[world.customer_id] = all_findings(run_rules(source, bookmarked))
    return out


def test_findings_are_pinned(findings: dict[str, pl.DataFrame]) -> None:
    found = {customer: digest(frame) for customer, frame in findings.items()}
    assert found == PINNED, (
        "the findings changed; if on purpose (a rule or the demo generator changed), "
        f"set PINNED to:\n{found!r}"
    )


def _roundtrip(roster: Roster, asset: str, partition: str, base: Path) -> Roster:
    manager = RosterIOManager(base_dir=str(base))
    key = dg.AssetKey(asset)
    manager.handle_output(dg.build_output_context(asset_key=key, partition_key=partition), roster)
    return manager.load_input(dg.build_input_context(asset_key=key, partition_key=partition))


def test_stored_rosters_give_the_same_findings(
    worlds: list[World], findings: dict[str, pl.DataFrame], tmp_path: Path
) -> None:
    for world in (worlds[0], worlds[-1]):
        source, bookmarked = world.rosters()
        stored = []
        for asset, roster in (("source_roster", source), ("bookmarked_roster", bookmarked)):
            loaded = _roundtrip(roster, asset, world.customer_id, tmp_path)
            for table in ALL_TABLES:
                assert loaded.table(table).equals(roster.table(table)), (asset, table)
                assert loaded.table(table).schema == roster.table(table).schema, (asset, table)
            assert (loaded.customer_id, loaded.side) == (roster.customer_id, roster.side)
            stored.append(loaded)
        again = all_findings(run_rules(*stored))
        assert again.equals(findings[world.customer_id]), world.customer_id
