"""The SIS model as OneRoster CSV tables (1.1 or 1.2 layout), one frame per file.

Columns are the spec's, in spec order. Text columns hold exactly what the file holds
(lists comma-joined, booleans in the exporter's spelling). To keep a million-student world
small in memory, date columns stay `pl.Date`, `dateLastModified` stays `pl.Datetime`
(`write.py` formats both), and small vocabularies (enrollment role and status, booleans)
are `pl.Enum`; `frame.cast(pl.String)` gives all-text columns.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from reconciliation.demo.base import SisModel
from reconciliation.demo.profiles import DistrictProfile

#: `file.<name>` rows of the manifest, in the spec's order; absent unless written
MANIFEST_FILES_11 = (
    "academicSessions",
    "categories",
    "classes",
    "classResources",
    "courses",
    "courseResources",
    "demographics",
    "enrollments",
    "lineItems",
    "orgs",
    "resources",
    "results",
    "users",
)
MANIFEST_FILES_12 = (
    "academicSessions",
    "categories",
    "classes",
    "classResources",
    "courses",
    "courseResources",
    "demographics",
    "enrollments",
    "lineItemLearningObjectiveIds",
    "lineItems",
    "lineItemScoreScales",
    "orgs",
    "resources",
    "resultLearningObjectiveIds",
    "results",
    "resultScoreScales",
    "roles",
    "scoreScales",
    "userProfiles",
    "userResources",
    "users",
)
USERS_11 = (
    "sourcedId",
    "status",
    "dateLastModified",
    "enabledUser",
    "orgSourcedIds",
    "role",
    "username",
    "userIds",
    "givenName",
    "familyName",
    "middleName",
    "identifier",
    "email",
    "sms",
    "phone",
    "agentSourcedIds",
    "grades",
    "password",
)
USERS_12 = (
    "sourcedId",
    "status",
    "dateLastModified",
    "enabledUser",
    "username",
    "userIds",
    "givenName",
    "familyName",
    "middleName",
    "identifier",
    "email",
    "sms",
    "phone",
    "agentSourcedIds",
    "grades",
    "password",
    "userMasterIdentifier",
    "resourceSourcedIds",
    "preferredGivenName",
    "preferredMiddleName",
    "preferredFamilyName",
    "primaryOrgSourcedId",
    "pronouns",
)
DEMOGRAPHICS_11 = (
    "sourcedId",
    "status",
    "dateLastModified",
    "birthDate",
    "sex",
    "americanIndianOrAlaskaNative",
    "asian",
    "blackOrAfricanAmerican",
    "nativeHawaiianOrOtherPacificIslander",
    "white",
    "demographicRaceTwoOrMoreRaces",
    "hispanicOrLatinoEthnicity",
    "countryOfBirthCode",
    "stateOfBirthAbbreviation",
    "cityOfBirth",
    "publicSchoolResidenceStatus",
)


def _status(profile: DistrictProfile) -> tuple[pl.Expr, pl.Expr]:
    """`status` and `dateLastModified`: on every row, or (bulk style) only where deleted."""
    written = pl.col("status")
    if profile.fill_status:
        return written.alias("status"), pl.col("modified").alias("dateLastModified")
    deleted = pl.col("status") != "active"
    return (
        pl.when(deleted).then(written).alias("status"),
        pl.when(deleted).then(pl.col("modified")).alias("dateLastModified"),
    )


def _boolean(expr: pl.Expr, profile: DistrictProfile) -> pl.Expr:
    """A boolean as the exporter spells it (an enum: a byte a row, written as text)."""
    true, false = ("TRUE", "FALSE") if profile.upper_booleans else ("true", "false")
    spelling = pl.Enum([true, false])
    return (
        pl.when(expr.is_null())
        .then(None)
        .when(expr)
        .then(pl.lit(true, dtype=spelling))
        .otherwise(pl.lit(false, dtype=spelling))
    )


def _agent_lists(agents: pl.DataFrame, n_users: int) -> pl.Series:
    """Each user's `agentSourcedIds`, in listing order, aligned with the users' rows.

    Built column-wise: the k-th agent of every user is scattered into the k-th column,
    then the columns are joined. (A group-by with string joins needs about three times
    the memory, for millions of edges.)
    """
    rows = agents.get_column("user_row").to_numpy()
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    position = np.arange(len(rows)) - np.searchsorted(sorted_rows, sorted_rows, side="left")
    ids = agents.get_column("agent_sis_id").gather(order)
    columns = []
    for k in range(int(position.max()) + 1 if len(rows) else 0):
        at = position == k
        columns.append(
            pl.Series([None] * n_users, dtype=pl.String).scatter(sorted_rows[at], ids.filter(at))
        )
    if not columns:
        return pl.Series("agentSourcedIds", [None] * n_users, dtype=pl.String)
    joined = pl.select(pl.concat_str(columns, separator=",", ignore_nulls=True)).to_series()
    # concat_str gives "" where every part is null: that user lists no agent
    return joined.replace("", None).alias("agentSourcedIds")


def render(sis: SisModel, profile: DistrictProfile) -> dict[str, pl.DataFrame]:
    """OneRoster tables keyed by file name without `.csv` (`manifest` first)."""
    status, modified = _status(profile)
    null = pl.lit(None, pl.String)
    tables: dict[str, pl.DataFrame] = {}

    tables["orgs"] = sis.orgs.filter(pl.col("exported")).select(
        sourcedId="sis_id",
        status=status,
        dateLastModified=modified,
        name="name",
        type="type",
        identifier="identifier",
        parentSourcedId="parent_sis_id",
    )
    tables["academicSessions"] = sis.sessions.select(
        sourcedId="sis_id",
        status=pl.lit("active") if profile.fill_status else null,
        dateLastModified=pl.lit(None, pl.Datetime("us")),
        title="title",
        type="type",
        startDate="start",
        endDate="end",
        parentSourcedId="parent_sis_id",
        schoolYear="school_year",
    )
    tables["courses"] = sis.courses.select(
        sourcedId="sis_id",
        status=pl.lit("active") if profile.fill_status else null,
        dateLastModified=pl.lit(None, pl.Datetime("us")),
        schoolYearSourcedId="school_year_sis_id",
        title="title",
        courseCode="course_code",
        grades="grades",
        orgSourcedId="org_sis_id",
        subjects="subject",
        subjectCodes=null,
    )
    tables["classes"] = sis.classes.filter(pl.col("exported")).select(
        sourcedId="sis_id",
        status=status,
        dateLastModified=modified,
        title="title",
        grades="grades",
        courseSourcedId="course_sis_id",
        classCode="class_code",
        classType="class_type",
        location="location",
        schoolSourcedId="school_sis_id",
        termSourcedIds=pl.col("term_sis_ids").list.join(","),
        subjects="subject",
        subjectCodes=null,
        periods="period",
    )

    users = sis.users.with_columns(_agent_lists(sis.agents, sis.users.height))
    if sis.dropped_users is None:
        users = users.filter(pl.col("exported"))
    common = {
        "sourcedId": pl.col("sis_id"),
        "status": status,
        "dateLastModified": modified,
        "enabledUser": _boolean(pl.col("enabled"), profile),
        "username": pl.col("username"),
        "userIds": pl.when(pl.col("identifier").is_not_null()).then(
            pl.concat_str(pl.lit("{SIS:"), "identifier", pl.lit("}"))
        ),
        "givenName": pl.col("given"),
        "familyName": pl.col("family_name"),
        "middleName": pl.col("middle"),
        "identifier": pl.col("identifier"),
        "email": pl.col("email"),
        "sms": null,
        "phone": pl.col("phone"),
        "agentSourcedIds": pl.col("agentSourcedIds"),
        "grades": pl.col("grade_raw"),
        "password": null,
    }
    if profile.oneroster_version == "1.1":
        extra = {"orgSourcedIds": pl.col("org_ids"), "role": pl.col("role_raw")}
        tables["users"] = users.select(**{c: {**common, **extra}[c].alias(c) for c in USERS_11})
    else:
        extra = {
            "userMasterIdentifier": null,
            "resourceSourcedIds": null,
            "preferredGivenName": null,
            "preferredMiddleName": null,
            "preferredFamilyName": null,
            "primaryOrgSourcedId": pl.col("org_ids").str.split(",").list.first(),
            "pronouns": null,
        }
        tables["users"] = users.select(**{c: {**common, **extra}[c].alias(c) for c in USERS_12})
        tables["roles"] = (
            users.select("sis_id", "role_raw", "org_ids", "status", "modified")
            .with_columns(pl.col("org_ids").str.split(","))
            .with_columns(position=pl.int_ranges(pl.col("org_ids").list.len()))
            .explode("org_ids", "position")
            .select(
                sourcedId=pl.concat_str(
                    "sis_id", pl.lit("-role-"), (pl.col("position") + 1).cast(pl.String)
                ),
                status=status,
                dateLastModified=modified,
                userSourcedId="sis_id",
                roleType=pl.when(pl.col("position") == 0)
                .then(pl.lit("primary"))
                .otherwise(pl.lit("secondary")),
                role="role_raw",
                beginDate=pl.lit(None, pl.Date),
                endDate=pl.lit(None, pl.Date),
                orgSourcedId="org_ids",
                userProfileSourcedId=null,
            )
        )

    enrollments = sis.enrollments
    if sis.dropped_enrollments is None:
        enrollments = enrollments.filter(pl.col("exported"))
    tables["enrollments"] = enrollments.select(
        sourcedId="sis_id",
        status=status,
        dateLastModified=modified,
        classSourcedId="class_sis_id",
        schoolSourcedId="school_sis_id",
        userSourcedId="user_sis_id",
        role="role",
        primary=_boolean(pl.col("primary"), profile),
        beginDate="begin",
        endDate="end",
    )
    if profile.demographics and profile.oneroster_version == "1.1":
        tables["demographics"] = (
            users.filter(pl.col("role_raw") == "student")
            .select(
                sourcedId="sis_id",
                status=status,
                dateLastModified=modified,
                birthDate="birth_date",
                sex="sex",
            )
            .with_columns([null.alias(c) for c in DEMOGRAPHICS_11[5:]])
        )

    files = MANIFEST_FILES_11 if profile.oneroster_version == "1.1" else MANIFEST_FILES_12
    manifest = [
        ("manifest.version", "1.0"),
        ("oneroster.version", profile.oneroster_version),
        *[(f"file.{name}", "bulk" if name in tables else "absent") for name in files],
        ("source.systemName", "Demo SIS"),
        ("source.systemCode", profile.customer_id),
    ]
    tables = {
        "manifest": pl.DataFrame(manifest, schema=["propertyName", "value"], orient="row"),
        **tables,
    }
    return tables
