"""Finding one person and reading their neighbourhood, narrowly, through every connector.

What the diagnosis relies on: a query finds the same people on every side (one shared
name match: case, accents, spaces, either order), a name shared by two people gives both,
nobody gives [], and `fetch_people` returns exactly `Roster.for_people` of the whole
roster (siblings through a shared parent, a parent's children and their other parents,
a merged parent account) while PROVING it read narrowly: SQL statements are counted and
inspected (SQLite and PostgreSQL), the local REST servers' request logs show no whole
collection, and a CSV set is scanned without loading what it does not need.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine

from reconciliation.audit import AuditLog
from reconciliation.connectors import bookmarked_connector, source_connector
from reconciliation.connectors.base import Connector, PersonMatch, PersonQuery, SourceDataError
from reconciliation.connectors.bookmarked_database import BookmarkedDatabaseConnector
from reconciliation.connectors.people import find_people_in, name_key, name_matches, records_of
from reconciliation.credentials import CredentialResolver
from reconciliation.demo import generate_demo
from reconciliation.roster import TABLES, Roster
from reconciliation.settings import DEFAULT_SETTINGS_DIR, CustomerSettings, load_settings
from reconciliation_tests.connectors.test_bookmarked_api import api_connector
from reconciliation_tests.connectors.test_classlink import proxy
from reconciliation_tests.connectors.test_oneroster_api import make_connector, oauth1, oauth2
from reconciliation_tests.fixtures.bookmarked_api_server import BookmarkedApiServer
from reconciliation_tests.fixtures.oneroster_server import (
    OneRosterServer,
    demo_dataset,
    demo_people,
)
from reconciliation_tests.fixtures.postgres import (
    CUSTOMER_ID,
    build_bookmarked_database,
    throwaway_database,
)
from reconciliation_tests.rules import world

# -- what every test compares --------------------------------------------------------------


def sis_ids(matches: list[PersonMatch]) -> list[str | None]:
    return sorted(m.sis_id for m in matches if m.sis_id) + [None] * sum(
        1 for m in matches if not m.sis_id
    )


def assert_same_slice(narrow: Roster, whole: Roster) -> None:
    """The narrow read and the whole roster's slice hold the same rows (order aside)."""
    for table in TABLES:
        ours, theirs = narrow.table(table), whole.table(table)
        keys = [c for c in ours.columns if ours[c].dtype != pl.List(pl.String)]
        assert ours.sort(keys, nulls_last=True).equals(theirs.sort(keys, nulls_last=True)), (
            f"{table}\nnarrow:\n{ours}\nwhole:\n{theirs}"
        )


# -- the pure pieces -----------------------------------------------------------------------


def test_one_name_match_for_every_connector() -> None:
    assert name_key("  José   GARCÍA ") == "jose garcia"
    assert name_key("Strauß") == "strauss"
    assert name_matches("jose garcia", "José", "García")
    assert name_matches("García, José", "José", "García")  # "Family, Given"
    assert name_matches("garcia jose", "José", "García")  # either order
    assert name_matches("de la cruz, maria jose", "María José", "de la Cruz")
    assert not name_matches("jose", "José", "García")  # whole names only
    assert not name_matches("jose garcia", "José", "Garcias")


def test_a_query_names_exactly_one_thing() -> None:
    with pytest.raises(ValueError, match="exactly one of sourced_id, student_number"):
        PersonQuery()
    with pytest.raises(ValueError, match="given: email, name"):
        PersonQuery(email="a@example.org", name="Ann Lee")
    with pytest.raises(ValueError, match="non-empty"):
        PersonQuery(sourced_id="  ")
    assert PersonQuery(name="Lee, Ann").describe() == {"student": "Lee, Ann"}
    assert PersonQuery(parent_email="x@example.org").describe() == {"parent_email": "x@example.org"}
    assert PersonQuery(student_number="1001").kind == "student_number"


def test_find_people_in_a_roster() -> None:
    source = world.source()
    find = lambda **q: sis_ids(find_people_in(source, PersonQuery(**q)))  # noqa: E731
    assert find(sourced_id="stu-3") == ["stu-3"]
    assert find(student_number=" 1002 ") == ["stu-2"]
    assert find(email="CAL.ORTIZ@students.example ") == ["stu-3"]
    assert find(parent_email="lia.lee@example.org") == ["par-1"]  # stored as " Lia.Lee@..."
    assert find(parent_email="cal.ortiz@students.example") == []  # a student's email
    assert find(name="lee, ann") == ["stu-1"]
    assert find(name="Nobody Here") == []
    (ann,) = find_people_in(source, PersonQuery(name="Ann Lee"))
    assert (ann.role, ann.name, ann.school_sis_ids, ann.grade) == (
        "student",
        "Ann Lee",
        ("sch-1",),
        "03",
    )


