"""OneRoster records -> the canonical source roster: what Bookmarked's correct sync writes.

Shared by the OneRoster CSV and REST connectors, so both sides of a customer are judged
by one reading of the sync rules (`docs/bookmarked/sync-contract.md`):

- orgs of type `school` become schools (`state_id` = identifier); every org, of any type,
  is also kept in `orgs` (a class or user pointing at the district is not pointing nowhere);
- users keep their SIS role in `role_raw` and get the synced one in `role` (guardian and
  relative -> parent, administrator -> admin, aide/proctor/... -> `other`, not synced);
  their school is the first school of `orgSourcedIds` (1.0/1.1), or the primary org /
  the primary role's org from `roles.csv` (1.2); every org they list (all three sources)
  is kept in `org_sis_ids` (shared-time students belong to several schools);
  `tobedeleted` (and the 1.0 `inactive`) means deleted, `enabledUser=false` means an
  inactive account that is not deleted;
- parent-student links come from `agentSourcedIds` on EITHER side, one row per pair;
- classes take the course's `courseCode` (none when the course is not in the set) and the
  first term;
- enrollments of role student or teacher are synced (others become `other`); one whose
  `endDate` (exclusive) is on or before `as_of` is inactive.

Nothing is dropped for pointing nowhere: an agent that is not a user, a teacher listed as
an agent, an enrollment in a class that is not in the export all stay, because judging
them is the rules' job.

Inputs are OneRoster records keyed by CSV field names, in one of two forms:

- iterables of dicts (the REST connector): values are str or None; list fields
  (`LIST_FIELDS`) may be a list of str, a list of `{"sourcedId": ...}` references or one
  comma-separated string; a JSON boolean is read as "true"/"false";
- polars DataFrames of String columns (the CSV connector): the work is vectorized, so a
  million users cost no per-row Python.

A record with an invalid value (a date that is not a date, a status or boolean outside
the spec's tokens, a blank sourcedId) raises `RecordError` with the table, field and
position of the record, for the connector to turn into a located `SourceDataError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from typing import Any

import polars as pl

from reconciliation.roster import Roster, normalize_grade, normalized_email, sync_role

#: the OneRoster fields the mapping reads, per table (CSV names; 1.0 names are the
#: connectors' business: `agents` -> `agentSourcedIds`, `termSourcedId` -> `termSourcedIds`)
FIELDS: dict[str, tuple[str, ...]] = {
    "orgs": ("sourcedId", "status", "name", "type", "identifier"),
    "users": (
        "sourcedId",
        "status",
        "enabledUser",
        "orgSourcedIds",
        "role",
        "username",
        "givenName",
        "familyName",
        "identifier",
        "email",
        "agentSourcedIds",
        "grades",
        "primaryOrgSourcedId",
    ),
    "classes": (
        "sourcedId",
        "status",
        "title",
        "courseSourcedId",
        "classCode",
        "schoolSourcedId",
        "termSourcedIds",
    ),
    "courses": ("sourcedId", "status", "courseCode"),
    "enrollments": (
        "sourcedId",
        "status",
        "classSourcedId",
        "userSourcedId",
        "role",
        "beginDate",
        "endDate",
    ),
    "roles": ("sourcedId", "status", "userSourcedId", "roleType", "role", "orgSourcedId"),
}
#: fields that hold a list of values (comma-separated inside one CSV field)
LIST_FIELDS = frozenset({"orgSourcedIds", "agentSourcedIds", "grades", "termSourcedIds"})

#: boolean tokens exporters write (the spec says true/false); compared case-insensitively
TRUE_TOKENS = frozenset({"true", "t", "1", "yes", "y"})
FALSE_TOKENS = frozenset({"false", "f", "0", "no", "n"})
#: status tokens; `inactive` was removed in 1.1 and means `tobedeleted`
STATUS_TOKENS = {"active": "active", "tobedeleted": "tobedeleted", "inactive": "tobedeleted"}
ROLE_TYPE_TOKENS = {"primary": True, "secondary": False}
#: a date, optionally followed by a time (`2020-08-17T00:00:00Z`, or SQL's
#: `2020-08-17 00:00:00.000`): the date part counts
_DATE_SHAPE = r"^\d{4}-\d{2}-\d{2}([T ]\d.*)?$"
_DATE_RE = re.compile(_DATE_SHAPE)

#: column holding each record's position in the input, for error locations
ROW = "__row"


class RecordError(ValueError):
    """One invalid record: `row` is its 0-based position in the table's input.

    The message holds the offending token (a date, a status), never names or emails.
    """

    def __init__(self, table: str, field: str, row: int, record: str | None, message: str) -> None:
        self.table, self.field, self.row, self.record = table, field, row, record
        self.message = message
        super().__init__(f"{table}[{row}] ({field}): {message}")


# -- record-level helpers (also used by the REST connector) ---------------------------


def text(value: Any) -> str | None:
    """A field value as a string; blank -> None, JSON booleans -> 'true'/'false',
    a REST reference `{"sourcedId": ...}` -> its sourcedId."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return text(value.get("sourcedId"))
    value = value if isinstance(value, str) else str(value)
    return value if value.strip() else None


