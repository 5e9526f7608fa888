"""The diagnostic rules: pure functions `(source, bookmarked, settings) -> findings`.

Each rule lives in its own module with `evaluate(ctx)` and a module-level `RULE`; the
registry below has one line per rule, and rule ids are a contract (reports, settings'
`disabled_rules`, the demo generator's ground truth). No Dagster here: the Dagster edge
wraps each rule as an asset check.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import polars as pl

from reconciliation.roster import Roster
from reconciliation.rules import (
    campus_transfer,
    duplicate_identity,
    field_mismatch,
    missing_data,
    parent_email_conflict,
    source_integrity,
    stale_record,
    student_mismatch,
)
from reconciliation.rules.base import FINDING_SCHEMA, Rule, concat_findings, empty_findings
from reconciliation.rules.context import RuleContext

RULES: dict[str, Rule] = {
    student_mismatch.RULE.id: student_mismatch.RULE,
    missing_data.RULE.id: missing_data.RULE,
    parent_email_conflict.RULE.id: parent_email_conflict.RULE,
    campus_transfer.RULE.id: campus_transfer.RULE,
    stale_record.RULE.id: stale_record.RULE,
    field_mismatch.RULE.id: field_mismatch.RULE,
    duplicate_identity.RULE.id: duplicate_identity.RULE,
    source_integrity.RULE.id: source_integrity.RULE,
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
    return {
        rule_id: RULES[rule_id].evaluate(ctx)
        for rule_id in wanted
        if rule_id not in ctx.disabled_rules
    }


def all_findings(results: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """The findings of several rules as one table (for a report)."""
    return concat_findings(results.values()) if results else empty_findings()


__all__ = ["FINDING_SCHEMA", "RULES", "Rule", "RuleContext", "all_findings", "run_rules"]
