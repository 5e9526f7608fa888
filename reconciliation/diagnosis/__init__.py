"""Diagnose one student or one parent: the scan's rules, scoped to a few people.

- `scope.py`: what to read from each side (the person, their family, the rows the
  identity checks need) through the connectors' narrow lookups, and the slice's scope:
  which keys were looked up on each side, so a record outside the slice is never taken
  for one absent from a system;
- `evaluate.py`: the rules of the registry run on the slice (the same code as the scan)
  and their findings attributed to the people diagnosed;
- `verdicts.py`: one verdict per rule and person (ISSUE_IN_SOURCE, ISSUE_IN_BOOKMARKED or
  NO_ISSUE) with the evidence side by side; the JSON and the Markdown of the run page;
- `run.py`: the query answered end to end (no Dagster): candidates, no match, verdicts.

Pure Python and polars; the Dagster job is `reconciliation/defs/diagnose.py`.
"""
