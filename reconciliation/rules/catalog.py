"""What each rule is (title, description, statuses, who acts), without importing it.

The Dagster definitions declare one asset check per rule, with the rule's description and
owner, and must load in under 2 s: importing the rule modules would import polars. So the
catalog reads each module's `RULE = Rule(...)` from its source text: the module stays the
one place a rule is described, and a test compares the catalog with the imported `RULES`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from reconciliation.rules import RULE_IDS
from reconciliation.vocabulary import ISSUE_IN_BOOKMARKED, ISSUE_IN_SOURCE

#: who acts on a finding of each status (every remediation starts with the same words)
ACTORS = {ISSUE_IN_SOURCE: "District data admin", ISSUE_IN_BOOKMARKED: "Bookmarked support"}
_STATUS_NAMES = {"ISSUE_IN_SOURCE": ISSUE_IN_SOURCE, "ISSUE_IN_BOOKMARKED": ISSUE_IN_BOOKMARKED}


@dataclass(frozen=True)
class RuleCard:
    id: str
    title: str
    description: str
    statuses: tuple[str, ...]
    #: the rule's own `owner` (who acts, and how), when its module states one
    stated_owner: str | None = None

    @property
    def owner(self) -> str:
        """Who acts on its findings, by status: the rule's `owner`, else
        'District data admin (ISSUE_IN_SOURCE)'."""
        return self.stated_owner or ", ".join(f"{ACTORS[s]} ({s})" for s in self.statuses)

    def check_description(self) -> str:
        return f"{self.title}: {self.description}\n\nWho acts: {self.owner}."


def _value(node: ast.expr) -> object:
    """A literal, or a status constant by name (`ISSUE_IN_SOURCE`)."""
    if isinstance(node, ast.Name):
        return _STATUS_NAMES.get(node.id, node.id)
    if isinstance(node, ast.Tuple | ast.List):
        return tuple(_value(element) for element in node.elts)
    return ast.literal_eval(node)


def _read_card(rule_id: str) -> RuleCard:
    source = (Path(__file__).with_name(f"{rule_id}.py")).read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "RULE" for t in node.targets)
            and isinstance(node.value, ast.Call)
        ):
            fields = {kw.arg: kw.value for kw in node.value.keywords if kw.arg}
            return RuleCard(
                id=rule_id,
                title=str(_value(fields["title"])),
                description=str(_value(fields["description"])),
                statuses=tuple(str(s) for s in _value(fields["statuses"])),  # type: ignore[union-attr]
                stated_owner=str(_value(fields["owner"])) if "owner" in fields else None,
            )
    raise LookupError(f"reconciliation/rules/{rule_id}.py has no `RULE = Rule(...)`")


@cache
def rule_cards() -> dict[str, RuleCard]:
    """Every registered rule's card, in registry order."""
    return {rule_id: _read_card(rule_id) for rule_id in RULE_IDS}
