"""Verdicts: one per rule and person diagnosed, with the evidence side by side.

Pure: built from the slice (`scope.Slice`) and the findings about each person
(`evaluate.findings_on_slice`). A verdict's status is `ISSUE_IN_SOURCE` or
`ISSUE_IN_BOOKMARKED` when the rule has findings about the person (the status of the most
severe one; every finding is listed in `evidence["findings"]`), else `NO_ISSUE`. The
evidence puts each fact the rule looks at as the SIS has it next to Bookmarked's value.

`as_json` is the shape the CLI prints and the run writes; `as_markdown` the run page.
Names and emails appear here (the run page and the JSON file are reports); log lines
never get any of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from reconciliation.diagnosis.scope import SIDES, Slice
from reconciliation.vocabulary import ISSUE_IN_BOOKMARKED, ISSUE_IN_SOURCE

NO_ISSUE = "NO_ISSUE"
VERDICT_STATUSES = (ISSUE_IN_SOURCE, ISSUE_IN_BOOKMARKED, NO_ISSUE)
_SEVERITY = {"critical": 0, "high": 1, "medium": 2, "low": 3}

#: the facts each rule looks at, shown side by side in its verdict's evidence
RULE_EVIDENCE: dict[str, tuple[str, ...]] = {
    "student_mismatch": ("role", "linked"),
    "missing_data": ("present", "active", "school", "classes"),
    "parent_email_conflict": ("email", "linked"),
    "campus_transfer": ("school", "class_schools"),
    "stale_record": ("present", "active", "classes"),
    "field_mismatch": (
        "role",
        "first_name",
        "last_name",
        "email",
        "student_number",
        "grade",
        "school",
    ),
    "duplicate_identity": ("present", "active", "student_number", "email"),
    "source_integrity": ("present", "role", "school", "classes"),
}
_USER_COLUMNS = {
    "role": "role",
    "first_name": "first_name",
    "last_name": "last_name",
    "email": "email",
    "student_number": "student_number",
    "grade": "grade",
    "school": "school_sis_id",
}


@dataclass(frozen=True)
class Verdict:
    rule: str
    status: str
    sis_id: str
    detail: str
    remediation: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "status": self.status,
            "sis_id": self.sis_id,
            "detail": self.detail,
            "remediation": self.remediation,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class Diagnosis:
    """The answer to one query. `notes` say where it looked and how (the run page and the
    CLI's table show them; the JSON keeps exactly its documented keys)."""

    customer_id: str
    query: dict[str, str]
    people: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    last_sync: dict[str, Any] | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: the sync's outcome in words (failed or not, the last successful one)
    sync_note: str = ""

    @property
    def outcome(self) -> str:
        """verdicts | ambiguous | not_found (no student data: fit for a log line or tag)."""
        if self.candidates:
            return "ambiguous"
        return "verdicts" if self.people else "not_found"

    @property
    def file_stem(self) -> str:
        """The JSON file's name before `-<run>`: the diagnosed person's sourcedId (the
        first asked for), or what the query ended with."""
        if self.people and self.people[0].get("sis_id"):
            return _safe_name(str(self.people[0]["sis_id"]))
        return self.outcome.replace("_", "-")

    def as_json(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "query": dict(self.query),
            "people": [
                {k: p.get(k) for k in ("sis_id", "bookmarked_id", "role", "name")}
                for p in self.people
            ],
            "verdicts": [v.as_dict() for v in self.verdicts],
            "last_sync": self.last_sync,
            "candidates": list(self.candidates),
        }

    def counts(self) -> dict[str, int]:
        """Verdicts per status and people: counts only, for log lines and the CLI."""
        out = {status: 0 for status in VERDICT_STATUSES}
        for verdict in self.verdicts:
            out[verdict.status] += 1
        return {"people": len(self.people), "candidates": len(self.candidates), **out}


def _safe_name(text: str) -> str:
    """A sourcedId as part of a file name: path separators and odd characters replaced."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", text).strip(".")
    return cleaned[:120] or "person"


# -- from the slice -----------------------------------------------------------------------


def _user_row(roster_users: pl.DataFrame, sis_id: str) -> dict[str, Any] | None:
    rows = roster_users.filter(pl.col("sis_id") == sis_id)
    if rows.is_empty():
        return None
    live = rows.filter(pl.col("active").fill_null(True) & ~pl.col("deleted").fill_null(False))
    pick = live if live.height else rows
    return pick.sort("bookmarked_id", descending=True, nulls_last=True).row(0, named=True)


def _linked(piece: Slice, side: str, sis_id: str, row: Mapping[str, Any] | None) -> list[str]:
    """The people linked to one person on one side (children of a parent, parents of a
    student), as sis_ids (an account without one as `#<bookmarked id>`)."""
    roster = piece.roster(side)  # type: ignore[arg-type]
    links = roster.links
    account = row["bookmarked_id"] if row and side == "bookmarked" else None
    ids = dict(
        roster.users.select("bookmarked_id", "sis_id").drop_nulls("bookmarked_id").iter_rows()
    )
    out: set[str] = set()
    for link in links.iter_rows(named=True):
        as_parent = link["parent_sis_id"] == sis_id or (
            account is not None and link["parent_bookmarked_id"] == account
        )
        as_student = link["student_sis_id"] == sis_id or (
            account is not None and link["student_bookmarked_id"] == account
        )
        for hit, other_sis, other_id in (
            (as_parent, link["student_sis_id"], link["student_bookmarked_id"]),
            (as_student, link["parent_sis_id"], link["parent_bookmarked_id"]),
        ):
            if hit:
                other = other_sis or ids.get(other_id)
                out.add(other if other else f"#{other_id}")
    return sorted(out)


def _classes(piece: Slice, side: str, sis_id: str) -> list[dict[str, Any]]:
    roster = piece.roster(side)  # type: ignore[arg-type]
    live = roster.enrollments.filter(
        (pl.col("user_sis_id") == sis_id) & pl.col("active").fill_null(True)
    )
    joined = live.join(
        roster.classes.select(pl.col("sis_id").alias("class_sis_id"), "school_sis_id"),
        on="class_sis_id",
        how="left",
    )
    return sorted(joined.select("class_sis_id", "school_sis_id").unique().iter_rows())


def person_evidence(piece: Slice, sis_id: str) -> dict[str, dict[str, Any]]:
    """Every fact a verdict may show about one person: {fact: {"sis": ..., "bookmarked": ...}}."""
    rows = {side: _user_row(piece.roster(side).users, sis_id) for side in SIDES}  # type: ignore[arg-type]
    facts: dict[str, dict[str, Any]] = {}

    def pair(fact: str, value: Any) -> None:
        facts[fact] = {"sis": value("source"), "bookmarked": value("bookmarked")}

    pair("present", lambda side: rows[side] is not None)
    pair(
        "active",
        lambda side: (
            None
            if rows[side] is None
            else bool(rows[side]["active"] is not False and not rows[side]["deleted"])
        ),
    )
    for fact, column in _USER_COLUMNS.items():
        pair(fact, lambda side, column=column: rows[side][column] if rows[side] else None)
    pair("linked", lambda side: _linked(piece, side, sis_id, rows[side]))
    classes = {side: _classes(piece, side, sis_id) for side in SIDES}
    pair("classes", lambda side: [c for c, _ in classes[side]])
    pair("class_schools", lambda side: sorted({s for _, s in classes[side] if s}))
    facts["bookmarked_id"] = {
        "sis": None,
        "bookmarked": rows["bookmarked"]["bookmarked_id"] if rows["bookmarked"] else None,
    }
    return facts


def people_of(piece: Slice, sis_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The `people` entries: sis_id, Bookmarked account id, role and name (SIS first)."""
    out = []
    for sis_id in sis_ids:
        src = _user_row(piece.source.users, sis_id)
        bm = _user_row(piece.bookmarked.users, sis_id)
        row = src or bm or {}
        name = " ".join(
            p.strip() for p in (row.get("first_name"), row.get("last_name")) if p and p.strip()
        )
        out.append(
            {
                "sis_id": sis_id,
                "bookmarked_id": bm["bookmarked_id"] if bm else None,
                "role": row.get("role") or "other",
                "name": name,
                "in_sis": src is not None,
                "in_bookmarked": bm is not None,
            }
        )
    return out


def _one_line(values: Sequence[str]) -> str:
    return " | ".join(dict.fromkeys(v for v in values if v))


def verdicts_for(
    piece: Slice,
    findings: Mapping[str, pl.DataFrame],
    rule_ids: Sequence[str],
    people: Sequence[dict[str, Any]],
    disabled: frozenset[str] = frozenset(),
) -> list[Verdict]:
    """One verdict per rule (in registry order) and person (in `people` order)."""
    out = []
    facts = {p["sis_id"]: person_evidence(piece, p["sis_id"]) for p in people}
    for person in people:
        sis_id = person["sis_id"]
        who = f"{person['name']} ({sis_id})" if person["name"] else sis_id
        for rule_id in rule_ids:
            evidence = {k: facts[sis_id][k] for k in RULE_EVIDENCE.get(rule_id, ())}
            if rule_id in disabled:
                out.append(
                    Verdict(
                        rule_id,
                        NO_ISSUE,
                        sis_id,
                        f"{rule_id} is disabled for this customer ($.rules.disabled).",
                        "",
                        evidence,
                    )
                )
                continue
            rows = findings.get(rule_id)
            mine = rows.filter(pl.col("person") == sis_id) if rows is not None else None
            if mine is None or mine.is_empty():
                out.append(
                    Verdict(
                        rule_id, NO_ISSUE, sis_id, f"No {rule_id} finding for {who}.", "", evidence
                    )
                )
                continue
            ordered = sorted(
                mine.iter_rows(named=True),
                key=lambda r: (_SEVERITY.get(r["severity"], 9), r["status"], r["sis_id"] or ""),
            )
            evidence["findings"] = [
                {
                    "entity_type": r["entity_type"],
                    "sis_id": r["sis_id"],
                    "bookmarked_id": r["bookmarked_id"],
                    "status": r["status"],
                    "severity": r["severity"],
                    "detail": r["detail"],
                }
                for r in ordered
            ]
            out.append(
                Verdict(
                    rule_id,
                    ordered[0]["status"],
                    sis_id,
                    _one_line([r["detail"] for r in ordered]),
                    _one_line([r["remediation"] for r in ordered]),
                    evidence,
                )
            )
    return out


def last_sync_of(meta: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The last Bookmarked sync run (`sync_runs`) as the JSON shows it, and in words
    (whether it failed, and the last successful one when it did)."""
    last = meta.get("last_sync")
    if not last:
        if "last_sync" in meta:
            return None, "no sync run recorded in Bookmarked (sync_runs)"
        return None, "not read: this Bookmarked connector's lookup gives no sync runs"
    shown = {"started_at": last.get("started_at"), "status": last.get("status")}
    text = f"{last.get('started_at')}: {last.get('status')}"
    if last.get("status") != "succeeded":
        success = meta.get("last_successful_sync")
        failed = "this sync FAILED" if last.get("status") == "failed" else "not succeeded"
        text += f" ({failed}; " + (
            f"last successful sync: {success.get('started_at')})"
            if success
            else "no successful sync recorded)"
        )
    return shown, text


# -- Markdown for the run page ----------------------------------------------------------------

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~#])")
_CONTROL = re.compile(r"[\x00-\x1F\x7F-\x9F]+")


def md(value: object) -> str:
    """A value shown literally in Markdown (one line; no HTML, emphasis or cell break)."""
    text = _CONTROL.sub(" ", "" if value is None else str(value))
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _md_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return md(", ".join(str(v) for v in value)) if value else "(none)"
    return md(value)


def _matrix(diagnosis: Diagnosis) -> str:
    """One row per rule, one column per person: the verdicts at a glance (issues bold)."""
    people = [p["sis_id"] for p in diagnosis.people]
    header = [f"{md(p['name'] or p['sis_id'])} ({md(p['role'])})" for p in diagnosis.people]
    cells: dict[str, dict[str, str]] = {}
    for v in diagnosis.verdicts:
        shown = v.status if v.status == NO_ISSUE else f"**{v.status}**"
        cells.setdefault(v.rule, {})[v.sis_id] = shown
    lines = ["| rule | " + " | ".join(header) + " |", "|---|" + "---|" * len(people)]
    for rule, row in cells.items():
        lines.append(f"| {md(rule)} | " + " | ".join(row.get(p, "") for p in people) + " |")
    return "\n".join(lines)


def as_markdown(diagnosis: Diagnosis) -> str:
    """The run page: the query, the people, one row per verdict, the evidence of every
    issue side by side, the last sync, and where the diagnosis looked."""
    query = ", ".join(f"{k}: {md(v)}" for k, v in diagnosis.query.items())
    lines = [f"### Diagnosis of {md(diagnosis.customer_id)} — {query}", ""]
    if diagnosis.candidates:
        lines += [
            f"**{len(diagnosis.candidates)} people match: run again with one sourcedId.**",
            "",
            "| sourcedId | Bookmarked id | role | name | schools | grade | found in |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in diagnosis.candidates:
            lines.append(
                "| "
                + " | ".join(
                    _md_value(c.get(k))
                    for k in ("sis_id", "bookmarked_id", "role", "name", "school_sis_ids", "grade")
                )
                + f" | {_md_value(c.get('sides'))} |"
            )
    elif not diagnosis.people:
        lines.append("**Nobody matches this query.**")
    else:
        lines += ["| person | role | sourcedId | Bookmarked id | in SIS | in Bookmarked |"]
        lines += ["|---|---|---|---|---|---|"]
        for p in diagnosis.people:
            lines.append(
                f"| {md(p['name'])} | {md(p['role'])} | {md(p['sis_id'])} | "
                f"{_md_value(p.get('bookmarked_id'))} | {'yes' if p.get('in_sis') else 'no'} | "
                f"{'yes' if p.get('in_bookmarked') else 'no'} |"
            )
        lines += ["", _matrix(diagnosis)]
        issues = [v for v in diagnosis.verdicts if v.status != NO_ISSUE]
        names = {p["sis_id"]: p["name"] for p in diagnosis.people}
        for v in issues:
            who = f"{md(names.get(v.sis_id) or '')} ({md(v.sis_id)})"
            lines += ["", f"**{md(v.rule)}: {who}: {v.status}**", "", md(v.detail), ""]
            lines += [f"*Remediation:* {md(v.remediation)}", ""]
            lines += ["| fact | SIS | Bookmarked |", "|---|---|---|"]
            for fact, values in v.evidence.items():
                if fact == "findings":
                    continue
                lines.append(
                    f"| {md(fact)} | {_md_value(values.get('sis'))} | "
                    f"{_md_value(values.get('bookmarked'))} |"
                )
        if not issues:
            lines += ["", "No rule finds anything about these people."]
    lines += ["", f"**Last Bookmarked sync:** {md(diagnosis.sync_note)}"]
    if diagnosis.notes:
        lines += ["", "**Where it looked:**", ""]
        lines += [f"- {md(note)}" for note in diagnosis.notes]
    return "\n".join(lines)