def test_for_people_is_the_family_neighbourhood() -> None:
    source = world.source(
        links=[*world.LINKS, {"parent_sis_id": "par-3", "student_sis_id": "stu-2"}]
    )
    # Ann: her parents, her sibling Ben, and Ben's other parent (Olga, par-3)
    ann = source.for_people(["stu-1"])
    assert sorted(ann.users["sis_id"]) == ["par-1", "par-2", "par-3", "stu-1", "stu-2"]
    assert ann.links.height == 5  # both parents of Ann and Ben, and Olga - Ben
    assert sorted(ann.enrollments["sis_id"]) == ["e-s1-1", "e-s1-2", "e-s2-1", "e-s2-2"]
    assert sorted(ann.classes["sis_id"]) == ["cls-1", "cls-2"]
    assert ann.schools["sis_id"].to_list() == ["sch-1"]
    assert ann.meta["scope"] == {"people": ["stu-1"]}
    # Olga: her children (Cal, Ben), and Ben's other parents; not their siblings' parents
    olga = source.for_people(["par-3"])
    assert sorted(olga.users["sis_id"]) == ["par-1", "par-2", "par-3", "stu-2", "stu-3"]
    # Ann's sibling Ben is in her slice only as family: his classmates' rows are not
    assert "stu-4" not in ann.users["sis_id"].to_list()
    # absent: an empty slice
    assert source.for_people(["nobody"]).row_counts() == dict.fromkeys(TABLES, 0)


def test_for_people_follows_a_merged_parent_account_by_its_id() -> None:
    """Bookmarked: one parent account (one sis_id) linked to two families' children."""
    bookmarked = world.sync(world.source())
    lia = world.bm_id(bookmarked, "par-1")
    olga = world.bm_id(bookmarked, "par-3")
    cal = world.bm_id(bookmarked, "stu-3")
    # Olga's account was merged into Lia's: Cal's link now names Lia's account
    merged = bookmarked.with_tables(
        users=bookmarked.users.filter(pl.col("bookmarked_id") != olga),
        links=bookmarked.links.with_columns(
            pl.when(pl.col("parent_bookmarked_id") == olga)
            .then(pl.lit(lia))
            .otherwise(pl.col("parent_bookmarked_id"))
            .alias("parent_bookmarked_id"),
            pl.when(pl.col("parent_bookmarked_id") == olga)
            .then(pl.lit(None, pl.String))
            .otherwise(pl.col("parent_sis_id"))
            .alias("parent_sis_id"),
        ),
    )
    cal_slice = merged.for_people(["stu-3"])
    # Cal's parent is Lia's account, whose other children (Ann, Ben) are his "siblings"
    assert sorted(cal_slice.users["bookmarked_id"]) == sorted(
        [
            cal,
            lia,
            world.bm_id(merged, "stu-1"),
            world.bm_id(merged, "stu-2"),
            world.bm_id(merged, "par-2"),
        ]
    )
    assert cal in merged.for_people(["par-1"]).users["bookmarked_id"].to_list()


# -- the Bookmarked database: SQLite and PostgreSQL ---------------------------------------

_T = "2025-01-05 08:00:00"
#: added to the sample (fixtures/postgres.py): two people named alike (one with accents),
#: a multi-word name, and a second parent of the merged account's other child (stu-3)
EXTRA_USERS = [
    (60, "stu-60", "student", "José", "García", "jose.garcia@example.org", "1060", 1),
    (61, "stu-61", "student", "JOSE", "Garcia", None, "1061", 2),
    (62, "stu-62", "student", "María José", "de la Cruz", None, "1062", 1),
    (63, "par-63", "parent", "Pat", "Park", "Pat.Park@Example.org", None, None),
]
EXTRA_LINKS = [(63, 12)]


def build_people_database(engine: Engine) -> None:
    build_bookmarked_database(engine)
    with engine.begin() as connection:
        for id_, sis, role, first, last, email, number, school in EXTRA_USERS:
            connection.execute(
                text(
                    "INSERT INTO users (id, customer_id, sis_id, role, first_name, last_name, "
                    "email, student_number, school_id, is_active, updated_at) VALUES (:id, :c, "
                    ":sis, :role, :first, :last, :email, :number, :school, TRUE, :t)"
                ),
                {
                    "id": id_,
                    "c": CUSTOMER_ID,
                    "sis": sis,
                    "role": role,
                    "first": first,
                    "last": last,
                    "email": email,
                    "number": number,
                    "school": school,
                    "t": _T,
                },
            )
        for parent, student in EXTRA_LINKS:
            connection.execute(
                text("INSERT INTO parent_students VALUES (:p, :s, :t)"),
                {"p": parent, "s": student, "t": _T},
            )


