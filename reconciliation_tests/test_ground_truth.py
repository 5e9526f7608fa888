"""Recall and precision of every rule on the demo generator's ground truth (with its noise).

Runs the real path without Dagster: the connectors read the generated OneRoster files and
the SQLite Bookmarked database, the rules compare them. A finding matches the ground truth
on (customer, rule, entity type, SIS id, status).
"""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from reconciliation.connectors import bookmarked_connector, source_connector
from reconciliation.demo import RULES as DEMO_RULES
from reconciliation.demo import generate_demo, read_ground_truth
from reconciliation.rules import RULES, all_findings, run_rules
from reconciliation.settings import DEFAULT_SETTINGS_DIR, load_settings

KEY = ["customer_id", "rule", "entity_type", "sis_id", "status"]
THRESHOLD = 0.95


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, pl.DataFrame]:
    root = tmp_path_factory.mktemp("truth")
    manifest = generate_demo(root / "demo" / "data", seed=11)
    (root / "settings").mkdir()
    for customer in manifest.customers:
        shutil.copy(DEFAULT_SETTINGS_DIR / f"{customer}.json", root / "settings")
    settings = load_settings(root / "settings")
    assert not settings.errors
    found = []
    for customer in settings.customers.values():
        source = source_connector(customer).fetch_roster()
        bookmarked = bookmarked_connector(customer).fetch_roster()
        findings = all_findings(run_rules(source, bookmarked, customer))
        found.append(findings.with_columns(customer_id=pl.lit(customer.customer_id)).select(KEY))
    truth = read_ground_truth(manifest.ground_truth).select(KEY)
    return truth, pl.concat(found)


def test_ground_truth_covers_every_rule(scored: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    truth, _ = scored
    assert set(truth["rule"]) == set(RULES) == set(DEMO_RULES)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_recall_and_precision(rule: str, scored: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    truth, found = scored
    truth, found = truth.filter(pl.col("rule") == rule), found.filter(pl.col("rule") == rule)
    hits = truth.join(found, on=KEY, how="semi").height
    recall = hits / truth.height
    precision = hits / found.height if found.height else 0.0
    missed = truth.join(found, on=KEY, how="anti")
    extra = found.join(truth, on=KEY, how="anti")
    assert recall >= THRESHOLD, f"{rule}: recall {recall:.2f}; missed:\n{missed}"
    assert precision >= THRESHOLD, f"{rule}: precision {precision:.2f}; unexpected:\n{extra}"