def split_list(value: Any) -> list[str]:
    """A list field as a list of non-blank, stripped values.

    Accepts a comma-separated string (`"a,b"`, `"a, b"`), a list of strings or a list of
    REST references (`[{"sourcedId": "a", ...}]`), or None.
    """
    if value is None:
        return []
    if isinstance(value, str):
        items: Iterable[Any] = value.split(",")
    elif isinstance(value, Mapping):
        items = [value]
    else:
        items = value
    out = []
    for item in items:
        cleaned = text(item)
        if cleaned is not None:
            out.append(cleaned.strip())
    return out


def parse_bool(value: Any) -> bool | None:
    """true/TRUE/1/yes -> True, false/0/no -> False, blank -> None; anything else raises."""
    if isinstance(value, bool):
        return value
    token = text(value)
    if token is None:
        return None
    token = token.strip().lower()
    if token in TRUE_TOKENS:
        return True
    if token in FALSE_TOKENS:
        return False
    raise ValueError(f"{token!r} is not a boolean (expected true or false)")


def parse_status(value: Any) -> str | None:
    """'active', 'tobedeleted' (also for the 1.0 'inactive') or None when blank."""
    token = text(value)
    if token is None:
        return None
    try:
        return STATUS_TOKENS[token.strip().lower()]
    except KeyError:
        raise ValueError(
            f"{token.strip()!r} is not a status (expected active or tobedeleted)"
        ) from None


def is_deleted(status: Any) -> bool:
    return parse_status(status) == "tobedeleted"


def parse_date(value: Any) -> date | None:
    """`YYYY-MM-DD` (a trailing time, after `T` or a space, is ignored) -> date; blank ->
    None; else raises."""
    token = text(value)
    if token is None:
        return None
    token = token.strip()
    if not _DATE_RE.match(token):
        raise ValueError(f"{token!r} is not a date (expected YYYY-MM-DD)")
    try:
        return date.fromisoformat(token[:10])
    except ValueError:
        raise ValueError(f"{token!r} is not a date (expected YYYY-MM-DD)") from None


def parse_role_type(value: Any) -> bool | None:
    """roles.csv `roleType`: primary -> True, secondary -> False, blank -> None."""
    token = text(value)
    if token is None:
        return None
    try:
        return ROLE_TYPE_TOKENS[token.strip().lower()]
    except KeyError:
        raise ValueError(
            f"{token.strip()!r} is not a roleType (expected primary or secondary)"
        ) from None


def enrollment_role(raw: Any) -> str:
    """Bookmarked syncs student and teacher enrollments; any other role is `other`."""
    token = (text(raw) or "").strip().lower()
    return token if token in ("student", "teacher") else "other"


