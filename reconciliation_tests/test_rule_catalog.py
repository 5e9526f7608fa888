"""The rule catalog (read from the rule modules' source, for the Dagster check definitions)
says what the imported rules say, and the check definitions carry it."""

from __future__ import annotations

from reconciliation.rules import RULE_IDS, RULES
from reconciliation.rules.catalog import rule_cards


def test_catalog_matches_the_imported_rules() -> None:
    cards = rule_cards()
    assert tuple(cards) == RULE_IDS
    for rule_id, card in cards.items():
        rule = RULES[rule_id]
        assert (card.title, card.description, card.statuses) == (
            rule.title,
            rule.description,
            tuple(rule.statuses),
        )
        assert card.owner  # who acts, by status


def test_check_definitions_carry_description_and_owner() -> None:
    from reconciliation.definitions import defs

    specs = {spec.name: spec for spec in defs.resolve_assets_def("mismatch_report").check_specs}
    assert set(specs) == set(RULE_IDS)
    for rule_id, spec in specs.items():
        assert spec.description.startswith(f"{RULES[rule_id].title}: {RULES[rule_id].description}")
        assert "Who acts: " in spec.description
        assert spec.partitions_def is not None  # one result per customer
