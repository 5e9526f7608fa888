"""The diagnostic rules: pure functions `(source, bookmarked, settings) -> findings`.

The registry is `RULE_IDS`, one line per rule; each id is also the rule's module name
(`reconciliation/rules/<id>.py`, with `evaluate(ctx)` and `RULE`). The ids are a contract:
reports, the settings' `rules.disabled`, the demo's ground truth and the asset checks'
names use them.

Importing this package is light on purpose: the Dagster definitions read `RULE_IDS` to
declare one asset check per rule and must load fast, so the rule modules (and polars) are
imported on first use of `RULES`, `run_rules` or the other engine names (see `engine.py`).
"""

from __future__ import annotations

from typing import Any

RULE_IDS: tuple[str, ...] = (
    "student_mismatch",
    "missing_data",
    "parent_email_conflict",
    "campus_transfer",
    "stale_record",
    "field_mismatch",
    "duplicate_identity",
    "source_integrity",
)

_ENGINE = ("FINDING_SCHEMA", "RULES", "Rule", "RuleContext", "all_findings", "run_rules")
__all__ = ["RULE_IDS", *_ENGINE]


def __getattr__(name: str) -> Any:
    """Load the engine (and every rule module) when one of its names is first used."""
    if name in _ENGINE:
        from reconciliation.rules import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'reconciliation.rules' has no attribute {name!r}")