# -- input tables ----------------------------------------------------------------------

Records = Iterable[Mapping[str, Any]] | pl.DataFrame


def _schema(table: str) -> dict[str, pl.DataType]:
    return {
        name: pl.List(pl.String()) if name in LIST_FIELDS else pl.String() for name in FIELDS[table]
    }


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.str.strip_chars() == "").then(None).otherwise(expr)


def _clean_list(expr: pl.Expr) -> pl.Expr:
    return expr.list.eval(pl.element().str.strip_chars()).list.eval(
        pl.element().filter(pl.element().is_not_null() & (pl.element() != ""))
    )


def prepare(table: str, records: Records | None) -> pl.DataFrame:
    """The fields of `table` the mapping reads, as String (list fields: List[String])
    columns with blanks as null, plus `ROW` (each record's input position)."""
    schema = _schema(table)
    if records is None:
        records = ()
    if isinstance(records, pl.DataFrame):
        exprs = []
        for name, dtype in schema.items():
            if name not in records.columns:
                exprs.append(pl.lit(None, dtype=dtype).alias(name))
            elif name in LIST_FIELDS and records.schema[name] == pl.List(pl.String()):
                exprs.append(_clean_list(pl.col(name)).alias(name))
            elif name in LIST_FIELDS:
                exprs.append(_clean_list(pl.col(name).cast(pl.String()).str.split(",")).alias(name))
            else:
                exprs.append(_blank_to_null(pl.col(name).cast(pl.String())).alias(name))
        frame = records.select(exprs)
    else:
        rows = [
            {
                name: split_list(value) if name in LIST_FIELDS else text(value)
                for name in schema
                for value in (record.get(name),)
            }
            for record in records
        ]
        frame = pl.DataFrame(rows, schema=schema)
    return frame.with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64()))


def _record_id(row: Mapping[str, Any]) -> str | None:
    return row.get("sourcedId") or row.get("userSourcedId")


def _raise_at(
    frame: pl.DataFrame, table: str, field: str, bad: pl.Series, message: Callable[[Any], str]
) -> None:
    """Raise RecordError for the first record where the boolean Series `bad` is true."""
    hits = bad.fill_null(False).arg_true()
    if hits.len():
        row = frame.row(int(hits[0]), named=True)
        raise RecordError(table, field, row[ROW], _record_id(row), message(row[field]))


def _require(frame: pl.DataFrame, table: str, field: str) -> None:
    _raise_at(frame, table, field, frame.get_column(field).is_null(), lambda _: f"{field} is blank")


def _parsed(
    frame: pl.DataFrame, table: str, field: str, parse: Callable[[str], Any], dtype: pl.DataType
) -> pl.Series:
    """A column parsed by one of the record-level helpers above, called once per
    distinct value (statuses, booleans and dates repeat a lot), so the CSV and REST
    paths share one definition of what is valid. The first invalid record raises."""
    column = frame.get_column(field)
    mapping: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for value in column.drop_nulls().unique().to_list():
        try:
            mapping[value] = parse(value)
        except ValueError as exc:
            errors[value] = str(exc)
    _raise_at(frame, table, field, column.is_in(list(errors)), lambda value: errors[value])
    return column.replace_strict(mapping, default=None, return_dtype=dtype)


def _deleted(frame: pl.DataFrame, table: str) -> pl.Series:
    """True for `tobedeleted` (or `inactive`) records, False otherwise."""
    status = _parsed(frame, table, "status", parse_status, pl.String())
    return (status == "tobedeleted").fill_null(False)


def _mapped(frame: pl.DataFrame, column: str, fn: Callable[[str], str | None]) -> pl.Expr:
    """Apply a Python normalizer once per distinct value (roles and grades repeat a lot)."""
    values = frame.get_column(column).drop_nulls().unique().to_list()
    return pl.col(column).replace_strict(
        {value: fn(value) for value in values}, default=None, return_dtype=pl.String()
    )


