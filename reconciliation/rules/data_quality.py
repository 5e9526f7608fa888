"""Data-quality checks on the SOURCE roster, with Great Expectations 1.x.

These look at the SIS export on its own (no comparison with Bookmarked): required
fields present, sourcedIds unique, emails well formed, roles and grades from the
OneRoster / CEDS vocabularies. Each check becomes one asset check at the Dagster edge,
so `check_source_quality` returns plain results, not GX objects.

Results carry counts and a few record ids (sourcedIds, or `row N` when the id itself
is missing), never names or emails: they may be shown in the Dagster UI and logs.

Great Expectations takes seconds to import, so it is imported inside the function, with
an ephemeral context (nothing written to disk) and its progress bars off.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from reconciliation.vocabulary import CEDS_GRADES

if TYPE_CHECKING:  # the check list is read when the Dagster definitions load: keep it light
    import polars as pl

    from reconciliation.roster import Roster

#: OneRoster 1.1 roles, 1.2 additions, and 1.2 extensions (`ext:...`); case-insensitive
#: because exporters write `Student` and the sync lowercases anyway
ROLE_PATTERN = (
    r"(?i)^(?:administrator|aide|guardian|parent|proctor|relative|student|teacher|counselor"
    r"|districtAdministrator|principal|siteAdministrator|systemAdministrator|ext:\S+)$"
)
EMAIL_PATTERN = r"^[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+$"
#: how many offending record ids a result carries
SAMPLE_SIZE = 5

Kind = Literal["not_null", "unique", "matches", "in_set"]


@dataclass(frozen=True)
class QualityCheck:
    """One expectation on one column of one source table."""

    name: str
    table: str
    column: str
    kind: Kind
    description: str
    value: Any = None  # the regex for `matches`, the allowed values for `in_set`


@dataclass(frozen=True)
class QualityResult:
    """The outcome of one check, in plain values (no names or emails)."""

    name: str
    table: str
    column: str
    description: str
    passed: bool
    checked: int
    unexpected_count: int
    unexpected_ids: tuple[str, ...]


_SINGULAR = {"schools": "school", "users": "user", "classes": "class", "enrollments": "enrollment"}


def _required(table: str, column: str, field: str) -> QualityCheck:
    return QualityCheck(
        f"{table}_{column}_present",
        table,
        column,
        "not_null",
        f"every {_SINGULAR[table]} has its required `{field}`",
    )


def _unique(table: str) -> QualityCheck:
    return QualityCheck(
        f"{table}_sis_id_unique", table, "sis_id", "unique", f"{table} sourcedIds are unique"
    )


CHECKS: tuple[QualityCheck, ...] = (
    _required("schools", "sis_id", "sourcedId"),
    _unique("schools"),
    _required("schools", "name", "name"),
    _required("users", "sis_id", "sourcedId"),
    _unique("users"),
    _required("users", "role_raw", "role"),
    _required("users", "username", "username"),
    _required("users", "first_name", "givenName"),
    _required("users", "last_name", "familyName"),
    QualityCheck(
        "users_email_format",
        "users",
        "email_normalized",
        "matches",
        "emails, where given, have a local part, a domain and a top-level domain",
        EMAIL_PATTERN,
    ),
    QualityCheck(
        "users_role_vocabulary",
        "users",
        "role_raw",
        "matches",
        "roles are OneRoster role tokens (or ext: extensions)",
        ROLE_PATTERN,
    ),
    QualityCheck(
        "users_grade_vocabulary",
        "users",
        "grade",
        "in_set",
        "grades, where given, normalize to a CEDS grade code",
        tuple(sorted(CEDS_GRADES)),
    ),
    _required("classes", "sis_id", "sourcedId"),
    _unique("classes"),
    _required("classes", "name", "title"),
    _required("classes", "school_sis_id", "schoolSourcedId"),
    _required("classes", "term_sis_id", "termSourcedIds"),
    _required("enrollments", "sis_id", "sourcedId"),
    _unique("enrollments"),
    _required("enrollments", "class_sis_id", "classSourcedId"),
    _required("enrollments", "user_sis_id", "userSourcedId"),
    _required("enrollments", "role", "role"),
    QualityCheck(
        "enrollments_role_vocabulary",
        "enrollments",
        "role",
        "matches",
        "enrollment roles are OneRoster role tokens",
        ROLE_PATTERN,
    ),
)


def _frame_for(roster: Roster, table: str, columns: Iterable[str]) -> pl.DataFrame:
    """The checked columns plus `record`: the sourcedId, or `row N` when it is missing."""
    import polars as pl

    from reconciliation.roster import normalized_email

    frame = roster.table(table)
    if table == "users":
        frame = frame.with_columns(pl.coalesce("email_normalized", normalized_email()))
    record = pl.coalesce(
        "sis_id", pl.format("row {}", pl.int_range(1, pl.len() + 1, dtype=pl.Int64))
    ).alias("record")
    return frame.select(record, *sorted(set(columns)))


def _expectation(check: QualityCheck) -> Any:
    import great_expectations.expectations as gxe

    meta = {"check": check.name}
    if check.kind == "not_null":
        return gxe.ExpectColumnValuesToNotBeNull(column=check.column, meta=meta)
    if check.kind == "unique":
        return gxe.ExpectColumnValuesToBeUnique(column=check.column, meta=meta)
    if check.kind == "matches":
        return gxe.ExpectColumnValuesToMatchRegex(column=check.column, regex=check.value, meta=meta)
    return gxe.ExpectColumnValuesToBeInSet(
        column=check.column, value_set=list(check.value), meta=meta
    )


def check_source_quality(
    roster: Roster, checks: Iterable[QualityCheck] = CHECKS
) -> list[QualityResult]:
    """Run the checks on a source roster; one result per check, in the order given."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    checks = list(checks)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    datasource = context.data_sources.add_pandas("source_roster")
    outcomes: dict[str, Any] = {}
    for table in dict.fromkeys(check.table for check in checks):
        table_checks = [check for check in checks if check.table == table]
        frame = _frame_for(roster, table, (check.column for check in table_checks))
        batch = (
            datasource.add_dataframe_asset(table)
            .add_batch_definition_whole_dataframe(table)
            .get_batch(batch_parameters={"dataframe": frame.to_pandas()})
        )
        suite = gx.ExpectationSuite(
            name=f"source_{table}", expectations=[_expectation(c) for c in table_checks]
        )
        validation = batch.validate(
            suite,
            result_format={
                "result_format": "SUMMARY",
                "unexpected_index_column_names": ["record"],
                "partial_unexpected_count": SAMPLE_SIZE,
            },
        )
        for outcome in validation.results:
            outcomes[outcome.expectation_config.meta["check"]] = outcome

    results = []
    for check in checks:
        outcome = outcomes[check.name]
        found = outcome.result
        sample = found.get("partial_unexpected_index_list") or []
        # only the record id leaves this function: the unexpected values may be emails
        ids = tuple(dict.fromkeys(str(item["record"]) for item in sample))[:SAMPLE_SIZE]
        results.append(
            QualityResult(
                name=check.name,
                table=check.table,
                column=check.column,
                description=check.description,
                passed=bool(outcome.success),
                checked=int(found.get("element_count", 0)),
                unexpected_count=int(found.get("unexpected_count", 0)),
                unexpected_ids=ids,
            )
        )
    return results
