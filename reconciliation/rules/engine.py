"""Running the rules: the registry of rule objects, `run_rules` and `all_findings`.

Each rule lives in its own module, named by its id, with `evaluate(ctx)` and a
module-level `RULE`; `RULE_IDS` in the package's `__init__` lists them. No Dagster here.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import import_module
from typing import Any

import polars as pl

from reconciliation.roster import Roster
from reconciliation.rules import RULE_IDS
from reconciliation.rules.base import FINDING_SCHEMA, Rule, concat_findings, empty_findings
from reconciliation.rules.context import RuleContext

RULES: dict[str, Rule] = {
    rule_id: import_module(f"reconciliation.rules.{rule_id}").RULE for rule_id in RULE_IDS
}


def run_rules(
    source: Roster,
    bookmarked: Roster,
    settings: Any = None,
    only: Iterable[str] | None = None,
) -> dict[str, pl.DataFrame]:
    """Run the rules on one customer's two rosters; rule id -> findings.

    `only` picks rules (unknown ids raise ValueError); rules named in the settings'
    `disabled_rules` are left out of the result. All rules share one `RuleContext`, so
    the big joins happen once.
    """
    ctx = RuleContext(source, bookmarked, settings)
    wanted = list(RULES) if only is None else list(dict.fromkeys(only))
    unknown = [rule_id for rule_id in wanted if rule_id not in RULES]
    if unknown:
        raise ValueError(f"unknown rule id(s) {unknown}; known: {sorted(RULES)}")
    if only is None:
        ctx.compute_shared()  # every rule will ask for them
    return {
        rule_id: RULES[rule_id].evaluate(ctx)
        for rule_id in wanted
        if rule_id not in ctx.disabled_rules
    }


def all_findings(results: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """The findings of several rules as one table (for a report)."""
    return concat_findings(results.values()) if results else empty_findings()


__all__ = ["FINDING_SCHEMA", "RULES", "Rule", "RuleContext", "all_findings", "run_rules"]