# -- the mapping -----------------------------------------------------------------------


def map_schools(orgs: pl.DataFrame) -> pl.DataFrame:
    """Orgs of type school (any case) -> canonical schools."""
    _require(orgs, "orgs", "sourcedId")
    deleted = _deleted(orgs, "orgs")
    return (
        orgs.with_columns((~deleted).alias("active"))
        .filter(pl.col("type").str.strip_chars().str.to_lowercase() == "school")
        .select(
            pl.col("sourcedId").alias("sis_id"),
            pl.col("name"),
            pl.col("identifier").alias("state_id"),
            pl.col("active"),
        )
    )


def map_orgs(orgs: pl.DataFrame) -> pl.DataFrame:
    """Every org (any type) -> canonical orgs: what a class or user pointing at a district
    or a department points at, so the rules can say so instead of "not in the export"."""
    _require(orgs, "orgs", "sourcedId")
    deleted = _deleted(orgs, "orgs")
    return orgs.with_columns((~deleted).alias("active")).select(
        pl.col("sourcedId").alias("sis_id"),
        pl.col("type").str.strip_chars().str.to_lowercase().alias("type"),
        pl.col("name"),
        pl.col("active"),
    )


def _role_orgs(roles: pl.DataFrame) -> pl.DataFrame:
    """1.2 `roles.csv`: every org a user has a (not deleted) role at, in file order.
    Columns: sourcedId, _role_orgs (list)."""
    deleted = _deleted(roles, "roles")
    return (
        roles.filter(~deleted & pl.col("orgSourcedId").is_not_null())
        .group_by("userSourcedId", maintain_order=True)
        .agg(pl.col("orgSourcedId").alias("_role_orgs"))
        .rename({"userSourcedId": "sourcedId"})
    )


def choose_roles(roles: pl.DataFrame) -> pl.DataFrame:
    """One role per user from 1.2 `roles.csv`: the primary one, else the first listed.
    Deleted role records do not count. Columns: userSourcedId, role, orgSourcedId."""
    _require(roles, "roles", "userSourcedId")
    deleted = _deleted(roles, "roles")
    primary = _parsed(roles, "roles", "roleType", parse_role_type, pl.Boolean())
    return (
        roles.with_columns(primary.fill_null(False).alias("_primary"))
        .filter(~deleted)
        .sort(["_primary", ROW], descending=[True, False])
        .unique("userSourcedId", keep="first", maintain_order=True)
        .select("userSourcedId", "role", "orgSourcedId")
    )


