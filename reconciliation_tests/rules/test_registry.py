"""The rule registry, the findings contract, `run_rules` and settings."""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import reconciliation.rules as rules_package
from reconciliation.rules import RULES, all_findings, run_rules
from reconciliation.rules.base import ENTITY_TYPES, FINDING_SCHEMA, SEVERITIES, STATUSES
from reconciliation.settings import CustomerSettings
from reconciliation_tests.rules.world import kitchen_sink

#: modules of the package that are not rules
NOT_RULES = {"base", "catalog", "context", "data_quality", "engine"}
PACKAGE_DIR = Path(rules_package.__file__).parent


def _rule_modules() -> set[str]:
    return {m.name for m in pkgutil.iter_modules([str(PACKAGE_DIR)])} - NOT_RULES


def test_the_registry_has_one_entry_per_rule_module() -> None:
    assert set(RULES) == _rule_modules()
    for name in _rule_modules():
        module = importlib.import_module(f"reconciliation.rules.{name}")
        assert module.RULE.id == name
        assert module.RULE.evaluate is module.evaluate
        assert RULES[name] is module.RULE
        assert module.RULE.title and module.RULE.description
        assert set(module.RULE.statuses) <= set(STATUSES)


def test_the_rule_ids_are_the_contract() -> None:
    assert set(RULES) == {
        "student_mismatch",
        "missing_data",
        "parent_email_conflict",
        "campus_transfer",
        "stale_record",
        "field_mismatch",
        "duplicate_identity",
        "source_integrity",
    }


@pytest.mark.parametrize("path", sorted(PACKAGE_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_rule_module_imports_dagster(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "dagster" not in imported


def test_importing_the_rules_loads_neither_dagster_nor_great_expectations() -> None:
    code = (
        "import sys, reconciliation.rules, reconciliation.rules.data_quality; "
        "print(sorted(m for m in ('dagster', 'great_expectations') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE_DIR.parents[1],
    )
    assert out.stdout.strip() == "[]"


def test_every_rule_returns_findings_in_the_fixed_schema() -> None:
    src, bm = kitchen_sink()
    results = run_rules(src, bm)
    assert set(results) == set(RULES)
    for rule_id, found in results.items():
        assert found.schema == pl.Schema(FINDING_SCHEMA), rule_id
        assert found.height, f"{rule_id} found nothing in the kitchen sink"
        assert set(found["rule"]) == {rule_id}
        assert set(found["status"]) == set(RULES[rule_id].statuses), rule_id
        assert set(found["severity"]) <= set(SEVERITIES)
        assert set(found["entity_type"]) <= set(ENTITY_TYPES)
        assert found["sis_id"].null_count() == 0
        assert found["detail"].null_count() == 0
        for remediation in found["remediation"]:
            assert remediation.startswith(("District data admin: ", "Bookmarked support: "))
        for blob in found["details_json"]:
            assert isinstance(json.loads(blob), dict)
    combined = all_findings(results)
    assert combined.height == sum(f.height for f in results.values())


def test_only_picks_rules_and_unknown_ids_are_refused() -> None:
    src, bm = kitchen_sink()
    assert set(run_rules(src, bm, only=["missing_data"])) == {"missing_data"}
    with pytest.raises(ValueError, match="no_such_rule"):
        run_rules(src, bm, only=["no_such_rule"])


@pytest.mark.parametrize(
    "settings",
    [
        {"disabled_rules": ["field_mismatch", "stale_record"]},
        {"rules": {"disabled": ["field_mismatch", "stale_record"]}},
        CustomerSettings(
            customer_id="demo",
            name="Demo",
            environment="staging",
            bookmarked={},
            source={},
            path=Path("demo.json"),
            disabled_rules=frozenset({"field_mismatch", "stale_record"}),
        ),
    ],
    ids=["mapping", "settings-json", "CustomerSettings"],
)
def test_disabled_rules_are_left_out(settings) -> None:
    src, bm = kitchen_sink()
    results = run_rules(src, bm, settings)
    assert set(results) == set(RULES) - {"field_mismatch", "stale_record"}


def test_the_findings_are_the_same_on_every_run() -> None:
    src, bm = kitchen_sink()
    first, second = run_rules(src, bm), run_rules(src, bm)
    for rule_id in RULES:
        assert first[rule_id].equals(second[rule_id])