@pytest.fixture(scope="module")
def people_sqlite(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("people") / "bookmarked.db"
    engine = create_engine(f"sqlite:///{path}")
    build_people_database(engine)
    engine.dispose()
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def people_pg(pg_server_url: URL) -> Iterator[str]:
    """A database of its own on the test server (other modules build the sample too)."""
    with throwaway_database(pg_server_url, "people_lookup") as url:
        engine = create_engine(url)
        build_people_database(engine)
        engine.dispose()
        yield url.render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def people_db(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("people_sqlite" if request.param == "sqlite" else "people_pg")


def db_connector(url: str, tmp_path: Path, audit: AuditLog | None = None) -> Connector:
    settings = CustomerSettings(
        customer_id="springfield",
        name="Springfield USD",
        environment="staging",
        bookmarked={"customer_id": CUSTOMER_ID, "database_url": url},
        source={"type": "oneroster_csv", "location": "unused"},
        path=tmp_path / "springfield.json",
    )
    return BookmarkedDatabaseConnector(settings, CredentialResolver({}), audit or AuditLog(None))


class Statements:
    """Every SQL statement any engine runs while counting (SQLAlchemy's cursor event)."""

    def __init__(self) -> None:
        self.sql: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.sql.append(" ".join(statement.split()))

    def __enter__(self) -> Statements:
        event.listen(Engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(Engine, "before_cursor_execute", self)


def test_database_finds_people_by_every_kind_of_query(people_db: str, tmp_path: Path) -> None:
    connector = db_connector(people_db, tmp_path)
    assert connector.narrow_lookup is True
    find = lambda **q: sis_ids(connector.find_people(PersonQuery(**q)))  # noqa: E731
    assert find(sourced_id="stu-1") == ["stu-1"]  # not the neighbour's stu-1
    assert find(student_number="1002") == ["stu-2"]
    assert find(email="ADA.lovelace@example.org") == [
        "stu-1"
    ]  # stored " Ada.Lovelace@Example.ORG "
    assert find(parent_email="pat.park@example.org") == ["par-63"]
    assert find(parent_email="grace.hopper@example.org") == []  # a teacher's email
    assert find(name="Ada Lovelace") == ["stu-1"]
    assert find(name="jose garcia") == ["stu-60", "stu-61"]  # accents and case: both
    assert find(name="García,  José") == ["stu-60", "stu-61"]
    assert find(name="de la cruz, maria jose") == ["stu-62"]
    assert find(name="Helen Helper") == [None]  # the hand-made teacher has no sis_id
    assert find(name="Zed Other") == []  # the neighbour's student
    assert find(sourced_id="nobody") == []
    (jose,) = connector.find_people(PersonQuery(student_number="1060"))
    assert jose == PersonMatch("stu-60", 60, "student", "José García", ("sch-1",), None)


def test_database_name_lookup_reads_only_candidate_names(people_db: str, tmp_path: Path) -> None:
    audit = AuditLog(None)
    with Statements() as statements:
        db_connector(people_db, tmp_path, audit).find_people(PersonQuery(name="Ben Okafor"))
    reads = [s for s in statements.sql if "FROM users" in s]
    assert reads and all("customer_id" in s and "WHERE" in s for s in reads)
    prefilter = next(e for e in audit.events if "prefilter" in e.detail)
    # Ben, and the names SQL cannot fold (José García, María José de la Cruz)
    assert prefilter.row_count == 3


def test_database_fetch_people_reads_the_neighbourhood_only(people_db: str, tmp_path: Path) -> None:
    audit = AuditLog(None)
    connector = db_connector(people_db, tmp_path, audit)
    with Statements() as statements:
        ada = connector.fetch_people(["stu-1"])
    # Ada, her (merged) parent account, its other child Cleo and Cleo's other parent Pat
    assert sorted(ada.users["bookmarked_id"]) == [10, 12, 15, 63]
    assert sorted(ada.links.select("parent_bookmarked_id", "student_bookmarked_id").rows()) == [
        (15, 10),
        (15, 12),
        (63, 12),
    ]
    assert sorted(ada.enrollments["bookmarked_id"]) == [40, 43, 45]
    assert sorted(ada.classes["bookmarked_id"]) == [30, 31]
    assert sorted(ada.schools["bookmarked_id"]) == [1, 2]
    scope = ada.meta["scope"]
    assert scope["people"] == ["stu-1"] and scope["narrow"] is True
    assert scope["reads"].startswith("7 parameterized queries")
    # every statement is a bound, customer-scoped WHERE: no literal id, nothing unscoped
    data = [s for s in statements.sql if s.startswith("SELECT") and "sync_runs" not in s]
    assert len(data) == 8  # the customer row, then the 7 reads
    assert data[0] == "SELECT id, name FROM customers WHERE id = ?" or "%(" in data[0]
    assert all("WHERE" in s and "customer_id" in s for s in data[1:])
    assert not any("stu-1" in s for s in statements.sql)
    # no read returned more than the neighbourhood (the customer has 13 users, 7 enrollments)
    assert max(e.row_count for e in audit.events) <= 4

    # a parent: her children and their other parents
    pat = connector.fetch_people(["par-63"])
    assert sorted(pat.users["bookmarked_id"]) == [12, 15, 63]
    # absent on this side: an empty slice, not an error
    assert connector.fetch_people(["nobody"]).row_counts() == dict.fromkeys(TABLES, 0)


def test_database_fetch_people_is_the_whole_rosters_slice(people_db: str, tmp_path: Path) -> None:
    connector = db_connector(people_db, tmp_path)
    whole = connector.fetch_roster()
    for people in (["stu-1"], ["par-2"], ["par-63"], ["stu-2", "tch-1"], ["stu-4"], ["par-4"]):
        assert_same_slice(connector.fetch_people(people), whole.for_people(people))


# -- the Bookmarked support API -------------------------------------------------------------


@pytest.fixture
def people_api(bookmarked_api_server: BookmarkedApiServer) -> BookmarkedApiServer:
    """The API serving the same rows as `people_sqlite`."""
    rows = bookmarked_api_server.rows
    for id_, sis, role, first, last, email, number, school in EXTRA_USERS:
        rows["users"].append(
            {
                "id": id_,
                "customer_id": CUSTOMER_ID,
                "sis_id": sis,
                "role": role,
                "first_name": first,
                "last_name": last,
                "email": email,
                "username": None,
                "student_number": number,
                "grade": None,
                "school_id": school,
                "is_active": True,
                "updated_at": _T,
                "deleted_at": None,
            }
        )
    for parent, student in EXTRA_LINKS:
        rows["parent_students"].append(
            {"parent_id": parent, "student_id": student, "created_at": _T}
        )
    return bookmarked_api_server


def test_api_finds_people_with_its_filters(
    people_api: BookmarkedApiServer, people_sqlite: str, tmp_path: Path
) -> None:
    api = api_connector(people_api, tmp_path)
    database = db_connector(people_sqlite, tmp_path)
    assert api.narrow_lookup is False  # no name filter, no account-id filter
    for query in (
        PersonQuery(sourced_id="stu-1"),
        PersonQuery(student_number="1060"),
        PersonQuery(email="ADA.lovelace@example.org"),
        PersonQuery(parent_email="pat.park@example.org"),
        PersonQuery(parent_email="grace.hopper@example.org"),
        PersonQuery(name="jose garcia"),
        PersonQuery(name="Nobody Here"),
    ):
        assert api.find_people(query) == database.find_people(query), query
    queries = [(r.path.rsplit("/", 1)[-1], dict(r.query)) for r in people_api.data_requests()]
    assert ("users", {"sis_id": ["stu-1"], "include_deleted": ["true"], "limit": ["5000"]}) in (
        queries
    )
    # the email filter was used, and no email reached the audit log
    assert any(q.get("email") == ["pat.park@example.org"] for _, q in queries)
    assert all("example.org" not in e.detail for e in api.audit.events)


def test_api_fetch_people_is_the_databases_slice_and_says_what_it_listed(
    people_api: BookmarkedApiServer, people_sqlite: str, tmp_path: Path
) -> None:
    api = api_connector(people_api, tmp_path)
    database = db_connector(people_sqlite, tmp_path)
    for people in (["stu-1"], ["par-2"], ["par-63"], ["stu-2", "tch-1"], ["stu-4"], ["nobody"]):
        ours, theirs = api.fetch_people(people), database.fetch_people(people)
        assert_same_slice(ours, theirs)
        assert ours.meta["scope"]["people"] == people
    for classes, schools in ((["cls-1", "cls-2"], ["sch-2"]), (["cls-9"], []), ([], ["sch-1"])):
        assert_same_slice(
            api.fetch_records(classes=classes, schools=schools),
            database.fetch_records(classes=classes, schools=schools),
        )
    ada = api.fetch_people(["stu-1"])
    scope = ada.meta["scope"]
    assert scope["narrow"] is False
    assert "parent users, student users, classes, schools" in scope["reads"]
    requests = [(r.path.rsplit("/", 1)[-1], dict(r.query)) for r in people_api.data_requests()]
    # links and enrollments by account, never the whole tables
    assert all(
        q.keys() - {"limit", "cursor"}
        for p, q in requests
        if p in ("enrollments", "parent-students")
    )


# -- OneRoster REST ---------------------------------------------------------------------------

#: the fixture's district plus a family: Ana's sister (who lists Eva as her agent: the link
#: is on the sister's side only), the sister's other guardian, and an "Ána López" with accents
FAMILY = [
    {
        "id": "st5",
        "role": "student",
        "given": "Mia",
        "family": "Lopez",
        "number": "1005",
        "orgs": ["s2"],
        "grades": ["K"],
        "agents": ["p1"],
    },
    {"id": "p3", "role": "guardian", "given": "Raul", "family": "Diaz", "agents": ["st5"]},
    {"id": "st6", "role": "student", "given": "Ána", "family": "López", "orgs": ["s2"]},
]


@pytest.fixture
def family_server(oneroster_server: OneRosterServer) -> OneRosterServer:
    oneroster_server.datasets = demo_dataset([*demo_people(), *FAMILY])
    return oneroster_server


def whole_collections(server: OneRosterServer) -> list[str]:
    """Requests that read a whole collection (no filter, not a single record)."""
    return [
        r.path
        for r in server.resource_requests()
        if r.path.rsplit("/", 1)[-1] in ("users", "enrollments", "classes", "orgs", "courses")
        and "filter" not in r.query
        and r.query.get("limit") != "1"  # the "does it serve users at all" probe
    ]


@pytest.mark.parametrize("auth", [oauth1, oauth2])
def test_oneroster_api_fetch_people_uses_single_records_and_filters(
    family_server: OneRosterServer, auth: Any
) -> None:
    connector = make_connector(auth(family_server))
    assert connector.narrow_lookup is True
    ana = connector.fetch_people(["st1"])
    # Ana, her mother Eva, her sister Mia (linked on Mia's side only) and Mia's guardian
    assert sorted(ana.users["sis_id"]) == ["p1", "p3", "st1", "st5"]
    assert sorted(ana.links.select("parent_sis_id", "student_sis_id").rows()) == [
        ("p1", "st1"),
        ("p1", "st5"),
        ("p3", "st5"),
    ]
    assert ana.meta["scope"]["narrow"] is True
    assert whole_collections(family_server) == []
    whole = make_connector(auth(family_server)).fetch_roster()
    for people in (["st1"], ["p1"], ["p3"], ["st2", "te1"], ["st6"], ["nobody"]):
        assert_same_slice(connector.fetch_people(people), whole.for_people(people))
    family_server.requests.clear()
    records = connector.fetch_records(classes=["cl1", "cl3", "nope"], schools=["s2"])
    assert_same_slice(records, records_of(whole, ["cl1", "cl3", "nope"], ["s2"]))
    assert sorted(records.classes["sis_id"]) == ["cl1", "cl3"]
    assert whole_collections(family_server) == []


def test_oneroster_api_finds_people(family_server: OneRosterServer) -> None:
    connector = make_connector(oauth1(family_server))
    whole = make_connector(oauth1(family_server)).fetch_roster()
    narrow_queries = (
        PersonQuery(sourced_id="st2"),
        PersonQuery(student_number="1005"),
        PersonQuery(email="eva@example.org"),
        PersonQuery(parent_email="EVA@example.org"),
        PersonQuery(email="ana.lopez@example.org"),  # stored " Ana.Lopez@Example.org ": listed
        PersonQuery(sourced_id="nobody"),
    )
    for query in narrow_queries:
        assert connector.find_people(query) == find_people_in(whole, query), query
    family_server.requests.clear()
    assert sis_ids(connector.find_people(PersonQuery(email="femi@example.org"))) == ["p2"]
    assert whole_collections(family_server) == []  # found by the filter alone
    (femi,) = connector.find_people(PersonQuery(parent_email="femi@example.org"))
    assert (femi.role, femi.name) == ("parent", "Femi Okafor")
    # a name: the shared match over the users (the server's filter compares exactly)
    assert sis_ids(connector.find_people(PersonQuery(name="ana lopez"))) == ["st1", "st6"]
    assert sis_ids(connector.find_people(PersonQuery(name="Nobody Here"))) == []


# -- the demo: every connector's narrow read against its whole roster --------------------------

DEMO_CUSTOMERS = ("riverside-usd", "maple-charter", "hillcrest-academy")  # zip 1.1, 1.1, 1.2


@pytest.fixture(scope="module")
def demo_settings(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("people-demo")
    generate_demo(root / "demo" / "data")
    (root / "settings").mkdir()
    for customer in DEMO_CUSTOMERS:
        shutil.copy(DEFAULT_SETTINGS_DIR / f"{customer}.json", root / "settings")
    return load_settings(root / "settings")


def family_people(roster: Roster) -> list[str]:
    """A few people whose neighbourhoods matter: a student with a sibling, their parent,
    a parent of three or more, a teacher, a student without parents."""
    links = roster.links.drop_nulls(["parent_sis_id", "student_sis_id"])
    per_parent = links.group_by("parent_sis_id").len().sort("len", "parent_sis_id")
    big = per_parent.filter(pl.col("len") >= 2)["parent_sis_id"]
    sibling = links.filter(pl.col("parent_sis_id") == big[0])["student_sis_id"].sort()[0]
    linked = set(links["student_sis_id"].to_list())
    users = roster.users.sort("sis_id")
    teacher = users.filter(role="teacher")["sis_id"][0]
    alone = users.filter((pl.col("role") == "student") & ~pl.col("sis_id").is_in(list(linked)))
    return [sibling, big[0], big[-1], teacher, *alone["sis_id"].head(1).to_list()]


@pytest.mark.parametrize("customer", DEMO_CUSTOMERS)
def test_demo_narrow_reads_equal_the_whole_rosters_slices(
    demo_settings: Any, customer: str
) -> None:
    settings = demo_settings.get(customer)
    for connector in (source_connector(settings), bookmarked_connector(settings)):
        assert connector.narrow_lookup is True
        whole = connector.fetch_roster()
        people = family_people(whole)
        for person in people:
            narrow = connector.fetch_people([person])
            assert_same_slice(narrow, whole.for_people([person]))
            assert narrow.meta["scope"]["narrow"] is True
        assert_same_slice(connector.fetch_people(people[:2]), whole.for_people(people[:2]))
        classes = [*whole.classes["sis_id"].sort().head(3), "no-such-class"]
        schools = [*whole.schools["sis_id"].sort().tail(2), "no-such-school"]
        records = connector.fetch_records(classes=classes, schools=schools)
        assert_same_slice(records, records_of(whole, classes, schools))
        assert records.classes.height == 3 and records.schools.height == 2
        person = whole.users.filter(pl.col("sis_id") == people[1]).row(0, named=True)
        for query in (
            PersonQuery(sourced_id=person["sis_id"]),
            PersonQuery(name=f"{person['last_name'].upper()}, {person['first_name']}"),
            PersonQuery(parent_email=f" {(person['email'] or 'none@x').upper()} "),
            PersonQuery(student_number="no-such-number"),
        ):
            assert connector.find_people(query) == find_people_in(whole, query), query


# -- OneRoster CSV: a filtered scan --------------------------------------------------------------

USERS_HEADER = (
    "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,"
    "givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password"
)


def write_set(folder: Path, users: list[str], enrollments: list[str]) -> Path:
    """A OneRoster 1.1 bulk set (one school, two classes) with these users and enrollments."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "manifest.csv": "propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\n",
        "orgs.csv": "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\n"
        "d1,,,District,district,D1,\ns1,,,North,school,S1,d1\n",
        "courses.csv": "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,"
        "grades,orgSourcedId,subjects,subjectCodes\nco1,,,,Reading,RD,,s1,,\n",
        "classes.csv": "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,"
        "classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods\n"
        "cl1,,,Reading A,,co1,RA,scheduled,,s1,,,,\ncl2,,,Reading B,,co1,RB,scheduled,,s1,,,,\n",
        "users.csv": "\n".join([USERS_HEADER, *users]) + "\n",
        "enrollments.csv": "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,"
        "userSourcedId,role,primary,beginDate,endDate\n" + "\n".join(enrollments) + "\n",
    }
    for name, content in files.items():
        (folder / name).write_text(content, encoding="utf-8")
    return folder


def user(sis: str, role: str, given: str, family: str, agents: str = "", **extra: str) -> str:
    number, email = extra.get("number", ""), extra.get("email", "")
    return (
        f'{sis},,,true,s1,{role},{sis},,"{given}","{family}",,{number},{email},,,"{agents}",'
        f"{extra.get('grade', '')},"
    )


FAMILY_CSV = [
    user("st1", "student", "Ana", "Lopez", "p1", number="1001", email="Ana.Lopez@Example.org"),
    user("st5", "student", "Mia", "Lopez", "p1,p3", number="1005"),
    user("p1", "parent", "Eva", "Lopez", "st1", email="eva@example.org"),
    user("p3", "guardian", "Raul", "Diaz", "", email="raul@example.org"),  # listed by Mia only
    user("st6", "student", "Ána", "López", "", number="1006"),
    user("te1", "teacher", "Gus", "Hale", "", email="gus@example.org"),
]
FAMILY_ENROLLMENTS = [
    "e1,,,cl1,s1,st1,student,false,,",
    "e2,,,cl2,s1,st5,student,false,,",
    "e3,,,cl1,s1,te1,teacher,true,,",
    "e4,,,cl2,s1,st6,student,false,,",
]


def csv_connector(location: Path) -> Connector:
    settings = CustomerSettings(
        customer_id="lopez-usd",
        name="Lopez USD",
        environment="staging",
        bookmarked={"customer_id": 1, "database_url": "env:UNUSED"},
        source={"type": "oneroster_csv", "location": str(location)},
        path=location.parent / "lopez-usd.json",
    )
    return source_connector(settings, CredentialResolver({}), AuditLog(None))


@pytest.mark.parametrize("zipped", [False, True])
def test_csv_finds_people_and_their_neighbourhood(tmp_path: Path, zipped: bool) -> None:
    location = write_set(tmp_path / "set", FAMILY_CSV, FAMILY_ENROLLMENTS)
    if zipped:
        location = Path(shutil.make_archive(str(tmp_path / "set"), "zip", location))
    connector = csv_connector(location)
    find = lambda **q: sis_ids(connector.find_people(PersonQuery(**q)))  # noqa: E731
    assert find(name="ana lopez") == ["st1", "st6"]  # accents and case: both
    assert find(name="López, Ána") == ["st1", "st6"]
    assert find(student_number=" 1005") == ["st5"]
    assert find(email="ANA.LOPEZ@example.org") == ["st1"]
    assert find(parent_email="raul@example.org") == ["p3"]
    assert find(parent_email="gus@example.org") == []
    assert find(sourced_id="nobody") == []
    ana = connector.fetch_people(["st1"])
    # Ana, her mother, her sister (who lists the mother too) and the sister's guardian
    assert sorted(ana.users["sis_id"]) == ["p1", "p3", "st1", "st5"]
    assert sorted(ana.enrollments["sis_id"]) == ["e1", "e2"]
    assert sorted(ana.classes["sis_id"]) == ["cl1", "cl2"]
    assert ana.schools["sis_id"].to_list() == ["s1"]
    scope = ana.meta["scope"]
    assert scope["narrow"] is True and scope["people"] == ["st1"]
    assert "enrollments.csv 2 of 4 rows" in scope["reads"]
    whole = connector.fetch_roster()
    records = connector.fetch_records(classes=["cl2", "cl9"], schools=["s1", "d1"])
    assert_same_slice(records, records_of(whole, ["cl2", "cl9"], ["s1", "d1"]))
    assert records.classes["school_sis_id"].to_list() == ["s1"]
    for people in (["st1"], ["p3"], ["te1"], ["st6", "p1"], ["nobody"]):
        assert_same_slice(connector.fetch_people(people), whole.for_people(people))


def test_csv_irregular_file_is_read_whole_and_said_so(tmp_path: Path) -> None:
    """Trailing empty fields on a row (an exporter's extra commas: tolerated) send
    users.csv to the exact reader, read whole; bad input stays located."""
    users = [*FAMILY_CSV[:-1], FAMILY_CSV[-1] + ",,"]
    connector = csv_connector(write_set(tmp_path / "set", users, FAMILY_ENROLLMENTS))
    ana = connector.fetch_people(["st1"])
    assert sorted(ana.users["sis_id"]) == ["p1", "p3", "st1", "st5"]
    assert ana.meta["scope"]["narrow"] is False
    assert "read whole (irregular files): users.csv" in ana.meta["scope"]["reads"]

    bad = [*FAMILY_CSV, "st9,bogus,,true,s1,student,st9,,Al,Bad,,,,,,,,"]
    connector = csv_connector(write_set(tmp_path / "bad", bad, FAMILY_ENROLLMENTS))
    with pytest.raises(SourceDataError, match=r"users.csv, line 8, column 2 \(status\)"):
        connector.fetch_people(["st9"])


def test_csv_lookups_reuse_what_the_connector_read_until_the_files_change(
    tmp_path: Path,
) -> None:
    """One connector serves one diagnosis's rounds: a row it read is not scanned for
    again (a scan of users.csv cost 0.2-0.9 s at 100k students), and a file changed in
    between is read afresh."""
    folder = write_set(tmp_path / "set", FAMILY_CSV, FAMILY_ENROLLMENTS)
    connector = csv_connector(folder)
    assert "enrollments.csv 2 of 4 rows" in connector.fetch_people(["st1"]).meta["scope"]["reads"]
    mia = connector.fetch_people(["st5"])  # the same family: everything read already
    reads = mia.meta["scope"]["reads"]
    assert reads.startswith("no file scanned; already read in this diagnosis: users.csv 4 rows")
    assert_same_slice(mia, connector.fetch_roster().for_people(["st5"]))
    assert sis_ids(connector.find_people(PersonQuery(student_number="1005"))) == ["st5"]

    users = folder / "users.csv"
    users.write_text(
        users.read_text(encoding="utf-8") + user("st7", "student", "Leo", "Lopez", "p1") + "\n",
        encoding="utf-8",
    )
    stat = users.stat()
    os.utime(users, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    eva = connector.fetch_people(["p1"])
    assert "st7" in eva.users["sis_id"].to_list()
    assert_same_slice(eva, connector.fetch_roster().for_people(["p1"]))


def test_csv_scan_keeps_only_the_neighbourhoods_rows_of_a_large_set(tmp_path: Path) -> None:
    """60,000 students in pairs of siblings under one parent, three enrollments each:
    the slice is built from the rows of one family, counted as the scan kept them
    (measured on 300,000 users and 900,000 enrollments: the scan's peak memory grows
    160 MB, 230 MB at three times that; the whole read's 670 MB)."""
    n = 60_000
    folder = write_set(tmp_path / "big", FAMILY_CSV, FAMILY_ENROLLMENTS)
    k = pl.int_range(0, n, eager=True)
    students = pl.DataFrame(
        {"id": "s" + k.cast(pl.String), "agent": "q" + (k // 2).cast(pl.String)}
    )
    parents = pl.DataFrame({"id": "q" + pl.int_range(0, n // 2, eager=True).cast(pl.String)})
    rows = [
        students.select(
            (
                pl.col("id")
                + ",,,true,s1,student,,"
                + ",Kid,"
                + pl.col("id")
                + ",,,,,,"
                + pl.col("agent")
                + ",05,"
            ).alias("line")
        ),
        parents.select(
            (pl.col("id") + ",,,true,s1,parent,,,Pa," + pl.col("id") + ",,,,,,,,").alias("line")
        ),
    ]
    with (folder / "users.csv").open("a", encoding="utf-8") as out:
        for frame in rows:
            out.write("\n".join(frame["line"]) + "\n")
    enrollments = pl.DataFrame({"k": pl.int_range(0, 3 * n, eager=True)}).select(
        (
            "x"
            + pl.col("k").cast(pl.String)
            + ",,,cl1,s1,s"
            + (pl.col("k") // 3).cast(pl.String)
            + ",student,false,,"
        ).alias("line")
    )
    with (folder / "enrollments.csv").open("a", encoding="utf-8") as out:
        out.write("\n".join(enrollments["line"]) + "\n")

    family = csv_connector(folder).fetch_people(["s10"])

    assert sorted(family.users["sis_id"]) == ["q5", "s10", "s11"]
    assert family.enrollments.height == 6
    reads = family.meta["scope"]["reads"]
    total_users = n + n // 2 + len(FAMILY_CSV)
    # users.csv scanned once for its lookup columns, then only the chunk holding the family
    assert f"names only) {total_users:,} of {total_users:,} rows" in reads
    parsed = int(reads.split(", users.csv 3 of ")[1].split(" rows")[0].replace(",", ""))
    assert parsed < total_users
    # the last parent's row is in the file's last chunk (parsed alone, without the header)
    connector = csv_connector(folder)
    last = connector.find_people(PersonQuery(sourced_id=f"q{n // 2 - 1}"))
    assert [(m.sis_id, m.name, m.role) for m in last] == [
        (f"q{n // 2 - 1}", f"Pa q{n // 2 - 1}", "parent")
    ]
    family = connector.fetch_people([f"s{n - 1}"])
    assert sorted(family.users["sis_id"]) == [f"q{n // 2 - 1}", f"s{n - 2}", f"s{n - 1}"]
    assert f"enrollments.csv 6 of {3 * n + len(FAMILY_ENROLLMENTS):,} rows" in reads
    assert family.meta["scope"]["narrow"] is True


def test_classlink_proxy_reads_a_neighbourhood_like_any_oneroster_server(
    family_server: OneRosterServer,
) -> None:
    connector = make_connector(proxy(family_server))
    assert connector.narrow_lookup is True
    ana = connector.fetch_people(["st1"])
    assert sorted(ana.users["sis_id"]) == ["p1", "p3", "st1", "st5"]
    assert whole_collections(family_server) == []
    assert sis_ids(connector.find_people(PersonQuery(student_number="1005"))) == ["st5"]


def test_csv_name_prefilter_is_the_shared_name_key() -> None:
    """The scan's vectorized name test keeps exactly the rows `name_matches` accepts."""
    from reconciliation.connectors.oneroster_csv import _name_filter

    names = [
        ("José", "García"),
        (" Mary  Ann", "de la Cruz,"),
        (None, "Solo"),
        ("ANN", "LEE"),
        ("Strauß", "Max"),
        ("Ann\tB", "Lee"),
    ]
    frame = pl.DataFrame({"givenName": [g for g, _ in names], "familyName": [f for _, f in names]})
    for query in (
        "jose garcia",
        "De La Cruz, Mary Ann",
        "solo",
        "lee, ann",
        "max strauss",
        "ann b lee",
        "ann lee",
    ):
        kept = _name_filter(name_key(query))(frame).rows()
        assert kept == [(g, f) for g, f in names if name_matches(query, g, f)], query