def map_users(users: pl.DataFrame, roles: pl.DataFrame, school_ids: pl.Series) -> pl.DataFrame:
    """Users -> canonical users, one row per input record in input order (see the module
    docstring for the rules)."""
    _require(users, "users", "sourcedId")
    deleted = _deleted(users, "users")
    enabled = _parsed(users, "users", "enabledUser", parse_bool, pl.Boolean())
    users = users.with_columns(deleted.alias("_deleted"), enabled.alias("_enabled"))

    chosen = choose_roles(roles).rename(
        {"userSourcedId": "sourcedId", "role": "_role_1p2", "orgSourcedId": "_org_1p2"}
    )
    # 1.1: the first org of orgSourcedIds that is a school
    first_school = (
        users.select(ROW, "orgSourcedIds")
        .explode("orgSourcedIds")
        .filter(pl.col("orgSourcedIds").is_in(school_ids.implode()))
        .group_by(ROW, maintain_order=True)
        .agg(pl.col("orgSourcedIds").first().alias("_first_school"))
    )
    # every org of the user: orgSourcedIds (1.1), then the primary org and the roles'
    # orgs (1.2), each once; list work only when the 1.2 fields are there at all
    no_orgs = pl.lit([], dtype=pl.List(pl.String()))
    org_lists = [pl.col("orgSourcedIds").fill_null(no_orgs)]
    if users["primaryOrgSourcedId"].null_count() < users.height:
        org_lists.append(pl.concat_list(pl.col("primaryOrgSourcedId")).list.drop_nulls())
    if roles.height:
        users = users.join(_role_orgs(roles), on="sourcedId", how="left", maintain_order="left")
        org_lists.append(pl.col("_role_orgs").fill_null(no_orgs))
    all_orgs = (
        pl.concat_list(org_lists).list.unique(maintain_order=True)
        if len(org_lists) > 1
        else org_lists[0]
    )
    users = (
        users.join(chosen, on="sourcedId", how="left", maintain_order="left")
        .join(first_school, on=ROW, how="left", maintain_order="left")
        .with_columns(
            pl.coalesce("role", "_role_1p2").alias("_role_raw"),
            pl.col("grades").list.first().alias("_grade_raw"),
        )
    )

    def school(column: str) -> pl.Expr:
        return pl.when(pl.col(column).is_in(school_ids.implode())).then(pl.col(column))

    email = pl.col("email")
    return users.select(
        pl.col("sourcedId").alias("sis_id"),
        _mapped(users, "_role_raw", sync_role).fill_null("other").alias("role"),
        pl.col("_role_raw").alias("role_raw"),
        pl.col("givenName").alias("first_name"),
        pl.col("familyName").alias("last_name"),
        email,
        normalized_email(email).alias("email_normalized"),
        pl.col("username"),
        pl.col("identifier").alias("student_number"),
        _mapped(users, "_grade_raw", normalize_grade).alias("grade"),
        pl.col("_grade_raw").alias("grade_raw"),
        pl.coalesce(school("primaryOrgSourcedId"), school("_org_1p2"), "_first_school").alias(
            "school_sis_id"
        ),
        all_orgs.alias("org_sis_ids"),
        (~pl.col("_deleted") & pl.col("_enabled").fill_null(True)).alias("active"),
        pl.col("_deleted").alias("deleted"),
    )


def map_links(users: pl.DataFrame) -> pl.DataFrame:
    """Parent-student pairs from `agentSourcedIds` on either side, de-duplicated.

    `users` are canonical-ish: sis_id, role (synced) and the raw agent lists. A parent's
    agents are its children; anyone else's agents are on the parent side. Odd pairs
    (a teacher as agent, a parent's parent) are kept for the rules to judge.
    """
    agents = (
        users.select("sis_id", "role", pl.col("agentSourcedIds").alias("agent"))
        .explode("agent")
        .filter(pl.col("agent").is_not_null() & pl.col("sis_id").is_not_null())
    )
    is_parent = pl.col("role") == "parent"
    return agents.select(
        pl.when(is_parent).then("sis_id").otherwise("agent").alias("parent_sis_id"),
        pl.when(is_parent).then("agent").otherwise("sis_id").alias("student_sis_id"),
    ).unique(maintain_order=True)


def map_classes(classes: pl.DataFrame, courses: pl.DataFrame) -> pl.DataFrame:
    _require(classes, "classes", "sourcedId")
    deleted = _deleted(classes, "classes")
    _deleted(courses, "courses")  # validates the column; a deleted course still names its code
    codes = (
        courses.filter(pl.col("sourcedId").is_not_null())
        .unique("sourcedId", keep="first", maintain_order=True)
        .select(pl.col("sourcedId").alias("courseSourcedId"), pl.col("courseCode").alias("_code"))
    )
    return (
        classes.with_columns(deleted.alias("_deleted"))
        .join(codes, on="courseSourcedId", how="left", maintain_order="left")
        .select(
            pl.col("sourcedId").alias("sis_id"),
            pl.col("schoolSourcedId").alias("school_sis_id"),
            pl.col("title").alias("name"),
            # the contract: the course's courseCode; a class whose course is not in the
            # export gets none (its own classCode is not what the sync writes)
            pl.col("_code").alias("course_code"),
            pl.col("termSourcedIds").list.first().alias("term_sis_id"),
            (~pl.col("_deleted")).alias("active"),
        )
    )


