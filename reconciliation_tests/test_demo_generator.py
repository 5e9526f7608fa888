"""The demo generator: files that read back, ground truth that matches the data exactly,
noise that is present and is not a finding, determinism, and the large-world path.

The files are read back with the csv module and sqlite3 only, and a small reference
reconciliation written here from the rules table (independent of the real rules) must
find exactly the ground truth: every injected case is real and "clean", and no noise
turns into a finding. A last test reads the demo through the real connectors.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from reconciliation.demo import (
    ISSUE_IN_BOOKMARKED,
    ISSUE_IN_SOURCE,
    RULES,
    DemoManifest,
    generate_demo,
    generate_world,
)
from reconciliation.demo.__main__ import main
from reconciliation.demo.profiles import HILLCREST, MAPLE, DistrictProfile
from reconciliation.roster import normalize_email, normalize_grade, sync_role

TODAY = date.today()
DEMO_IDS = {"riverside-usd": 1001, "maple-charter": 1002, "hillcrest-academy": 1003}
UNRELATED_ID = 1999
BM, SRC = ISSUE_IN_BOOKMARKED, ISSUE_IN_SOURCE


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoManifest:
    return generate_demo(tmp_path_factory.mktemp("demo"), seed=7, today=TODAY)


# -- reading the files back --------------------------------------------------------------


def read_bulk_set(path: Path) -> tuple[dict[str, list[dict[str, str]]], dict[str, list[str]]]:
    """Rows and headers of every CSV in a bulk set (zip: files at the root)."""
    raw: dict[str, bytes] = {}
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                assert "/" not in name, f"{name}: a zip holds its files at the root"
                raw[name] = archive.read(name)
    else:
        raw = {p.name: p.read_bytes() for p in path.glob("*.csv")}
    rows, headers = {}, {}
    for name, data in raw.items():
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
        header = next(reader)
        body = list(reader)
        assert all(len(r) == len(header) for r in body), f"{name}: ragged rows"
        table = name.removesuffix(".csv")
        headers[table] = header
        rows[table] = [dict(zip(header, r, strict=True)) for r in body]
    return rows, headers


def query(db: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    connection.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in connection.execute(sql, params)]
    finally:
        connection.close()


def read_bookmarked(db: Path, customer: int) -> dict[str, list[dict[str, Any]]]:
    return {
        "schools": query(db, "SELECT * FROM schools WHERE customer_id = ?", customer),
        "users": query(db, "SELECT * FROM users WHERE customer_id = ?", customer),
        "parent_students": query(
            db,
            "SELECT ps.* FROM parent_students ps JOIN users p ON p.id = ps.parent_id "
            "WHERE p.customer_id = ?",
            customer,
        ),
        "classes": query(
            db,
            "SELECT c.* FROM classes c JOIN schools s ON s.id = c.school_id "
            "WHERE s.customer_id = ?",
            customer,
        ),
        "enrollments": query(
            db,
            "SELECT e.* FROM enrollments e JOIN classes c ON c.id = e.class_id "
            "JOIN schools s ON s.id = c.school_id WHERE s.customer_id = ?",
            customer,
        ),
    }


# -- a reference reconciliation, straight from the rules table ---------------------------


def split(value: str) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@dataclass
class Side:
    """One side in a comparable shape: sis_id -> record (plus links as pairs)."""

    schools: dict[str, bool] = field(default_factory=dict)  # sis_id -> active
    orgs: set[str] = field(default_factory=set)  # every org of any type
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: set[tuple[str, str]] = field(default_factory=set)
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    enrollments: dict[str, dict[str, Any]] = field(default_factory=dict)


def deleted(status: str) -> bool:
    return status.strip().lower() in ("tobedeleted", "inactive")


def source_side(files: dict[str, list[dict[str, str]]], today: date) -> Side:
    side = Side()
    for org in files["orgs"]:
        side.orgs.add(org["sourcedId"])
        if org["type"] == "school":
            side.schools[org["sourcedId"]] = not deleted(org["status"])
    primary_role = {
        r["userSourcedId"]: r for r in files.get("roles", []) if r["roleType"] == "primary"
    }
    role_orgs: dict[str, list[str]] = defaultdict(list)
    for r in files.get("roles", []):
        if not deleted(r["status"]):
            role_orgs[r["userSourcedId"]].append(r["orgSourcedId"])
    for u in files["users"]:
        sis = u["sourcedId"]
        if "role" in u:  # 1.1
            raw_role = u["role"]
            school = next((o for o in split(u["orgSourcedIds"]) if o in side.schools), None)
            orgs = split(u["orgSourcedIds"])
        else:  # 1.2
            raw_role = primary_role[sis]["role"]
            school = u["primaryOrgSourcedId"] if u["primaryOrgSourcedId"] in side.schools else None
            orgs = [o for o in [u["primaryOrgSourcedId"], *role_orgs[sis]] if o]
        side.users[sis] = {
            "role": sync_role(raw_role),
            "active": not deleted(u["status"]) and u["enabledUser"].lower() != "false",
            "first": u["givenName"],
            "last": u["familyName"],
            "email": normalize_email(u["email"] or None),
            "grade": normalize_grade((split(u["grades"]) or [None])[0]),
            "number": u["identifier"] or None,
            "school": school,
            "orgs": orgs,
            "deleted": deleted(u["status"]),
        }
    for u in files["users"]:
        for agent in split(u["agentSourcedIds"]):
            parent_side = side.users[u["sourcedId"]]["role"] == "parent"
            side.links.add((u["sourcedId"], agent) if parent_side else (agent, u["sourcedId"]))
    for c in files["classes"]:
        side.classes[c["sourcedId"]] = {
            "school": c["schoolSourcedId"],
            "active": not deleted(c["status"]),
        }
    for e in files["enrollments"]:
        end = date.fromisoformat(e["endDate"]) if e["endDate"] else None
        side.enrollments[e["sourcedId"]] = {
            "class": e["classSourcedId"],
            "user": e["userSourcedId"],
            "role": e["role"],
            "active": not deleted(e["status"]) and (end is None or end > today),
            "end": end,
        }
    return side


def bookmarked_side(tables: dict[str, list[dict[str, Any]]]) -> Side:
    side = Side()
    school_sis = {s["id"]: s["sis_id"] for s in tables["schools"]}
    for s in tables["schools"]:
        side.schools[s["sis_id"]] = bool(s["is_active"])
    user_sis = {u["id"]: u["sis_id"] for u in tables["users"]}
    for u in tables["users"]:
        if u["sis_id"] is None:
            continue
        side.users[u["sis_id"]] = {
            "role": u["role"],
            "active": bool(u["is_active"]) and u["deleted_at"] is None,
            "first": u["first_name"],
            "last": u["last_name"],
            "email": normalize_email(u["email"]),
            "grade": normalize_grade(u["grade"]),
            "number": u["student_number"],
            "school": school_sis.get(u["school_id"]),
        }
    side.links = {
        (user_sis[ps["parent_id"]], user_sis[ps["student_id"]]) for ps in tables["parent_students"]
    }
    class_sis = {}
    for c in tables["classes"]:
        class_sis[c["id"]] = c["sis_id"]
        side.classes[c["sis_id"]] = {
            "school": school_sis[c["school_id"]],
            "active": bool(c["is_active"]),
        }
    for e in tables["enrollments"]:
        side.enrollments[e["sis_id"]] = {
            "class": class_sis[e["class_id"]],
            "user": user_sis[e["user_id"]],
            "role": e["role"],
            "active": bool(e["is_active"]),
        }
    return side


def reference_findings(src: Side, bm: Side) -> set[tuple[str, str, str, str]]:
    """What a correct reconciliation reports, per the rules table of the task."""
    found: set[tuple[str, str, str, str]] = set()
    active_users = {s: u for s, u in src.users.items() if u["active"] and u["role"] != "other"}

    # source_integrity: references inside the export that do not resolve
    for sis, e in src.enrollments.items():
        if e["class"] not in src.classes or e["user"] not in src.users:
            found.add(("source_integrity", "enrollment", sis, SRC))
    for sis, c in src.classes.items():
        if c["school"] not in src.schools:
            found.add(("source_integrity", "class", sis, SRC))
    # ... an enrollment whose role contradicts its user's, a user listing an unknown org
    for sis, e in src.enrollments.items():
        u = src.users.get(e["user"])
        if e["active"] and u and {e["role"], u["role"]} == {"student", "teacher"}:
            found.add(("source_integrity", "enrollment", sis, SRC))
    for sis, u in src.users.items():
        if not u["deleted"] and u["role"] != "other" and set(u["orgs"]) - src.orgs:
            found.add(("source_integrity", u["role"], sis, SRC))

    # student_mismatch in the source: links that cannot be right, on the record whose
    # agentSourcedIds lists the bad id (an unknown parent side: the student listed it)
    bad_links = set()
    for parent, student in src.links:
        p, s = src.users.get(parent), src.users.get(student)
        if not p or not s or p["role"] != "parent" or s["role"] != "student":
            record, user = (student, s) if not p else (parent, p)
            # entity_type: the record's role when it is a user we know, else `parent`
            kind = user["role"] if user and user["role"] != "other" else "parent"
            found.add(("student_mismatch", kind, record, SRC))
            bad_links.add((parent, student))

    # parent_email_conflict: one email, several SIS parents
    by_email = defaultdict(set)
    for sis, u in active_users.items():
        if u["role"] == "parent" and u["email"]:
            by_email[u["email"]].add(sis)
    conflict = {sis for group in by_email.values() if len(group) > 1 for sis in group}
    found |= {("parent_email_conflict", "parent", sis, SRC) for sis in conflict}

    # campus_transfer in the source: active at two campuses
    class_school = {c: v["school"] for c, v in src.classes.items()}
    campuses = defaultdict(set)
    for e in src.enrollments.values():
        if e["active"] and e["user"] in active_users and e["class"] in class_school:
            campuses[e["user"]].add(class_school[e["class"]])
    two_campus = {
        s
        for s, schools in campuses.items()
        if len(schools) > 1 and active_users[s]["role"] == "student"
    }
    found |= {("campus_transfer", "student", s, SRC) for s in two_campus}

    live = {s for s, u in bm.users.items() if u["active"]}

    # duplicate_identity: a new sourcedId for a student Bookmarked has under the old one
    orphans = {
        s: u
        for s, u in bm.users.items()
        if u["active"] and u["role"] == "student" and s not in active_users
    }
    dup_new, dup_old = set(), set()
    for sis, u in active_users.items():
        if u["role"] != "student" or sis in bm.users:
            continue
        # the same student number, or the same email where one side has no number
        match = [
            o
            for o, b in orphans.items()
            if (u["number"] and b["number"] == u["number"])
            or (u["email"] and b["email"] == u["email"] and not (u["number"] and b["number"]))
        ]
        if match:
            found.add(("duplicate_identity", "student", sis, BM))
            dup_new.add(sis)
            dup_old.update(match)

    # campus_transfer in Bookmarked: the student has enrollments at another campus (in
    # either system) and Bookmarked differs on the school or on any of those enrollments
    bm_class_school = {c: v["school"] for c, v in bm.classes.items()}
    by_user: dict[str, set[str]] = defaultdict(set)
    for side in (src, bm):
        for sis, e in side.enrollments.items():
            by_user[e["user"]].add(sis)
    transfer = set()
    for sis, u in active_users.items():
        if u["role"] != "student" or sis in two_campus or sis not in live:
            continue
        schools = {
            class_school.get(src.enrollments[e]["class"])
            if e in src.enrollments
            else bm_class_school.get(bm.enrollments[e]["class"])
            for e in by_user[sis]
        }
        if not (schools - {u["school"], None}):
            continue
        transfer.add(sis)
        differs = bm.users[sis]["school"] != u["school"] or any(
            src.enrollments.get(e, {}).get("active", False)
            != bm.enrollments.get(e, {}).get("active", False)
            for e in by_user[sis]
        )
        if differs:
            found.add(("campus_transfer", "student", sis, BM))

    # users: missing, stale, field_mismatch
    missing_users = set()
    for sis, u in active_users.items():
        if sis not in live and sis not in dup_new and sis not in conflict:
            found.add(("missing_data", u["role"], sis, BM))
            missing_users.add(sis)
    for sis in live:
        u = src.users.get(sis)
        if (u is None or not u["active"]) and sis not in dup_old:
            found.add(("stale_record", bm.users[sis]["role"], sis, BM))
    for sis, u in active_users.items():
        if sis in live and sis not in conflict:
            b = bm.users[sis]
            fields = ["first", "last", "email", "grade", "number"]
            fields += [] if sis in transfer else ["school"]
            if any(u[f] != b[f] for f in fields):
                found.add(("field_mismatch", u["role"], sis, BM))

    # schools and classes
    for sis, active in src.schools.items():
        if active and not bm.schools.get(sis, False):
            found.add(("missing_data", "school", sis, BM))
    for sis, active in bm.schools.items():
        if active and not src.schools.get(sis, False):
            found.add(("stale_record", "school", sis, BM))
    missing_classes = set()
    for sis, c in src.classes.items():
        if c["active"] and c["school"] in src.schools and not bm.classes.get(sis, {}).get("active"):
            found.add(("missing_data", "class", sis, BM))
            missing_classes.add(sis)
    for sis, c in bm.classes.items():
        if c["active"] and not src.classes.get(sis, {}).get("active"):
            found.add(("stale_record", "class", sis, BM))

    # enrollments (not those of a missing class or user, or of a transfer)
    for sis, e in src.enrollments.items():
        if (
            not e["active"]
            or e["role"] not in ("student", "teacher")
            or e["class"] not in src.classes
            or e["user"] not in src.users
            or e["class"] in missing_classes
            or e["user"] in missing_users
            or e["user"] in transfer
        ):
            continue
        if not bm.enrollments.get(sis, {}).get("active"):
            found.add(("missing_data", "enrollment", sis, BM))
    for sis, e in bm.enrollments.items():
        if (
            e["active"]
            and not src.enrollments.get(sis, {}).get("active")
            and e["user"] not in transfer
        ):
            found.add(("stale_record", "enrollment", sis, BM))

    # student_mismatch in Bookmarked: a parent account's children differ
    children: dict[str, dict[str, set[str]]] = {"src": defaultdict(set), "bm": defaultdict(set)}
    for p, s in src.links:
        if (p, s) not in bad_links and s not in missing_users:
            children["src"][p].add(s)
    for p, s in bm.links:
        if s not in missing_users:
            children["bm"][p].add(s)
    for sis in live:
        if bm.users[sis]["role"] != "parent" or sis in conflict:
            continue
        if children["src"][sis] != children["bm"][sis]:
            found.add(("student_mismatch", "parent", sis, BM))
    return found


@pytest.fixture(scope="module")
def sides(demo: DemoManifest) -> dict[str, tuple[Side, Side, dict]]:
    out = {}
    for customer_id, customer in demo.customers.items():
        files, headers = read_bulk_set(customer.source_path)
        tables = read_bookmarked(demo.database, customer.bookmarked_customer_id)
        out[customer_id] = (
            source_side(files, demo.today),
            bookmarked_side(tables),
            {"files": files, "headers": headers, "tables": tables},
        )
    return out


def ground_truth(demo: DemoManifest) -> list[dict[str, str]]:
    with demo.ground_truth.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# -- the tests ----------------------------------------------------------------------------


def test_writes_the_layout_the_settings_point_at(demo: DemoManifest) -> None:
    assert (demo.out_dir / "riverside-usd" / "oneroster.zip").is_file()
    assert (demo.out_dir / "maple-charter" / "oneroster" / "users.csv").is_file()
    assert (demo.out_dir / "hillcrest-academy" / "oneroster" / "roles.csv").is_file()
    assert demo.database == demo.out_dir / "bookmarked.db"
    assert {c: m.bookmarked_customer_id for c, m in demo.customers.items()} == DEMO_IDS


@pytest.mark.parametrize("customer_id", list(DEMO_IDS))
def test_oneroster_files_are_valid(demo: DemoManifest, sides: dict, customer_id: str) -> None:
    files, headers = sides[customer_id][2]["files"], sides[customer_id][2]["headers"]
    manifest = {r["propertyName"]: r["value"] for r in files["manifest"]}
    version = demo.customers[customer_id].oneroster_version
    assert manifest["oneroster.version"] == version
    for key, value in manifest.items():
        if key.startswith("file."):
            assert (value == "bulk") == (key[5:] in files), key
    for table in ("orgs", "users", "classes", "enrollments", "courses", "academicSessions"):
        assert headers[table][:3] == ["sourcedId", "status", "dateLastModified"], table
    if version == "1.1":
        assert "orgSourcedIds" in headers["users"] and "roles" not in files
    else:
        assert "primaryOrgSourcedId" in headers["users"] and "role" not in headers["users"]
        assert {r["roleType"] for r in files["roles"]} >= {"primary"}
    # every synced user's identifier is a student number; sourcedIds are unique per file
    for table, rows in files.items():
        if table != "manifest":
            ids = [r["sourcedId"] for r in rows]
            assert len(ids) == len(set(ids)), f"{table}: duplicate sourcedIds"
    # realistic shape: several schools, 5-8 enrollments per student, 1-2 parents
    src = sides[customer_id][0]
    assert len(src.schools) >= 2
    students = [s for s, u in src.users.items() if u["role"] == "student"]
    assert 150 <= len(students) <= 1500
    per_student = defaultdict(int)
    for e in files["enrollments"]:
        if e["role"] == "student":
            per_student[e["userSourcedId"]] += 1
    typical = sorted(per_student.values())[len(per_student) // 2]
    assert 5 <= typical <= 8
    assert {len([1 for p, s in src.links if s == st]) for st in students} >= {0, 1, 2}
    assert {c["courseCode"] for c in files["courses"]} and all(
        c["courseSourcedId"] for c in files["classes"]
    )
    grades = {u["grades"] for u in files["users"] if u.get("role", "student") == "student"}
    assert {"KG", "01", "05"} <= grades


def test_dates_are_relative_to_generation(demo: DemoManifest, sides: dict) -> None:
    for customer_id, (src, _, raw) in sides.items():
        ended = [e for e in src.enrollments.values() if e["end"] and e["end"] <= demo.today]
        running = [e for e in src.enrollments.values() if e["end"] and e["end"] > demo.today]
        assert ended and running, customer_id
        assert all(e["end"] < demo.today for e in ended)
        assert all(e["end"] >= demo.today + timedelta(days=30) for e in running)
        # every SIS change is older than the last successful Bookmarked sync
        last_ok = query(
            demo.database,
            "SELECT max(finished_at) AS t FROM sync_runs "
            "WHERE customer_id = ? AND status = 'succeeded'",
            DEMO_IDS[customer_id],
        )[0]["t"]
        stamps = [
            r["dateLastModified"]
            for t in ("users", "enrollments", "classes", "orgs")
            for r in raw["files"][t]
            if r["dateLastModified"]
        ]
        assert stamps and max(stamps).replace("T", " ")[:19] < last_ok


def test_database_holds_the_customers_and_an_unrelated_one(demo: DemoManifest) -> None:
    customers = {r["id"]: r for r in query(demo.database, "SELECT * FROM customers")}
    assert set(customers) == {*DEMO_IDS.values(), UNRELATED_ID}
    assert demo.unrelated_bookmarked_customer_id == UNRELATED_ID
    other = read_bookmarked(demo.database, UNRELATED_ID)
    assert other["users"] and other["enrollments"] and other["parent_students"]
    # its sis_ids collide with Riverside's, so only the customer filter tells them apart
    riverside = {u["sis_id"] for u in read_bookmarked(demo.database, 1001)["users"]}
    assert len(riverside & {u["sis_id"] for u in other["users"]}) > 50
    statuses = {r["status"] for r in query(demo.database, "SELECT status FROM sync_runs")}
    assert statuses == {"succeeded", "failed", "running"}


def test_ground_truth_covers_every_rule_and_status(demo: DemoManifest) -> None:
    truth = ground_truth(demo)
    assert list(truth[0]) == ["customer_id", "rule", "entity_type", "sis_id", "status", "note"]
    assert {r["rule"] for r in truth} == set(RULES)
    pairs = {(r["rule"], r["status"]) for r in truth}
    for rule in ("student_mismatch", "campus_transfer"):
        assert {(rule, BM), (rule, SRC)} <= pairs
    assert {
        r["status"]
        for r in truth
        if r["rule"] in ("missing_data", "stale_record", "field_mismatch", "duplicate_identity")
    } == {BM}
    assert {
        r["status"] for r in truth if r["rule"] in ("parent_email_conflict", "source_integrity")
    } == {SRC}
    assert {r["entity_type"] for r in truth if r["rule"] == "missing_data"} == {
        "school",
        "student",
        "teacher",
        "parent",
        "admin",
        "class",
        "enrollment",
    }
    assert {r["customer_id"] for r in truth} == set(DEMO_IDS)
    keys = [(r["customer_id"], r["rule"], r["sis_id"], r["status"]) for r in truth]
    assert len(keys) == len(set(keys)), "one row per finding"


@pytest.mark.parametrize("customer_id", list(DEMO_IDS))
def test_reference_reconciliation_finds_exactly_the_ground_truth(
    demo: DemoManifest, sides: dict, customer_id: str
) -> None:
    src, bm, _ = sides[customer_id]
    expected = {
        (r["rule"], r["entity_type"], r["sis_id"], r["status"])
        for r in ground_truth(demo)
        if r["customer_id"] == customer_id
    }
    found = reference_findings(src, bm)
    assert sorted(found - expected) == [], "findings the ground truth does not list"
    assert sorted(expected - found) == [], "ground truth rows the data does not show"


def test_noise_is_present(demo: DemoManifest, sides: dict) -> None:
    totals: dict[str, int] = defaultdict(int)
    for src, bm, raw in sides.values():
        users = raw["files"]["users"]
        db_users = {u["sis_id"]: u for u in raw["tables"]["users"] if u["sis_id"]}
        for u in users:
            b = db_users.get(u["sourcedId"])
            if (
                b
                and u["email"]
                and b["email"]
                and u["email"] != b["email"]
                and normalize_email(u["email"]) == normalize_email(b["email"])
            ):
                totals["email case or whitespace"] += 1
            if (
                b
                and u["grades"]
                and b["grade"]
                and u["grades"] != b["grade"]
                and normalize_grade(u["grades"]) == normalize_grade(b["grade"])
            ):
                totals["grade variant"] += 1
        children = defaultdict(set)
        for parent, student in src.links:
            children[parent].add(student)
        parents = defaultdict(set)
        for parent, student in src.links:
            parents[student].add(parent)
        totals["parent of siblings"] += sum(len(c) >= 2 for c in children.values())
        totals["parent of three or more"] += sum(len(c) >= 3 for c in children.values())
        totals["two parents"] += sum(len(p) == 2 for p in parents.values())
        listed = {(u["sourcedId"], a) for u in users for a in split(u["agentSourcedIds"])}
        one_sided = [(x, y) for x, y in listed if (y, x) not in listed]
        totals["one-sided link"] += len(one_sided)
        totals["ended in both"] += sum(
            1
            for s, e in src.enrollments.items()
            if not e["active"] and s in bm.enrollments and not bm.enrollments[s]["active"]
        )
        totals["inactive in both"] += sum(
            1
            for s, u in src.users.items()
            if not u["active"] and s in bm.users and not bm.users[s]["active"]
        )
        totals["aides and proctors"] += sum(
            1 for s, u in src.users.items() if u["role"] == "other" and s not in bm.users
        )
        totals["guardian or relative"] += sum(
            1 for u in users if (u.get("role") or "") in ("guardian", "relative")
        )
        totals["hand-made admin"] += sum(
            1 for u in raw["tables"]["users"] if u["sis_id"] is None and u["role"] == "admin"
        )
        totals["disabled login"] += sum(1 for u in users if u["enabledUser"].lower() == "false")
    too_few = {k: v for k, v in totals.items() if v < 3}
    assert not too_few, too_few
    assert totals["email case or whitespace"] >= 50 and totals["grade variant"] >= 50
    for customer in demo.customers.values():
        assert customer.noise["correct_transfers"] >= 0


def test_parent_email_conflicts_are_merged_in_bookmarked(demo: DemoManifest, sides: dict) -> None:
    truth = [r for r in ground_truth(demo) if r["rule"] == "parent_email_conflict"]
    for customer_id, (src, bm, _) in sides.items():
        members = {r["sis_id"] for r in truth if r["customer_id"] == customer_id}
        assert len(members) >= 4
        emails = {src.users[m]["email"] for m in members}
        accounts = [s for s, u in bm.users.items() if u["email"] in emails]
        # one account per email, carrying one member's sis_id, linked to several families
        assert len(accounts) == len(emails) < len(members)
        assert set(accounts) <= members
    # and one conflict where the emails differ only in case and whitespace
    files = sides["riverside-usd"][2]["files"]["users"]
    raw = {u["sourcedId"]: u["email"] for u in files}
    riverside = [r["sis_id"] for r in truth if r["customer_id"] == "riverside-usd"]
    assert any(
        raw[a] != raw[b] and normalize_email(raw[a]) == normalize_email(raw[b])
        for a in riverside
        for b in riverside
    )


def test_deterministic_for_a_seed(demo: DemoManifest, tmp_path: Path) -> None:
    """`python -m reconciliation.demo` writes the same bytes as the first run."""
    assert main([str(tmp_path), "--seed", "7", "--today", demo.today.isoformat()]) == 0
    for first in demo.out_dir.rglob("*"):
        if first.is_file() and first.suffix in (".csv", ".zip"):
            second = tmp_path / first.relative_to(demo.out_dir)
            assert first.read_bytes() == second.read_bytes(), first.name

    def dump(db: Path) -> list[str]:
        connection = sqlite3.connect(db)
        try:
            return list(connection.iterdump())
        finally:
            connection.close()

    assert dump(demo.database) == dump(tmp_path / "bookmarked.db")


def test_another_seed_gives_other_people() -> None:
    first = generate_world(300, 1, profile=MAPLE, today=TODAY)
    second = generate_world(300, 2, profile=MAPLE, today=TODAY)
    names = lambda w: w.source["users"].select("givenName", "familyName").rows()  # noqa: E731
    assert names(first) != names(second)
    assert first.ground_truth.height > 0 and second.ground_truth.height > 0


def test_clean_world_has_noise_but_no_findings() -> None:
    world = generate_world(400, 3, profile=MAPLE, today=TODAY, discrepancies=False)
    assert world.ground_truth.height == 0
    assert world.noise["email_case_or_whitespace"] > 0 and world.noise["grade_variant"] > 0


def test_large_world_is_columnar_and_scales() -> None:
    world = generate_world(20_000, 11, today=TODAY)
    counts = world.source_counts()
    students = world.source["users"].filter(pl.col("role") == "student").height
    assert 19_800 <= students <= 20_000  # a few left the export
    assert 5 * students <= counts["enrollments"] <= 9 * students
    truth = world.ground_truth
    assert set(truth.get_column("rule").unique()) == set(RULES)
    # cases grow with the district
    assert truth.height > 20 * 40


@pytest.mark.parametrize("profile", [MAPLE, HILLCREST], ids=["1.1", "1.2"])
def test_world_rosters_skip_the_files(profile: DistrictProfile) -> None:
    """`World.rosters()` gives the canonical rosters the connectors would read."""
    world = generate_world(250, 4, profile=profile, today=TODAY)
    source, bookmarked = world.rosters()
    assert source.users.height == world.source["users"].height
    assert source.enrollments.height == world.source["enrollments"].height
    assert bookmarked.users.height == world.bookmarked.users.height
    assert bookmarked.links.height == world.bookmarked.parent_students.height
    students = source.users.filter(pl.col("role") == "student")
    assert students.get_column("school_sis_id").null_count() == 0


def test_reads_through_the_connectors(demo: DemoManifest, sides: dict) -> None:
    """The demo as the pipeline sees it: the OneRoster CSV connector and the Bookmarked
    database connector, with settings laid out like customer-integration-settings."""
    from reconciliation.audit import AuditLog
    from reconciliation.connectors.bookmarked_database import BookmarkedDatabaseConnector
    from reconciliation.connectors.oneroster_csv import OneRosterCsvConnector
    from reconciliation.settings import CustomerSettings

    settings_file = demo.out_dir / "settings" / "customer.json"
    for customer_id, customer in demo.customers.items():
        location = customer.source_path.relative_to(demo.out_dir)
        settings = CustomerSettings(
            customer_id=customer_id,
            name=customer_id,
            environment="staging",
            bookmarked={
                "customer_id": customer.bookmarked_customer_id,
                "database_url": "sqlite:///../bookmarked.db",
            },
            source={"type": "oneroster_csv", "location": f"../{location}"},
            path=settings_file,
        )
        audit = AuditLog(None)
        source = OneRosterCsvConnector(settings, audit=audit).fetch_roster()
        bookmarked = BookmarkedDatabaseConnector(settings, audit=audit).fetch_roster()
        src, _, raw = sides[customer_id]
        assert source.meta["oneroster_version"] == customer.oneroster_version
        assert source.users.height == len(raw["files"]["users"])
        assert source.enrollments.height == len(raw["files"]["enrollments"])
        assert set(source.links.select("parent_sis_id", "student_sis_id").iter_rows()) == src.links
        assert bookmarked.users.height == len(raw["tables"]["users"])
        assert bookmarked.enrollments.height == len(raw["tables"]["enrollments"])
        # the connectors agree with the reading above on who is active
        active = dict(source.users.select("sis_id", "active").iter_rows())
        assert active == {s: u["active"] for s, u in src.users.items()}
        school = dict(source.users.select("sis_id", "school_sis_id").iter_rows())
        assert school == {s: u["school"] for s, u in src.users.items()}


# -- the output folder ---------------------------------------------------------------------


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path, demo: DemoManifest) -> None:
    """A non-empty folder without the demo's marker is someone's files: refused unless
    forced; a folder the demo made (marker inside) is rebuilt."""
    from reconciliation.demo.demo import DEMO_MARKER, DemoFolderError, claim_demo_folder

    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "thesis.docx").write_text("years of work")
    with pytest.raises(DemoFolderError) as raised:
        generate_demo(mine, seed=7, today=TODAY)
    assert str(raised.value) == (
        f"{mine} is not empty and was not made by the demo generator "
        f"(no {DEMO_MARKER} file in it): choose an empty folder, or force "
        "(reconcile demo --force) to write the demo into it"
    )
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.docx"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(DemoFolderError, match="is a file, not a folder"):
        generate_demo(a_file, seed=7, today=TODAY)

    fresh = tmp_path / "fresh" / "data"
    claim_demo_folder(fresh)
    assert [p.name for p in fresh.iterdir()] == [DEMO_MARKER]
    (fresh / "bookmarked.db").write_text("an earlier demo")
    claim_demo_folder(fresh)  # made by the demo: rebuilt without force
    claim_demo_folder(mine, force=True)
    assert (mine / DEMO_MARKER).exists() and (mine / "thesis.docx").exists()
    assert (demo.out_dir / DEMO_MARKER).exists()
