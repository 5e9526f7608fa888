"""OneRoster REST source (1.1 and 1.2): the SIS read over its API, into the canonical roster.

The HTTP work (OAuth 1.0a / OAuth 2, retries, concurrent paging that refuses partial
reads) lives in `oneroster_rest.py`; this module says WHAT to read and maps the JSON
records onto the OneRoster CSV field names that `oneroster_model.build_source_roster`
reads, so the REST and CSV connectors are judged by one set of sync rules.

JSON shapes handled (1.1 and 1.2, and the quirks of real servers):
- references `{href, sourcedId, type}` (or a bare sourcedId string);
- 1.1 users: `role`, `orgs[]`; 1.2 users: `roles[]` (`roleType`, `role`, `org`),
  `primaryOrg`; both: `agents[]`, `grades[]`;
- `enabledUser` as the string "true"/"false" (spec) or a JSON boolean;
- an empty `roles: []` (the user gets no synced role; the rules report it).

`fetch_student` reads one student with a handful of requests (the record, its agents,
parents that list it, its enrollments, their classes, courses and schools) instead of
the whole district. An id the server does not know gives an empty roster with
`meta["not_found"]`, as with every connector, so a diagnosis can say "not in the SIS";
that is only concluded once the server has shown it serves users (a wrong base_url
raises). Referenced records the server lacks are left out and named in `meta["notes"]`.

`fetch_people` reads a diagnosis's neighbourhood the same way, never a whole collection:
each person's record, three steps along the links (a record's `agents`, and
`filter=agents.sourcedId=` for users listing it), everyone's enrollments by filter, and
their classes, courses and orgs by id. `find_people` uses `users/{id}` and `filter=` on
`identifier` and `email`; a server's filter compares exactly, so a name (accents, case) is
matched on the users collection, as is an email the filter does not find.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from reconciliation.audit import AuditEvent
from reconciliation.connectors.base import ConnectorError, SourceConnector, SourceDataError
from reconciliation.connectors.oneroster_rest import (
    Authenticator,
    ClientOptions,
    OAuth1Authenticator,
    OAuth2ClientCredentials,
    OneRosterApiError,
    OneRosterClient,
    parallel_map,
)
from reconciliation.connectors.people import (
    PersonMatch,
    PersonQuery,
    find_people_in,
    records_of,
    with_scope,
)
from reconciliation.credentials import CredentialError, Secret
from reconciliation.roster import Roster
from reconciliation.settings import CREDENTIAL_REF, REF_OR_VALUE, SECURE_URL

if TYPE_CHECKING:
    import polars as pl

SCOPE_PREFIX = {
    "1.1": "https://purl.imsglobal.org/spec/or/v1p1/scope/",
    "1.2": "https://purl.imsglobal.org/spec/or/v1p2/scope/",
}
#: enough for everything we read (no demographics)
DEFAULT_SCOPE = "roster-core.readonly"

#: tuning shared with the ClassLink connector (its own defaults may differ)
TUNING_PROPERTIES: dict[str, Any] = {
    "page_size": {
        "type": "integer",
        "minimum": 1,
        "maximum": 10_000,
        "default": 1000,
        "description": "rows asked per page (limit); a server that caps it is followed",
    },
    "concurrency": {
        "type": "integer",
        "minimum": 1,
        "maximum": 32,
        "default": 4,
        "description": "requests in flight at once",
    },
    "connect_timeout": {
        "type": "number",
        "exclusiveMinimum": 0,
        "default": 10,
        "description": "seconds",
    },
    "read_timeout": {
        "type": "number",
        "exclusiveMinimum": 0,
        "default": 60,
        "description": "seconds to wait for a response",
    },
    "max_retries": {
        "type": "integer",
        "minimum": 0,
        "maximum": 20,
        "default": 5,
        "description": "retries of a 429/502/503/504, timeout or connection error",
    },
    "retry_base_delay": {
        "type": "number",
        "minimum": 0,
        "default": 0.5,
        "description": "seconds; the backoff doubles from here, with jitter",
    },
    "retry_max_delay": {
        "type": "number",
        "minimum": 0,
        "default": 30,
        "description": "seconds; the longest backoff between two attempts",
    },
}

AUTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["method"],
    "additionalProperties": False,
    "properties": {
        "method": {
            "enum": ["oauth1", "oauth2"],
            "description": "oauth1: 1.1 signed requests; oauth2: client credentials "
            "(1.2, and 1.1 servers that offer it)",
        },
        "consumer_key": REF_OR_VALUE,
        "consumer_secret": CREDENTIAL_REF,
        "client_id": REF_OR_VALUE,
        "client_secret": CREDENTIAL_REF,
        "signature_method": {
            "enum": ["HMAC-SHA256", "HMAC-SHA1"],
            "default": "HMAC-SHA256",
            "description": "oauth1 only",
        },
        "token_url": {**SECURE_URL, "description": "oauth2 only"},
        "client_authentication": {
            "enum": ["basic", "post"],
            "default": "basic",
            "description": "oauth2: how the token request sends client_id and client_secret: "
            "HTTP Basic (the 1EdTech spec's) or form fields (servers that ask for them)",
        },
        "scopes": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "minItems": 1,
            "description": "oauth2; default: the version's roster-core.readonly scope",
        },
    },
    "allOf": [
        {
            "if": {"properties": {"method": {"const": "oauth1"}}},
            "then": {
                "anyOf": [
                    {"required": ["consumer_key", "consumer_secret"]},
                    {"required": ["client_id", "client_secret"]},
                ]
            },
        },
        {
            "if": {"properties": {"method": {"const": "oauth2"}}},
            "then": {"required": ["client_id", "client_secret", "token_url"]},
        },
    ],
}

#: per table, OneRoster CSV field -> the JSON field of a REST record that holds it.
#: 1.1 users carry `role` and `orgs`, 1.2 users `roles[]` (read into the `roles` table)
#: and `primaryOrg`; a user has whichever its version has, the rest reads as blank.
FIELD_MAP: dict[str, dict[str, str]] = {
    "orgs": {
        "sourcedId": "sourcedId",
        "status": "status",
        "name": "name",
        "type": "type",
        "identifier": "identifier",
    },
    "users": {
        "sourcedId": "sourcedId",
        "status": "status",
        "enabledUser": "enabledUser",
        "orgSourcedIds": "orgs",
        "role": "role",
        "username": "username",
        "givenName": "givenName",
        "familyName": "familyName",
        "identifier": "identifier",
        "email": "email",
        "agentSourcedIds": "agents",
        "grades": "grades",
        "primaryOrgSourcedId": "primaryOrg",
    },
    "roles": {
        "userSourcedId": "userSourcedId",
        "status": "status",
        "roleType": "roleType",
        "role": "role",
        "orgSourcedId": "org",
    },
    "classes": {
        "sourcedId": "sourcedId",
        "status": "status",
        "title": "title",
        "courseSourcedId": "course",
        "classCode": "classCode",
        "schoolSourcedId": "school",
        "termSourcedIds": "terms",
    },
    "courses": {"sourcedId": "sourcedId", "status": "status", "courseCode": "courseCode"},
    "enrollments": {
        "sourcedId": "sourcedId",
        "status": "status",
        "classSourcedId": "class",
        "userSourcedId": "user",
        "role": "role",
        "beginDate": "beginDate",
        "endDate": "endDate",
    },
}
#: the collections a whole roster is built from
TABLES = ("orgs", "users", "classes", "courses", "enrollments")


# -- JSON records -> OneRoster record tables (CSV field names) ---------------------------


def _scalar(value: Any) -> str | None:
    """A field as text: strings as they are, JSON booleans as true/false, a reference
    `{sourcedId, ...}` as its sourcedId (blank handling is the model's)."""
    if value is None or value.__class__ is str:
        return value
    from reconciliation.connectors.oneroster_model import text

    return text(value)


def _list(value: Any) -> list[str] | None:
    """A list field: a list of strings or references (or one comma-separated string)."""
    if value is None:
        return None
    if value.__class__ is list and all(item.__class__ is str for item in value):
        return value
    if not isinstance(value, list | str):
        raise TypeError("is not a list")
    from reconciliation.connectors.oneroster_model import split_list

    return split_list(value)


def record_table(table: str, rows: Sequence[Any], url: str) -> pl.DataFrame:
    """A collection's JSON records as the String (list fields: List[String]) columns the
    model reads, built column by column: 100,000 users cost a second, not ten.

    A record that is not an object, or a list field that is not a list, is refused here,
    named by URL, position and field (the model would otherwise guess).
    """
    import polars as pl
    import pyarrow as pa

    from reconciliation.connectors.oneroster_model import LIST_FIELDS

    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise SourceDataError(f"{table} record #{index + 1} is not a JSON object", file=url)
    columns: dict[str, pl.Series] = {}
    for name, json_name in FIELD_MAP[table].items():
        values = [row.get(json_name) for row in rows]
        if name in LIST_FIELDS:
            converted = []
            for index, value in enumerate(values):
                try:
                    converted.append(_list(value))
                except TypeError:
                    raise SourceDataError(
                        f"{table} record #{index + 1}: {json_name} is not a list",
                        file=url,
                        field=json_name,
                        record=_sourced_id(rows[index]),
                    ) from None
            # via Arrow: polars builds a List column from Python lists one Series per row
            columns[name] = pl.Series(name, pa.array(converted, type=pa.list_(pa.string())))
        else:
            columns[name] = pl.Series(name, [_scalar(v) for v in values], dtype=pl.String())
    return pl.DataFrame(columns, height=len(rows))


def role_rows(users: Sequence[Any]) -> tuple[list[dict[str, Any]], list[int]]:
    """1.2 users' `roles[]` as rows of the 1.2 CSV `roles` file, and each row's user index."""
    rows, owners = [], []
    for index, user in enumerate(users):
        roles = user.get("roles") if isinstance(user, Mapping) else None
        for role in roles if isinstance(roles, list) else []:
            if isinstance(role, Mapping):
                rows.append({**role, "userSourcedId": user.get("sourcedId")})
                owners.append(index)
    return rows, owners


def _sourced_id(row: Any) -> str | None:
    value = row.get("sourcedId") if isinstance(row, Mapping) else None
    return value if isinstance(value, str) else None


def build_roster(
    customer_id: str,
    collections: Mapping[str, Sequence[Any]],
    urls: Mapping[str, str],
    *,
    as_of: date | None = None,
    meta: dict[str, Any] | None = None,
) -> Roster:
    """The canonical roster from REST collections (`orgs`, `users`, `classes`, `courses`,
    `enrollments`: lists of JSON records); `urls` name each collection's source in errors."""
    from reconciliation.connectors.oneroster_model import RecordError, build_source_roster

    users = collections.get("users", [])
    tables = {name: record_table(name, collections.get(name, []), urls[name]) for name in TABLES}
    roles, role_owner = role_rows(users)
    tables["roles"] = record_table("roles", roles, urls["users"])
    try:
        return build_source_roster(customer_id, **tables, as_of=as_of, meta=meta)
    except RecordError as exc:
        json_field = FIELD_MAP[exc.table].get(exc.field, exc.field)
        if exc.table == "roles":
            where, number, json_field = "users", role_owner[exc.row] + 1, f"roles[].{json_field}"
        else:
            where, number = exc.table, exc.row + 1
        raise SourceDataError(
            f"{where} record #{number}: {exc.message}",
            file=urls[where],
            field=json_field,
            record=exc.record,
        ) from None


# -- the connector ------------------------------------------------------------------------


class OneRosterApiConnector(SourceConnector):
    """A SIS that serves OneRoster 1.1 or 1.2 REST (`source.type = "oneroster_api"`)."""

    kind = "oneroster_api"
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["type", "base_url", "auth"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": "oneroster_api"},
            "base_url": {
                **SECURE_URL,
                "description": "up to the version, e.g. https://sis.example.org/ims/oneroster/v1p1 "
                "or .../ims/oneroster/rostering/v1p2",
            },
            "version": {
                "enum": ["1.1", "1.2"],
                "description": "default: 1.2 when base_url contains v1p2, else 1.1",
            },
            "auth": AUTH_SCHEMA,
            **TUNING_PROPERTIES,
        },
    }
    #: single records and `filter=` reads for a person (see `fetch_people`)
    narrow_lookup: ClassVar[bool] = True
    #: collection -> (path, JSON key) read for a whole roster
    COLLECTIONS: ClassVar[dict[str, tuple[str, str]]] = {
        "orgs": ("orgs", "orgs"),
        "users": ("users", "users"),
        "classes": ("classes", "classes"),
        "courses": ("courses", "courses"),
        "enrollments": ("enrollments", "enrollments"),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: OneRosterClient | None = None

    # -- settings -> client (ClassLink overrides these two and `version`) ---------------

    @property
    def version(self) -> str:
        configured = self.config.get("version")
        if configured:
            return str(configured)
        return "1.2" if "v1p2" in str(self.config["base_url"]) else "1.1"

    def base_url(self) -> str:
        return str(self.config["base_url"]).rstrip("/")

    def client_options(self) -> ClientOptions:
        config, defaults = self.config, TUNING_PROPERTIES
        return ClientOptions(
            base_url=self.base_url(),
            **{name: config.get(name, defaults[name]["default"]) for name in defaults},
        )

    def authenticator(self) -> Authenticator:
        auth = self.config["auth"]
        options = self.client_options()
        if auth["method"] == "oauth1":
            return OAuth1Authenticator(
                self._credential(auth.get("consumer_key") or auth["client_id"], secret=False),
                self._credential(auth.get("consumer_secret") or auth["client_secret"]),
                auth.get("signature_method", "HMAC-SHA256"),
            )
        scopes = auth.get("scopes") or [SCOPE_PREFIX[self.version] + DEFAULT_SCOPE]
        return OAuth2ClientCredentials(
            auth["token_url"],
            self._credential(auth["client_id"], secret=False),
            self._credential(auth["client_secret"]),
            scopes,
            options,
            client_authentication=auth.get("client_authentication", "basic"),
        )

    def _credential(self, reference: str, *, secret: bool = True) -> Secret:
        try:
            if secret:
                return self.credentials.resolve(reference)
            return self.credentials.value(reference)
        except CredentialError as exc:
            raise ConnectorError(f"{self.kind}: {exc}") from None

    @property
    def client(self) -> OneRosterClient:
        """One client per connector, so an OAuth 2 token is reused across reads."""
        if self._client is None:
            self._client = OneRosterClient(self.client_options(), self.authenticator())
        return self._client

    def auth_method(self) -> str:
        return str(self.config["auth"]["method"])

    def describe(self) -> str:
        return f"{self.kind} OneRoster {self.version} at {self.base_url()} ({self.auth_method()})"

    # -- reads ------------------------------------------------------------------------------

    def fetch_roster(self) -> Roster:
        client = self.client
        before = client.stats.as_dict()
        wanted = {name: (path, key, {}) for name, (path, key) in self.COLLECTIONS.items()}
        try:
            collections = client.read_collections(wanted)
        except OneRosterApiError as exc:
            if exc.status not in (403, 404) or "/orgs" not in exc.url:
                raise
            # some servers expose schools but not orgs (or not to this client)
            wanted["orgs"] = ("schools", "orgs", {})
            collections = client.read_collections(wanted)
        urls = {name: client.url(path) for name, (path, _, _) in wanted.items()}
        stats = _delta(before, client.stats.as_dict())
        roster = build_roster(
            self.settings.customer_id,
            collections,
            urls,
            meta={
                "source": self.describe(),
                "oneroster_version": self.version,
                "record_counts": {name: len(rows) for name, rows in collections.items()},
                "http": stats,
            },
        )
        self._audit(tuple(collections), sum(len(rows) for rows in collections.values()), stats)
        return roster

    def fetch_student(self, student_sis_id: str) -> Roster:
        """A handful of requests: the user, its agents, parents listing it, enrollments,
        classes, courses and orgs, then the same mapping as the whole roster."""
        client = self.client
        before = client.stats.as_dict()
        student = self._student(student_sis_id)
        urls = {name: client.url(path) for name, (path, _) in self.COLLECTIONS.items()}
        if student is None:
            return build_roster(
                self.settings.customer_id,
                {},
                urls,
                meta={
                    "source": self.describe(),
                    "not_found": student_sis_id,
                    "scope": {"students": [student_sis_id]},
                },
            )
        notes: list[str] = []
        agents = self._get_many("users", "user", _ids(student.get("agents")), notes)
        parents = self._agents_listing(student_sis_id, notes, listed_on="parent's")
        known = {student_sis_id, *(_sourced_id(a) for a in agents)}
        users = [student, *agents, *(p for p in parents if _sourced_id(p) not in known)]
        enrollments = self._student_enrollments(student_sis_id, notes)
        classes = self._get_many(
            "classes", "class", (i for e in enrollments for i in _ids(e.get("class"))), notes
        )
        courses = self._get_many(
            "courses", "course", (i for c in classes for i in _ids(c.get("course"))), notes
        )
        org_ids = [
            *(i for u in users for field in ("orgs", "primaryOrg") for i in _ids(u.get(field))),
            *(i for u in users for r in _roles(u) for i in _ids(r.get("org"))),
            *(i for c in classes for i in _ids(c.get("school"))),
        ]
        orgs = self._get_orgs(org_ids, notes)
        collections = {
            "orgs": orgs,
            "users": users,
            "classes": classes,
            "courses": courses,
            "enrollments": enrollments,
        }
        stats = _delta(before, client.stats.as_dict())
        roster = build_roster(
            self.settings.customer_id,
            collections,
            urls,
            meta={
                "source": self.describe(),
                "oneroster_version": self.version,
                "http": stats,
                **({"notes": notes} if notes else {}),
            },
        ).for_students([student_sis_id])
        self._audit(
            tuple(collections),
            sum(len(rows) for rows in collections.values()),
            stats,
            detail=f"one student: {student_sis_id}",
        )
        return roster

    def find_people(self, query: PersonQuery) -> list[PersonMatch]:
        """A sourcedId through `users/{id}`; a number or email through `filter=`
        (`identifier=`; `email=` as typed OR lower-case). A server's filter compares
        exactly, so when it finds nobody (or is refused) the users collection is listed
        and the shared matching decides: never a false "absent". A name is always matched
        on the users collection: an exact `givenName=/familyName=` filter would miss the
        accent and case variants a support ticket's spelling differs by (and so hide a
        candidate of an ambiguous name)."""
        client = self.client
        before = client.stats.as_dict()
        notes: list[str] = []
        if query.kind == "sourced_id":
            record = self._student(query.value.strip())
            users = [record] if record is not None else []
        else:
            users = []
            for expression in _filters_for(query):
                found = self._filtered("users", "users", expression)
                if found is None:  # the server refuses the filter
                    users = []
                    break
                users += found
            if query.kind == "name" or not self._matching(users, query):
                users = client.read_collection("users", "users")
        users = self._matching(users, query)
        orgs = self._get_orgs(_org_ids(users), notes)
        found = find_people_in(self._records_roster({"users": users, "orgs": orgs}, notes), query)
        stats = _delta(before, client.stats.as_dict())
        self._audit(("users",), len(users), stats, detail=f"person lookup by {query.kind}")
        return found

    def _matching(self, users: list[dict[str, Any]], query: PersonQuery) -> list[dict[str, Any]]:
        """The records (one per sourcedId) the shared matching accepts for the query."""
        if not users:
            return []
        found = {
            m.sis_id for m in find_people_in(self._records_roster({"users": users}, []), query)
        }
        unique = {_sourced_id(u): u for u in users}
        return [record for sis_id, record in unique.items() if sis_id in found]

    def fetch_people(self, sis_ids: Sequence[str]) -> Roster:
        """The people's neighbourhood from single records and filtered reads, never a
        whole collection: each person's record (`users/{id}`), then three steps along
        the links, a link being listed on either side (the record's `agents`, and
        `filter=agents.sourcedId=` for users listing it); the enrollments of everyone
        in the slice (`filter=user.sourcedId=`), their classes, courses and orgs. Cut to
        exactly `Roster.for_people`. A server that refuses filters is noted in `reads`."""
        ids = list(dict.fromkeys(sis_ids))
        client = self.client
        before = client.stats.as_dict()
        notes: list[str] = []
        records: dict[str, dict[str, Any]] = {}
        for sis_id in ids:
            record = self._student(sis_id)
            if record is not None:
                records[sis_id] = record
        frontier, expanded = set(records), set()
        for _step in range(3):
            neighbours: set[str] = set()
            for sis_id in sorted(frontier - expanded):
                expanded.add(sis_id)
                neighbours |= set(_ids(records[sis_id].get("agents")))
                for user in self._agents_listing(sis_id, notes):
                    records.setdefault(_sourced_id(user), user)
                    neighbours.add(_sourced_id(user))
            new = sorted(neighbours - set(records))
            for user in self._get_many("users", "user", new, notes):
                records.setdefault(_sourced_id(user), user)
            frontier = neighbours & set(records)
        users = list(records.values())
        people = self._records_roster({"users": users}, notes).for_people(ids)
        slice_ids = set(people.users["sis_id"].drop_nulls().to_list())
        users = [u for u in users if _sourced_id(u) in slice_ids]
        enrollments = [
            e for sis_id in sorted(slice_ids) for e in self._student_enrollments(sis_id, notes)
        ]
        classes = self._get_many(
            "classes", "class", (i for e in enrollments for i in _ids(e.get("class"))), notes
        )
        courses = self._get_many(
            "courses", "course", (i for c in classes for i in _ids(c.get("course"))), notes
        )
        org_ids = [*_org_ids(users), *(i for c in classes for i in _ids(c.get("school")))]
        collections = {
            "orgs": self._get_orgs(org_ids, notes),
            "users": users,
            "classes": classes,
            "courses": courses,
            "enrollments": enrollments,
        }
        stats = _delta(before, client.stats.as_dict())
        roster = self._records_roster(collections, notes, stats).for_people(ids)
        self._audit(
            tuple(collections),
            sum(len(rows) for rows in collections.values()),
            stats,
            detail=f"neighbourhood of {len(ids)} person(s)",
        )
        refused = [n for n in notes if "refused" in n or "in full" in n]
        reads = f"{stats.get('requests', 0)} requests: single records and filtered reads"
        if refused:
            reads += "; " + "; ".join(refused)
        return with_scope(roster, ids, narrow=not refused, reads=reads)

    def fetch_records(self, *, classes: Sequence[str] = (), schools: Sequence[str] = ()) -> Roster:
        """Classes (`classes/{id}`, their courses) and schools (`orgs/{id}`, else
        `schools/{id}`) as single records."""
        client = self.client
        before = client.stats.as_dict()
        notes: list[str] = []
        class_rows = self._get_many("classes", "class", classes, notes)
        courses = self._get_many(
            "courses", "course", (i for c in class_rows for i in _ids(c.get("course"))), notes
        )
        org_ids = [*schools, *(i for c in class_rows for i in _ids(c.get("school")))]
        collections = {
            "orgs": self._get_orgs(org_ids, notes),
            "classes": class_rows,
            "courses": courses,
        }
        stats = _delta(before, client.stats.as_dict())
        self._audit(tuple(collections), sum(len(r) for r in collections.values()), stats, "records")
        return records_of(self._records_roster(collections, notes, stats), classes, schools)

    def _records_roster(
        self,
        collections: Mapping[str, list[dict[str, Any]]],
        notes: list[str],
        stats: Mapping[str, int] | None = None,
    ) -> Roster:
        """Records read one by one -> the canonical roster, as the whole roster maps them."""
        urls = {name: self.client.url(path) for name, (path, _) in self.COLLECTIONS.items()}
        meta: dict[str, Any] = {"source": self.describe(), "oneroster_version": self.version}
        if stats is not None:
            meta["http"] = dict(stats)
        if notes:
            meta["notes"] = list(dict.fromkeys(notes))
        return build_roster(self.settings.customer_id, collections, urls, meta=meta)

    def _student(self, student_id: str) -> dict[str, Any] | None:
        """The student's record, or None when the server does not know the id.

        A 404 is only believed once the server has shown that it serves users: a wrong
        base_url, or a server without `users/{id}`, must not pass for "not in the SIS".
        """
        client = self.client
        student = client.get_record(f"users/{quote(student_id, safe='')}", "user")
        if student is not None:
            return student
        found = self._filtered("users", "users", f"sourcedId='{_quoted(student_id)}'")
        if found is None:
            client.get("users", {"limit": 1, "offset": 0}).document()  # raises if no users
            return None
        return next((u for u in found if _sourced_id(u) == student_id), None)

    def _get_many(
        self, collection: str, key: str, ids: Iterable[str], notes: list[str]
    ) -> list[dict[str, Any]]:
        """Single records by sourcedId, concurrently (see `_each`)."""
        client = self.client
        return self._each(
            collection,
            lambda i: client.get_record(f"{collection}/{quote(i, safe='')}", key),
            ids,
            notes,
        )

    def _get_orgs(self, ids: Iterable[str], notes: list[str]) -> list[dict[str, Any]]:
        """Orgs by sourcedId; those `orgs/{id}` does not give (a server that offers only
        schools, or refuses orgs to this client) are asked of `schools/{id}`."""
        client = self.client

        def org(sourced_id: str) -> dict[str, Any] | None:
            sid = quote(sourced_id, safe="")
            try:
                record = client.get_record(f"orgs/{sid}", "org")
            except OneRosterApiError as exc:
                if exc.status != 403:
                    raise
                record = None
            return record or client.get_record(f"schools/{sid}", "org")

        return self._each("orgs", org, ids, notes)

    def _each(
        self,
        collection: str,
        fetch: Callable[[str], dict[str, Any] | None],
        ids: Iterable[str],
        notes: list[str],
    ) -> list[dict[str, Any]]:
        """`fetch` per distinct id, concurrently. Ids the server does not know are left out
        (the rules report the dangling reference) and named in `notes`."""
        wanted = sorted(set(ids))
        found = parallel_map(self.client, fetch, wanted)
        missing = [i for i, record in zip(wanted, found, strict=True) if record is None]
        if missing:
            notes.append(f"{collection} not on the server: {', '.join(missing[:20])}")
        return [record for record in found if record is not None]

    def _filtered(self, path: str, key: str, expression: str) -> list[dict[str, Any]] | None:
        """A filtered read, or None when the server refuses the filter (400/422)."""
        try:
            return self.client.read_collection(path, key, {"filter": expression})
        except OneRosterApiError as exc:
            if exc.status in (400, 422):
                return None
            raise

    def _agents_listing(
        self, sourced_id: str, notes: list[str], listed_on: str = "other person's"
    ) -> list[dict[str, Any]]:
        """Users whose `agents` list this user: a link listed on the parent's side only is
        the commonest one-sided link, and a diagnosis must not miss it."""
        found = self._filtered("users", "users", f"agents.sourcedId='{_quoted(sourced_id)}'")
        if found is None:
            notes.append(
                "the server refused a filter on agents: links listed only on the "
                f"{listed_on} side are not included"
            )
            return []
        return [u for u in found if sourced_id in _ids(u.get("agents"))]

    def _student_enrollments(self, student_id: str, notes: list[str]) -> list[dict[str, Any]]:
        """Enrollments by filter; else the student's classes and each class's enrollments;
        else (a server without those endpoints) the whole enrollments collection."""
        client = self.client
        rows = self._filtered(
            "enrollments", "enrollments", f"user.sourcedId='{_quoted(student_id)}'"
        )
        if rows is not None:
            return [e for e in rows if student_id in _ids(e.get("user"))]
        sid = quote(student_id, safe="")
        try:
            classes = client.read_collection(f"students/{sid}/classes", "classes")
            per_class = parallel_map(
                client,
                lambda c: client.read_collection(
                    f"schools/{quote(_ids(c.get('school'))[0], safe='')}/classes/"
                    f"{quote(str(c.get('sourcedId')), safe='')}/enrollments",
                    "enrollments",
                ),
                [c for c in classes if _ids(c.get("school"))],
            )
            rows = [e for chunk in per_class for e in chunk]
            notes.append("enrollments read per class (the server refused the user filter)")
        except OneRosterApiError as exc:
            if exc.status != 404:
                raise
            rows = client.read_collection("enrollments", "enrollments")
            notes.append("enrollments read in full (no filter, no nested endpoints)")
        return [e for e in rows if student_id in _ids(e.get("user"))]

    def test_connection(self) -> str:
        reply = self.client.get("orgs", {"limit": 1, "offset": 0})
        reply.document()  # a JSON answer, not a login page
        total = reply.total(self.client.options.total_headers)
        count = f"{total} orgs" if total is not None else "orgs readable (no total sent)"
        return f"{self.describe()}: authenticated, {count}"

    def _audit(
        self, tables: tuple[str, ...], rows: int, stats: Mapping[str, int], detail: str = ""
    ) -> None:
        summary = f"{stats.get('requests', 0)} requests, {stats.get('retries', 0)} retries"
        self.audit.record(
            AuditEvent(
                customer_id=self.settings.customer_id,
                system=self.kind,
                action="request",
                tables=tables,
                row_count=rows,
                detail=f"{detail}; {summary}" if detail else summary,
            )
        )


def _ids(value: Any) -> list[str]:
    """sourcedIds of a reference, a list of references, or bare id strings."""
    from reconciliation.connectors.oneroster_model import split_list

    if isinstance(value, Mapping):
        value = [value]
    if value is not None and not isinstance(value, list | str):
        return []
    return split_list(value)


def _roles(user: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    roles = user.get("roles")
    return [r for r in roles if isinstance(r, Mapping)] if isinstance(roles, list) else []


def _quoted(value: str) -> str:
    """A value inside a OneRoster filter's single quotes."""
    return value.replace("'", "''")


def _delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    return {name: after[name] - before.get(name, 0) for name in after}


def _filters_for(query: PersonQuery) -> list[str]:
    """The `filter=` expressions that find a person by number or email, exactly as a
    server compares: an email as typed OR lower-case. None for a name (see find_people)."""
    value = query.value.strip()
    if query.kind == "student_number":
        return [f"identifier='{_quoted(value)}'"]
    if query.kind in ("email", "parent_email"):
        forms = dict.fromkeys([value, value.lower()])
        return [" OR ".join(f"email='{_quoted(form)}'" for form in forms)]
    return []


def _org_ids(users: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every org the users name (1.1 `orgs`, 1.2 `primaryOrg` and roles' orgs)."""
    return [
        *(i for u in users for field in ("orgs", "primaryOrg") for i in _ids(u.get(field))),
        *(i for u in users for r in _roles(u) for i in _ids(r.get("org"))),
    ]