def map_enrollments(enrollments: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Active = not deleted and not ended: `endDate` is exclusive, so an enrollment
    ending on `as_of` is over."""
    _require(enrollments, "enrollments", "sourcedId")
    deleted = _deleted(enrollments, "enrollments")
    start = _parsed(enrollments, "enrollments", "beginDate", parse_date, pl.Date())
    end = _parsed(enrollments, "enrollments", "endDate", parse_date, pl.Date())
    active = ~deleted & (end.is_null() | (end > as_of)).fill_null(True)
    return enrollments.select(
        pl.col("sourcedId").alias("sis_id"),
        pl.col("classSourcedId").alias("class_sis_id"),
        pl.col("userSourcedId").alias("user_sis_id"),
        _mapped(enrollments, "role", enrollment_role).fill_null("other").alias("role"),
        active.alias("active"),
        start.alias("start_date"),
        end.alias("end_date"),
    )


def build_source_roster(
    customer_id: str,
    *,
    orgs: Records,
    users: Records,
    classes: Records,
    courses: Records = (),
    enrollments: Records,
    roles: Records = (),
    as_of: date | None = None,
    meta: dict[str, Any] | None = None,
) -> Roster:
    """The canonical source roster Bookmarked's correct sync would write from these
    OneRoster records (see the module docstring). Raises RecordError for an invalid record.
    """
    tables = {"orgs": orgs, "users": users, "roles": roles, "classes": classes}
    tables.update(courses=courses, enrollments=enrollments)
    return build_source_roster_from(customer_id, tables, as_of=as_of, meta=meta)


def build_source_roster_from(
    customer_id: str,
    tables: dict[str, Records],
    *,
    as_of: date | None = None,
    meta: dict[str, Any] | None = None,
) -> Roster:
    """`build_source_roster` on a dict of the records by table (a table left out has
    none), which it empties: each table is taken out once prepared, so a caller handing
    over its only reference frees a million users' raw columns before the enrollments
    are mapped (the CSV connector's whole read)."""
    as_of = as_of or date.today()
    org_frame = prepare("orgs", tables.pop("orgs", ()))
    schools = map_schools(org_frame)
    all_orgs = map_orgs(org_frame)
    user_frame = prepare("users", tables.pop("users", ()))
    role_frame = prepare("roles", tables.pop("roles", ()))
    canonical_users = map_users(user_frame, role_frame, schools["sis_id"])
    del role_frame
    # map_users keeps its input's rows and order, so the agent lists line up
    links = map_links(
        canonical_users.select("sis_id", "role").with_columns(user_frame["agentSourcedIds"])
    )
    del user_frame
    classes = map_classes(
        prepare("classes", tables.pop("classes", ())), prepare("courses", tables.pop("courses", ()))
    )
    enrollments = map_enrollments(prepare("enrollments", tables.pop("enrollments", ())), as_of)
    return Roster(
        customer_id=customer_id,
        side="source",
        schools=schools,
        users=canonical_users,
        links=links,
        classes=classes,
        enrollments=enrollments,
        orgs=all_orgs,
        meta={**(meta or {}), "as_of": as_of.isoformat()},
    )


__all__ = [
    "FALSE_TOKENS",
    "FIELDS",
    "LIST_FIELDS",
    "ROW",
    "STATUS_TOKENS",
    "TRUE_TOKENS",
    "RecordError",
    "build_source_roster",
    "build_source_roster_from",
    "enrollment_role",
    "is_deleted",
    "parse_bool",
    "parse_date",
    "parse_role_type",
    "parse_status",
    "prepare",
    "split_list",
    "text",
]
