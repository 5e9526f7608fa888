"""The OneRoster REST connector against a local OneRoster server that checks OAuth itself.

Every test talks HTTP to `oneroster_server` (reconciliation_tests/fixtures): signatures,
tokens, paging and faults are the server's real behaviour, nothing in our code is patched.
Backoff waits are kept tiny through the connector's own settings.
"""

from __future__ import annotations

import base64
import email.utils
import json
import re
import time
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import requests

from reconciliation.audit import AuditLog
from reconciliation.connectors import SOURCE_CONNECTORS, ConnectorError, SourceDataError
from reconciliation.connectors.oneroster_api import OneRosterApiConnector, build_roster
from reconciliation.connectors.oneroster_rest import IncompleteReadError, OneRosterApiError
from reconciliation.credentials import CredentialResolver, quoted
from reconciliation.settings import CustomerSettings, validate_document
from reconciliation_tests.fixtures.oneroster_server import (
    OneRosterServer,
    load_json_folder,
    ref,
)

JAPAN_SAMPLES = Path(__file__).parent.parent / "data" / "oneroster" / "japan-da2022-1.2-rest-json"
ENV = {
    "OR_KEY": "test-key",
    "OR_SECRET": "test-secret",
    "OR_CLIENT": "test-client",
    "OR_CLIENT_SECRET": "client-secret",
    "CL_TOKEN": "proxy-token",
    "WRONG_SECRET": "not-the-secret-9f2c",
}
FAST = {"retry_base_delay": 0.001, "retry_max_delay": 0.01}


def make_connector(
    source: dict[str, Any], env: dict[str, str] | None = None, audit: AuditLog | None = None
) -> Any:
    """A connector of `source["type"]` built as the pipeline builds it: valid settings,
    the registry, credentials resolved from references."""
    assert validate(source) == []
    settings = CustomerSettings(
        "demo-district",
        "Demo",
        "staging",
        {"customer_id": 1},
        source,
        Path("/tmp/settings/demo-district.json"),
    )
    connector_class = SOURCE_CONNECTORS[source["type"]]
    return connector_class(
        settings, CredentialResolver({**ENV, **(env or {})}), audit or AuditLog(None)
    )


def oauth1(server: OneRosterServer, **extra: Any) -> dict[str, Any]:
    auth = {
        "method": "oauth1",
        "consumer_key": "env:OR_KEY",
        "consumer_secret": "env:OR_SECRET",
        **extra.pop("auth", {}),
    }
    return {"type": "oneroster_api", "base_url": server.v1p1_url, "auth": auth, **FAST, **extra}


def oauth2(server: OneRosterServer, **extra: Any) -> dict[str, Any]:
    auth = {
        "method": "oauth2",
        "client_id": "env:OR_CLIENT",
        "client_secret": "env:OR_CLIENT_SECRET",
        "token_url": server.token_url,
        **extra.pop("auth", {}),
    }
    return {"type": "oneroster_api", "base_url": server.v1p2_url, "auth": auth, **FAST, **extra}


def rows(frame: pl.DataFrame, *columns: str) -> set[tuple[Any, ...]]:
    return set(frame.select(columns).iter_rows())


def validate(source: dict[str, Any]) -> list[str]:
    document = {
        "customer_id": "demo",
        "name": "Demo",
        "environment": "staging",
        "bookmarked": {"customer_id": 1, "database_url": "env:DB"},
        "source": source,
    }
    return [f"{e.where}: {e.message}" for e in validate_document(Path("demo.json"), document)]


# -- settings ------------------------------------------------------------------------------


def test_settings_schema_accepts_both_auth_methods_and_refuses_literal_secrets() -> None:
    base = {"type": "oneroster_api", "base_url": "https://sis.example.org/ims/oneroster/v1p1"}
    assert (
        validate(
            {
                **base,
                "auth": {
                    "method": "oauth1",
                    "consumer_key": "key",
                    "consumer_secret": "env:S",
                    "signature_method": "HMAC-SHA1",
                },
            }
        )
        == []
    )
    assert (
        validate(
            {
                **base,
                "version": "1.2",
                "page_size": 500,
                "concurrency": 8,
                "auth": {
                    "method": "oauth2",
                    "client_id": "env:C",
                    "client_secret": "env:S",
                    "token_url": "https://sis.example.org/token",
                    "scopes": ["https://purl.imsglobal.org/spec/or/v1p2/scope/roster.readonly"],
                },
            }
        )
        == []
    )
    literal = validate(
        {**base, "auth": {"method": "oauth1", "consumer_key": "k", "consumer_secret": "hunter22"}}
    )
    assert any(
        "$.source.auth.consumer_secret" in e and "credential reference" in e for e in literal
    )
    assert any(
        "token_url" in e
        for e in validate(
            {**base, "auth": {"method": "oauth2", "client_id": "c", "client_secret": "env:S"}}
        )
    )
    assert any(
        "unknown key 'pagesize'" in e
        for e in validate(
            {
                **base,
                "pagesize": 10,
                "auth": {"method": "oauth1", "consumer_key": "k", "consumer_secret": "env:S"},
            }
        )
    )


# -- OAuth 1.0a ----------------------------------------------------------------------------


def test_reads_a_1_1_roster_signed_with_hmac_sha256(oneroster_server: OneRosterServer) -> None:
    connector = make_connector(oauth1(oneroster_server, page_size=2))
    roster = connector.fetch_roster()

    assert rows(roster.schools, "sis_id", "state_id", "active") == {
        ("s1", "ST-0001", True),
        ("s2", "ST-0002", True),
    }
    assert rows(
        roster.users, "sis_id", "role", "role_raw", "school_sis_id", "grade", "active", "deleted"
    ) == {
        ("st1", "student", "student", "s1", "05", True, False),
        ("st2", "student", "student", "s2", "KG", True, False),
        ("st3", "student", "student", "s1", "03", False, True),
        ("st4", "student", "student", "s1", "12", False, False),  # enabledUser false
        ("p1", "parent", "parent", None, None, True, False),
        ("p2", "parent", "guardian", None, None, True, False),
        ("te1", "teacher", "teacher", "s1", None, True, False),
        ("ad1", "admin", "administrator", None, None, True, False),
        ("ai1", "other", "aide", "s1", None, True, False),
    }
    student = roster.users.filter(pl.col("sis_id") == "st1").row(0, named=True)
    assert (student["email_normalized"], student["student_number"]) == (
        "ana.lopez@example.org",
        "1001",
    )
    # p2 -> st2 is listed on the guardian's side only
    assert rows(roster.links, "parent_sis_id", "student_sis_id") == {("p1", "st1"), ("p2", "st2")}
    assert rows(roster.classes, "sis_id", "school_sis_id", "course_code", "term_sis_id") == {
        ("cl1", "s1", "MATH5", "t1"),
        ("cl2", "s2", "READK", "t1"),
        ("cl3", "s1", None, None),  # its course is not in the roster: no course code
    }
    assert rows(roster.enrollments, "sis_id", "user_sis_id", "role", "active") == {
        ("e1", "st1", "student", True),
        ("e2", "st1", "student", True),
        ("e3", "st2", "student", True),
        ("e4", "te1", "teacher", True),
        ("e5", "st3", "student", False),
        ("e6", "st1", "student", False),
    }
    assert roster.meta["oneroster_version"] == "1.1"
    assert roster.meta["record_counts"]["users"] == 9

    requests_seen = oneroster_server.resource_requests()
    assert {r.auth for r in requests_seen} == {"oauth"}
    assert all(r.status == 200 for r in requests_seen)
    assert {
        (r.query["limit"], r.query["offset"]) for r in oneroster_server.resource_requests("/users")
    } == {("2", "0"), ("2", "2"), ("2", "4"), ("2", "6"), ("2", "8")}


def test_hmac_sha1_when_the_server_only_knows_sha1(oneroster_server: OneRosterServer) -> None:
    oneroster_server.oauth1_methods = {"HMAC-SHA1"}
    sha1 = make_connector(oauth1(oneroster_server, auth={"signature_method": "HMAC-SHA1"}))
    assert sha1.fetch_roster().users.height == 9

    sha256 = make_connector(oauth1(oneroster_server))
    with pytest.raises(ConnectorError) as raised:
        sha256.test_connection()
    message = str(raised.value)
    assert "HTTP 401" in message and "unsupported signature method HMAC-SHA256" in message
    assert "auth.signature_method" in message


def test_wrong_secret_is_a_clear_401_without_the_secret_and_without_retries(
    oneroster_server: OneRosterServer,
) -> None:
    connector = make_connector(
        oauth1(oneroster_server, auth={"consumer_secret": "env:WRONG_SECRET"})
    )
    with pytest.raises(OneRosterApiError) as raised:
        connector.fetch_roster()
    error = raised.value
    assert error.status == 401
    assert f"{oneroster_server.v1p1_url}/" in str(error)
    assert "signature invalid" in str(error) and "auth.consumer_secret" in str(error)
    assert "not-the-secret-9f2c" not in str(error) and "test-key" not in str(error)
    # a 401 is never retried: at most one request per collection's first page (the
    # collections are read concurrently, and the first error cancels those not yet sent)
    requests_made = oneroster_server.resource_requests()
    paths = [r.path for r in requests_made]
    assert 1 <= len(paths) <= 5 and len(paths) == len(set(paths))
    assert all(r.status == 401 for r in requests_made)
    assert "****" in repr(connector.credentials.resolve("env:WRONG_SECRET"))


def test_the_server_checks_signatures_itself(oneroster_server: OneRosterServer) -> None:
    """The stand-in must refuse what a real server refuses, or client bugs would pass."""
    from authlib.integrations.requests_client import OAuth1Auth

    url = oneroster_server.v1p1_url + "/enrollments?filter=user.sourcedId%3D%27st1%27"
    signed = requests.Request("GET", url, auth=OAuth1Auth("test-key", "test-secret")).prepare()
    with requests.Session() as session:
        assert session.send(signed).status_code == 200
        assert session.send(signed).status_code == 401  # the same nonce twice: a replay
        altered = signed.copy()
        altered.url = url.replace("st1", "st2")
        assert session.send(altered).status_code == 401
        unsigned = session.get(url)
        assert unsigned.status_code == 401
        assert unsigned.json()["imsx_codeMajor"] == "failure"


def test_signed_query_parameters_and_a_base_url_with_a_trailing_slash(
    oneroster_server: OneRosterServer,
) -> None:
    """filter, fields and sort values that need percent-encoding (quotes, spaces, @, ',')
    are signed as sent; the server recomputes each signature."""
    source = {**oauth1(oneroster_server), "base_url": oneroster_server.v1p1_url + "/"}
    client = make_connector(source).client
    found = client.read_collection(
        "users",
        "users",
        {
            "filter": "email=' Ana.Lopez@Example.org '",
            "fields": "sourcedId,givenName,email",
            "sort": "familyName",
            "orderBy": "asc",
        },
    )
    assert [u["sourcedId"] for u in found] == ["st1"]
    (request,) = oneroster_server.resource_requests()
    assert request.path == "/ims/oneroster/v1p1/users" and request.status == 200
    # a two-clause filter the server does not support: refused after the signature passed
    with pytest.raises(OneRosterApiError, match=r"HTTP 400 \(invalid_filter_field\)"):
        client.read_collection(
            "users",
            "users",
            {"filter": "dateLastModified>'2026-08-01T00:00:00Z' AND status='active'"},
        )


# -- OAuth 2 -------------------------------------------------------------------------------


def test_reads_a_1_2_roster_with_client_credentials(oneroster_server: OneRosterServer) -> None:
    connector = make_connector(oauth2(oneroster_server, page_size=4))
    roster = connector.fetch_roster()
    assert rows(roster.users, "sis_id", "role", "school_sis_id") >= {
        ("st1", "student", "s1"),
        ("p2", "parent", None),
        ("te1", "teacher", "s1"),
        ("ad1", "admin", None),
    }
    assert rows(roster.links, "parent_sis_id", "student_sis_id") == {("p1", "st1"), ("p2", "st2")}
    assert oneroster_server.token_requests == 1
    assert {r.auth for r in oneroster_server.resource_requests()} == {"bearer"}
    granted = next(iter(oneroster_server.tokens.values()))[1]
    assert granted == {"https://purl.imsglobal.org/spec/or/v1p2/scope/roster-core.readonly"}


def test_oauth2_bad_client_and_bad_scope_are_clear(oneroster_server: OneRosterServer) -> None:
    wrong = make_connector(oauth2(oneroster_server, auth={"client_secret": "env:WRONG_SECRET"}))
    with pytest.raises(ConnectorError, match=r"invalid_client; check auth\.client_id") as raised:
        wrong.fetch_roster()
    assert "not-the-secret-9f2c" not in str(raised.value)
    bad_scope = make_connector(oauth2(oneroster_server, auth={"scopes": ["roster.everything"]}))
    with pytest.raises(ConnectorError, match="invalid_scope"):
        bad_scope.test_connection()
    assert oneroster_server.resource_requests() == []


@pytest.mark.parametrize("method", ["basic", "post"])
def test_oauth2_client_credentials_sent_the_way_the_server_takes_them(
    oneroster_server: OneRosterServer, method: str
) -> None:
    """RFC 6749 2.3.1: the spec's servers take HTTP Basic; some take only form fields."""
    oneroster_server.token_auth_methods = {method}
    other = {"basic": "post", "post": "basic"}[method]
    refused = make_connector(oauth2(oneroster_server, auth={"client_authentication": other}))
    with pytest.raises(ConnectorError, match=r"invalid_client.*auth\.client_authentication"):
        refused.test_connection()
    accepted = make_connector(oauth2(oneroster_server, auth={"client_authentication": method}))
    assert "3 orgs" in accepted.test_connection()


def test_oauth2_on_a_1_1_server_asks_for_1_1_scopes(oneroster_server: OneRosterServer) -> None:
    source = {**oauth2(oneroster_server), "base_url": oneroster_server.v1p1_url}
    assert make_connector(source).fetch_roster().users.height == 9
    granted = next(iter(oneroster_server.tokens.values()))[1]
    assert granted == {"https://purl.imsglobal.org/spec/or/v1p1/scope/roster-core.readonly"}
    assert {r.auth for r in oneroster_server.resource_requests()} == {"bearer"}


def test_token_requests_are_retried_like_the_rest(oneroster_server: OneRosterServer) -> None:
    oneroster_server.inject("status", path="/oauth/token", status=503, times=2)
    assert "3 orgs" in make_connector(oauth2(oneroster_server)).test_connection()
    assert oneroster_server.token_requests == 1  # the two 503s came before the token logic
    oneroster_server.inject("status", path="/oauth/token", status=503, times=None)
    with pytest.raises(OneRosterApiError, match=r"oauth/token: HTTP 503 after 3 attempts"):
        make_connector(oauth2(oneroster_server, max_retries=2)).test_connection()


def test_token_renewed_when_it_expires(oneroster_server: OneRosterServer) -> None:
    oneroster_server.token_lifetime = 1
    connector = make_connector(oauth2(oneroster_server))
    connector.test_connection()
    time.sleep(1.0)
    connector.test_connection()
    assert oneroster_server.token_requests == 2
    assert all(r.status == 200 for r in oneroster_server.resource_requests())


def test_token_revoked_mid_read_is_renewed_once(oneroster_server: OneRosterServer) -> None:
    oneroster_server.inject("expire_tokens", path="/users", after=1)
    connector = make_connector(oauth2(oneroster_server, page_size=2, concurrency=1))
    roster = connector.fetch_roster()
    assert roster.users.height == 9
    assert oneroster_server.token_requests == 2
    assert [r.status for r in oneroster_server.resource_requests()].count(401) == 1
    assert roster.meta["http"]["token_renewals"] == 1


def test_a_token_endpoint_without_a_token_answer_names_the_status(
    oneroster_server: OneRosterServer,
) -> None:
    page = b"<html>Unauthorized</html>"
    oneroster_server.inject("body", path="/oauth/token", status=401, body=page)
    connector = make_connector(oauth2(oneroster_server, auth={"client_secret": "env:WRONG_SECRET"}))
    with pytest.raises(OneRosterApiError, match=r"oauth/token: HTTP 401 without a token") as raised:
        connector.test_connection()
    assert "not-the-secret-9f2c" not in str(raised.value) and "auth.client_secret" in str(
        raised.value
    )
    oneroster_server.inject("body", path="/oauth/token", status=200, body=page)
    with pytest.raises(OneRosterApiError, match="the answer is not a token"):
        make_connector(oauth2(oneroster_server)).test_connection()


def test_a_token_refused_again_after_renewal_fails_clearly(
    oneroster_server: OneRosterServer,
) -> None:
    oneroster_server.inject("expire_tokens", path="/users", times=None)
    connector = make_connector(oauth2(oneroster_server, concurrency=1))
    with pytest.raises(OneRosterApiError) as raised:
        connector.fetch_roster()
    assert raised.value.status == 401
    assert "a renewed token was refused too; check auth.client_id" in str(raised.value)
    assert [r.status for r in oneroster_server.resource_requests("/users")] == [401, 401]


# -- paging --------------------------------------------------------------------------------


def test_pages_concurrently_up_to_the_limit(oneroster_server: OneRosterServer) -> None:
    oneroster_server.latency = 0.03
    make_connector(oauth1(oneroster_server, page_size=1, concurrency=3)).fetch_roster()
    assert oneroster_server.max_in_flight == 3
    assert oneroster_server.connections <= 3  # keep-alive: one connection per thread
    oneroster_server.max_in_flight = 0
    make_connector(oauth1(oneroster_server, page_size=1, concurrency=1)).fetch_roster()
    assert oneroster_server.max_in_flight == 1


def test_follows_link_next_when_no_total_is_sent(oneroster_server: OneRosterServer) -> None:
    oneroster_server.send_total = False
    roster = make_connector(oauth1(oneroster_server, page_size=2)).fetch_roster()
    assert roster.users.height == 9 and roster.enrollments.height == 6
    oneroster_server.send_links = False  # neither: ask for pages until a short one
    assert make_connector(oauth1(oneroster_server, page_size=2)).fetch_roster().users.height == 9


def test_a_next_link_to_an_empty_page_ends_the_read(oneroster_server: OneRosterServer) -> None:
    oneroster_server.send_total = False
    oneroster_server.next_past_end = True
    roster = make_connector(oauth1(oneroster_server, page_size=2)).fetch_roster()
    assert roster.users.height == 9
    offsets = sorted(int(r.query["offset"]) for r in oneroster_server.resource_requests("/users"))
    assert offsets == [0, 2, 4, 6, 8, 10]


def test_adopts_a_server_page_cap(oneroster_server: OneRosterServer) -> None:
    oneroster_server.max_limit = 3
    roster = make_connector(oauth1(oneroster_server, page_size=1000)).fetch_roster()
    assert roster.users.height == 9
    offsets = sorted(int(r.query["offset"]) for r in oneroster_server.resource_requests("/users"))
    assert offsets == [0, 3, 6]


def test_a_page_cut_short_is_an_error(oneroster_server: OneRosterServer) -> None:
    oneroster_server.inject("truncate", path="/users", offset=4, rows=1)
    connector = make_connector(oauth1(oneroster_server, page_size=2))
    with pytest.raises(
        IncompleteReadError,
        match=r"page cut short: 1 rows where 2 were due"
        r" \(offset 4 of 9\)",
    ) as raised:
        connector.fetch_roster()
    assert "/users?limit=2&offset=4" in str(raised.value)


def test_a_page_cut_short_is_an_error_without_a_total(oneroster_server: OneRosterServer) -> None:
    oneroster_server.send_total = False
    oneroster_server.inject("truncate", path="/users", offset=2, rows=1)
    with pytest.raises(IncompleteReadError, match="cut short"):
        make_connector(oauth1(oneroster_server, page_size=2)).fetch_roster()


def test_a_total_that_changes_mid_read_is_an_error(oneroster_server: OneRosterServer) -> None:
    oneroster_server.inject("total_change", path="/users", offset=6, delta=1)
    with pytest.raises(
        IncompleteReadError,
        match=r"users total changed during the read "
        r"\(9 at the first page, 10 now\)",
    ):
        make_connector(oauth1(oneroster_server, page_size=2)).fetch_roster()


def test_without_total_or_links_a_page_cap_is_learnt_and_the_end_confirmed(
    oneroster_server: OneRosterServer,
) -> None:
    oneroster_server.send_total = False
    oneroster_server.send_links = False
    oneroster_server.max_limit = 3  # our 1000 is capped: a short first page is not the end
    roster = make_connector(oauth1(oneroster_server)).fetch_roster()
    assert roster.users.height == 9 and roster.enrollments.height == 6
    offsets = sorted(int(r.query["offset"]) for r in oneroster_server.resource_requests("/users"))
    assert offsets == [0, 3, 6, 9]  # the empty page at 9 confirms the end


def test_without_total_or_links_a_page_cut_short_is_an_error(
    oneroster_server: OneRosterServer,
) -> None:
    oneroster_server.send_total = False
    oneroster_server.send_links = False
    oneroster_server.inject("truncate", path="/users", offset=4, rows=1)
    with pytest.raises(IncompleteReadError, match=r"offset=4: page cut short \(1 rows of 2\)"):
        make_connector(oauth1(oneroster_server, page_size=2)).fetch_roster()


def test_link_variants_real_servers_send(oneroster_server: OneRosterServer) -> None:
    """Only rel="next", URLs relative to the request, a raw quote and space in the
    query: followed and signed as sent (the server checks every OAuth 1.0a signature)."""
    oneroster_server.send_total = False
    oneroster_server.next_link_only = True
    oneroster_server.relative_links = True
    oneroster_server.link_suffix = "&sort=familyName&filter=status!='a b+c'"
    roster = make_connector(oauth1(oneroster_server, page_size=2)).fetch_roster()
    assert roster.users.height == 9 and roster.enrollments.height == 6
    users = oneroster_server.resource_requests("/users")
    assert [int(r.query["offset"]) for r in users] == [0, 2, 4, 6, 8]
    assert all(r.status == 200 for r in users)
    assert users[1].query["filter"] == "status!='a b c'" and users[1].query["sort"] == "familyName"


def test_a_next_link_to_another_server_is_not_followed(oneroster_server: OneRosterServer) -> None:
    oneroster_server.send_total = False
    client = make_connector(oauth1(oneroster_server)).client
    with pytest.raises(OneRosterApiError, match=r"leaves 127\.0\.0\.1"):
        client._same_server("here", "http://attacker.example/users?offset=2")
    https = make_connector({**oauth1(oneroster_server), "base_url": "https://sis.example.org/or"})
    # a TLS-terminating proxy writes http links for our https host: read over https
    assert https.client._same_server("here", "http://sis.example.org/or/users?offset=2") == (
        "https://sis.example.org/or/users?offset=2"
    )


def test_a_server_that_ignores_limit_is_read_in_one_page(
    oneroster_server: OneRosterServer,
) -> None:
    oneroster_server.ignore_limit = True
    roster = make_connector(oauth1(oneroster_server, page_size=2)).fetch_roster()
    assert roster.users.height == 9
    assert len(oneroster_server.resource_requests("/users")) == 1


@pytest.mark.parametrize("send_total", [True, False])
def test_records_served_twice_are_an_error(
    oneroster_server: OneRosterServer, send_total: bool
) -> None:
    """Offset paging over data that changes: a record inserted on an earlier page pushes
    one back onto the next page (served twice), and the total can stay the same."""
    oneroster_server.send_total = send_total
    oneroster_server.inject("shift", path="/users", offset=4, rows=1)
    with pytest.raises(IncompleteReadError, match=r"users record 'st4' came on an earlier page"):
        make_connector(oauth1(oneroster_server, page_size=2)).fetch_roster()


def test_the_records_key_may_differ_but_must_be_there(oneroster_server: OneRosterServer) -> None:
    oneroster_server.envelope = {"users": "user"}  # a singular key holding the list
    assert make_connector(oauth1(oneroster_server)).fetch_roster().users.height == 9
    oneroster_server.hidden = {"orgs"}
    oneroster_server.envelope = {"orgs": "schools"}  # /schools answered as "schools"
    roster = make_connector(oauth1(oneroster_server)).fetch_roster()
    assert rows(roster.schools, "sis_id") == {("s1",), ("s2",)}
    oneroster_server.envelope = {"users": "people"}
    with pytest.raises(OneRosterApiError, match=r"no 'users' list \(it holds 'people'\)"):
        make_connector(oauth1(oneroster_server)).fetch_roster()


def test_reads_schools_when_the_server_offers_no_orgs(oneroster_server: OneRosterServer) -> None:
    oneroster_server.hidden = {"orgs"}
    roster = make_connector(oauth1(oneroster_server)).fetch_roster()
    assert rows(roster.schools, "sis_id") == {("s1",), ("s2",)}
    assert rows(roster.users.filter(pl.col("sis_id") == "st1"), "school_sis_id") == {("s1",)}
    assert oneroster_server.resource_requests("/schools")


# -- retries, timeouts, errors -------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_transient_statuses_are_retried_and_counted(
    oneroster_server: OneRosterServer, status: int
) -> None:
    oneroster_server.inject("status", path="/users", status=status, times=2)
    roster = make_connector(oauth1(oneroster_server)).fetch_roster()
    assert roster.users.height == 9
    assert roster.meta["http"]["retries"] == 2
    assert [r.status for r in oneroster_server.resource_requests("/users")] == [status, status, 200]


def test_retry_after_is_honoured(oneroster_server: OneRosterServer) -> None:
    oneroster_server.inject("status", path="/orgs", status=429, retry_after="1")
    started = time.monotonic()
    make_connector(oauth1(oneroster_server)).test_connection()
    assert time.monotonic() - started >= 1.0


def test_other_errors_are_not_retried(oneroster_server: OneRosterServer) -> None:
    oneroster_server.inject("status", path="/classes", status=500)
    with pytest.raises(OneRosterApiError, match=r"classes\?limit=1000&offset=0 answered HTTP 500"):
        make_connector(oauth1(oneroster_server)).fetch_roster()
    assert len(oneroster_server.resource_requests("/classes")) == 1


def test_retries_give_up_after_max_retries(oneroster_server: OneRosterServer) -> None:
    oneroster_server.inject("status", path="/orgs", status=503, times=None)
    with pytest.raises(OneRosterApiError, match=r"HTTP 503 .*gave up after 3 retries"):
        make_connector(oauth1(oneroster_server, max_retries=3)).test_connection()
    assert len(oneroster_server.resource_requests("/orgs")) == 4


def test_a_slow_response_times_out_and_is_retried(oneroster_server: OneRosterServer) -> None:
    oneroster_server.inject("slow", path="/orgs", delay=0.6)
    connector = make_connector(oauth1(oneroster_server, read_timeout=0.2))
    assert "3 orgs" in connector.test_connection()
    assert connector.client.stats.retries == 1
    oneroster_server.inject("slow", path="/orgs", delay=0.6, times=None)
    with pytest.raises(OneRosterApiError, match=r"timed out \(ReadTimeout\) after 2 attempts"):
        make_connector(oauth1(oneroster_server, read_timeout=0.2, max_retries=1)).test_connection()


def test_imsx_error_payloads_become_clear_errors(oneroster_server: OneRosterServer) -> None:
    oneroster_server.inject(
        "imsx",
        path="/courses",
        status=400,
        code_minor="invalid_selection_field",
        description="limit must be at most 500",
    )
    with pytest.raises(OneRosterApiError) as raised:
        make_connector(oauth1(oneroster_server)).fetch_roster()
    assert str(raised.value) == (
        f"GET {oneroster_server.v1p1_url}/courses?limit=1000&offset=0 answered HTTP 400 "
        "(invalid_selection_field): limit must be at most 500"
    )
    assert raised.value.code_minor == "invalid_selection_field"


def test_retry_after_as_an_http_date_is_honoured(oneroster_server: OneRosterServer) -> None:
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    oneroster_server.inject("status", path="/orgs", status=503, retry_after=when)
    started = time.monotonic()
    make_connector(oauth1(oneroster_server)).test_connection()
    assert time.monotonic() - started >= 1.0  # the date has a resolution of one second
    assert [r.status for r in oneroster_server.resource_requests()] == [503, 200]


def test_an_html_page_instead_of_json_is_a_clear_error(oneroster_server: OneRosterServer) -> None:
    login = b"<html><body><form action='/login'>Sign in</form></body></html>"
    oneroster_server.inject("body", path="/orgs", status=200, body=login, times=None)
    with pytest.raises(OneRosterApiError) as raised:
        make_connector(oauth1(oneroster_server)).fetch_roster()
    message = str(raised.value)
    assert "HTTP 200 but the answer is not JSON (text/html)" in message
    assert "login page" in message and "Sign in" not in message


@pytest.mark.parametrize("status", [200, 422])
def test_imsx_failures_name_their_code_minor_whatever_the_key_case(
    oneroster_server: OneRosterServer, status: int
) -> None:
    """1.1 servers write `imsx_codeMinor`, 1.2 `imsx_CodeMinor`; some answer 200."""
    failure = {
        "imsx_codeMajor": "failure",
        "imsx_severity": "error",
        "imsx_description": "filter field unknown: grade",
        "imsx_codeMinor": {
            "imsx_codeMinorField": {
                "imsx_codeMinorFieldName": "TargetEndSystem",
                "imsx_codeMinorFieldValue": "invalid_filter_field",
            }
        },
    }
    oneroster_server.inject(
        "body",
        path="/classes",
        status=status,
        body=json.dumps(failure).encode(),
        content_type="application/json",
    )
    with pytest.raises(OneRosterApiError) as raised:
        make_connector(oauth1(oneroster_server)).fetch_roster()
    assert raised.value.code_minor == "invalid_filter_field"
    assert f"HTTP {status}" in str(raised.value)
    assert "(invalid_filter_field): filter field unknown: grade" in str(raised.value)


def test_an_unreachable_server_fails_after_retries() -> None:
    server = OneRosterServer().start()
    connector = make_connector(oauth1(server, max_retries=2))
    server.stop()
    with pytest.raises(OneRosterApiError, match=r"connection failed .* after 3 attempts"):
        connector.test_connection()


# -- one student -----------------------------------------------------------------------------


def test_fetch_student_reads_a_handful_of_records(oneroster_server: OneRosterServer) -> None:
    connector = make_connector(oauth1(oneroster_server))
    roster = connector.fetch_student("st1")
    assert rows(roster.users, "sis_id", "role") == {("st1", "student"), ("p1", "parent")}
    assert rows(roster.links, "parent_sis_id", "student_sis_id") == {("p1", "st1")}
    assert rows(roster.enrollments, "sis_id", "active") == {
        ("e1", True),
        ("e2", True),
        ("e6", False),
    }
    assert rows(roster.classes, "sis_id", "course_code") == {
        ("cl1", "MATH5"),
        ("cl2", "READK"),
        ("cl3", None),
    }
    assert rows(roster.schools, "sis_id") == {("s1",), ("s2",)}
    paths = [r.path.split("/v1p1/")[1] for r in oneroster_server.resource_requests()]
    assert len(paths) <= 12
    # never a whole collection: only single records and filtered reads
    unfiltered = [
        r
        for r in oneroster_server.resource_requests()
        if r.path.rsplit("/", 1)[1] in ("users", "enrollments", "classes", "orgs")
        and "filter" not in r.query
    ]
    assert unfiltered == []


def test_fetch_student_finds_a_link_listed_only_by_the_parent(
    oneroster_server: OneRosterServer,
) -> None:
    roster = make_connector(oauth2(oneroster_server)).fetch_student("st2")
    assert rows(roster.links, "parent_sis_id", "student_sis_id") == {("p2", "st2")}
    assert rows(roster.users, "sis_id") == {("st2",), ("p2",)}


def test_fetch_student_falls_back_when_filters_are_refused(
    oneroster_server: OneRosterServer,
) -> None:
    oneroster_server.filter_supported = False
    roster = make_connector(oauth1(oneroster_server)).fetch_student("st1")
    assert rows(roster.enrollments, "sis_id") == {("e1",), ("e2",), ("e6",)}
    assert any("per class" in note for note in roster.meta["notes"])
    assert oneroster_server.resource_requests("/students/st1/classes")

    oneroster_server.nested_supported = False
    roster = make_connector(oauth1(oneroster_server)).fetch_student("st1")
    assert rows(roster.enrollments, "sis_id") == {("e1",), ("e2",), ("e6",)}
    assert any("read in full" in note for note in roster.meta["notes"])


def test_fetch_student_of_an_unknown_id_is_empty(oneroster_server: OneRosterServer) -> None:
    roster = make_connector(oauth1(oneroster_server)).fetch_student("nobody")
    assert roster.row_counts() == {
        "schools": 0,
        "users": 0,
        "links": 0,
        "classes": 0,
        "enrollments": 0,
    }
    assert roster.meta["not_found"] == "nobody"
    # an id that needs percent-encoding is signed as sent: a 404, not a bad signature
    odd = make_connector(oauth1(oneroster_server)).fetch_student("no such/ü id+1")
    assert odd.meta["not_found"] == "no such/ü id+1"
    (last,) = oneroster_server.resource_requests("no such/ü id+1")
    assert last.status == 404 and last.path.endswith("/users/no such/ü id+1")


def test_fetch_student_on_a_wrong_base_url_is_an_error_not_a_missing_student(
    oneroster_server: OneRosterServer,
) -> None:
    source = {**oauth1(oneroster_server), "base_url": oneroster_server.v1p1_url + "/district9"}
    with pytest.raises(OneRosterApiError, match=r"HTTP 404.*check base_url") as raised:
        make_connector(source).fetch_student("st1")
    assert raised.value.status == 404


def test_fetch_student_when_the_server_lacks_single_user_records(
    oneroster_server: OneRosterServer,
) -> None:
    oneroster_server.inject("status", path="/users/st1", status=404, times=None)
    roster = make_connector(oauth1(oneroster_server)).fetch_student("st1")
    assert rows(roster.users, "sis_id") == {("st1",), ("p1",)}  # found by a filter instead


def test_fetch_student_whose_school_or_class_is_missing(
    oneroster_server: OneRosterServer,
) -> None:
    data = oneroster_server.datasets["v1p1"]
    data["classes"] = [c for c in data["classes"] if c["sourcedId"] != "cl3"]
    oneroster_server.hidden = {"orgs"}  # a server that offers schools only
    roster = make_connector(oauth1(oneroster_server)).fetch_student("st1")
    assert rows(roster.schools, "sis_id") == {("s1",), ("s2",)}
    assert rows(roster.users, "sis_id", "school_sis_id") == {("st1", "s1"), ("p1", None)}
    # the enrollment in the missing class stays, for the rules to report
    assert rows(roster.enrollments, "sis_id", "class_sis_id") >= {("e2", "cl3")}
    assert rows(roster.classes, "sis_id") == {("cl1",), ("cl2",)}
    assert "classes not on the server: cl3" in roster.meta["notes"]
    assert not any(note.startswith("orgs") for note in roster.meta["notes"])


# -- records ---------------------------------------------------------------------------------


def test_public_1_2_rest_samples_from_the_server(oneroster_server: OneRosterServer) -> None:
    """DA2022 Japan Profile: roles: [], enabledUser as a JSON boolean, grade 'P1'."""
    oneroster_server.datasets["v1p2"] = load_json_folder(JAPAN_SAMPLES)
    roster = make_connector(oauth2(oneroster_server)).fetch_roster()
    user = roster.users.row(0, named=True)
    assert user["sis_id"] == "fde2a968-1ac9-4c72-96bc-28bb20e3afb8"
    assert (user["role"], user["role_raw"]) == ("other", None)  # roles: [] names no role
    assert (user["grade"], user["grade_raw"]) == ("P1", "P1")
    assert user["active"] is True and user["deleted"] is False
    assert user["school_sis_id"] == "500bc782-3ff9-4fd8-9dc7-ba6abfb38d80"
    assert rows(roster.schools, "sis_id", "state_id") == {
        ("500bc782-3ff9-4fd8-9dc7-ba6abfb38d80", "A123456789012")
    }
    # the course is not in the samples: the class code stands in
    assert rows(roster.classes, "name", "course_code", "term_sis_id") == {("1年1組", None, None)}
    assert rows(roster.enrollments, "user_sis_id", "role", "active") == {
        ("fde2a968-1ac9-4c72-96bc-28bb20e3afb8", "student", True)
    }


def test_an_invalid_record_names_url_field_and_record(oneroster_server: OneRosterServer) -> None:
    users = oneroster_server.datasets["v1p1"]["users"]
    users[3]["enabledUser"] = "maybe"
    with pytest.raises(SourceDataError) as raised:
        make_connector(oauth1(oneroster_server)).fetch_roster()
    error = raised.value
    assert (error.file, error.field, error.record) == (
        f"{oneroster_server.v1p1_url}/users",
        "enabledUser",
        "st4",
    )
    assert "users record #4: 'maybe' is not a boolean" in str(error)
    assert "Dee" not in str(error)


def test_1_2_role_records_are_located_on_their_user() -> None:
    urls = {
        name: f"https://sis/{name}"
        for name in ("orgs", "users", "classes", "courses", "enrollments")
    }
    users = [
        {"sourcedId": "u1", "status": "active", "roles": [{"roleType": "main", "role": "student"}]}
    ]
    with pytest.raises(SourceDataError) as raised:
        build_roster("demo", {"users": users}, urls, as_of=date(2026, 9, 1))
    assert (raised.value.file, raised.value.field) == ("https://sis/users", "roles[].roleType")
    with pytest.raises(SourceDataError, match="users record #1: agents is not a list"):
        build_roster("demo", {"users": [{"sourcedId": "u1", "agents": 7}]}, urls)


def test_1_2_user_shapes() -> None:
    """roles[] with the primary role listed second, no primaryOrg, enabledUser as a
    string or a JSON boolean, userIds, grades, statuses."""
    urls = {
        name: f"https://sis/{name}"
        for name in ("orgs", "users", "classes", "courses", "enrollments")
    }
    orgs = [
        {"sourcedId": "d1", "status": "active", "type": "district", "name": "D"},
        {"sourcedId": "s1", "status": "active", "type": "school", "name": "S1"},
        {"sourcedId": "s2", "status": "active", "type": "school", "name": "S2"},
    ]

    def user(sid: str, **fields: Any) -> dict[str, Any]:
        return {"sourcedId": sid, "status": "active", "userIds": [], "agents": [], **fields}

    users = [
        user(
            "u1",
            enabledUser=False,
            grades=["5"],
            userIds=[{"type": "studentNumber", "identifier": "1001"}],
            roles=[
                {"roleType": "secondary", "role": "student", "org": ref("org", "s1")},
                {"roleType": "primary", "role": "student", "org": ref("org", "s2")},
            ],
            agents=[ref("user", "u2")],
        ),
        user(
            "u2",
            enabledUser="true",
            primaryOrg=ref("org", "d1"),
            roles=[{"roleType": "primary", "role": "guardian", "org": ref("org", "d1")}],
        ),
        user(
            "u3",
            status="tobedeleted",
            enabledUser=True,
            primaryOrg=ref("org", "s1"),
            roles=[
                {"roleType": "primary", "role": "districtAdministrator", "org": ref("org", "d1")}
            ],
        ),
    ]
    roster = build_roster("demo", {"orgs": orgs, "users": users}, urls, as_of=date(2026, 9, 1))
    assert rows(
        roster.users, "sis_id", "role_raw", "school_sis_id", "grade", "active", "deleted"
    ) == {
        ("u1", "student", "s2", "05", False, False),  # the primary role's org
        ("u2", "guardian", None, None, True, False),
        ("u3", "districtAdministrator", "s1", None, False, True),
    }
    assert rows(roster.links, "parent_sis_id", "student_sis_id") == {("u2", "u1")}


def test_test_connection_reports_the_total_and_reads_one_row(
    oneroster_server: OneRosterServer,
) -> None:
    connector = make_connector(oauth1(oneroster_server))
    message = connector.test_connection()
    assert message == (
        f"oneroster_api OneRoster 1.1 at {oneroster_server.v1p1_url} (oauth1): "
        "authenticated, 3 orgs"
    )
    (request,) = oneroster_server.resource_requests()
    assert request.query == {"limit": "1", "offset": "0"}


def test_every_read_is_audited(oneroster_server: OneRosterServer) -> None:
    audit = AuditLog(None)
    connector = make_connector(oauth1(oneroster_server), audit=audit)
    connector.fetch_roster()
    connector.fetch_student("st1")
    assert [(e.system, e.action) for e in audit.events] == [("oneroster_api", "request")] * 2
    assert audit.events[0].row_count == 3 + 9 + 3 + 2 + 6
    assert "requests" in audit.events[0].detail


def test_registered_as_a_source_type() -> None:
    assert SOURCE_CONNECTORS["oneroster_api"] is OneRosterApiConnector


# -- error bodies that echo the request back -------------------------------------------------

#: what a credential looks like in an echoed request, unmasked
LEAKS = (
    re.compile(r"Basic [A-Za-z0-9+/=]{6,}"),
    re.compile(r"Bearer [A-Za-z0-9_.~+/=-]{6,}"),
    re.compile(r"oauth_signature[=:\"'\s]+(?!\*\*\*\*|\.\.\.)"),
    re.compile(r"client_secret[=:\"'\s]+(?!\*\*\*\*|\.\.\.)"),
)


def assert_no_credentials(message: str, *secrets: str) -> None:
    for leak in LEAKS:
        assert not leak.search(message), (leak.pattern, message)
    for secret in secrets:
        assert secret not in message, (secret, message)


@pytest.mark.parametrize("shape", ["oauth", "json"])
@pytest.mark.parametrize("method", ["basic", "post"])
def test_a_token_error_that_echoes_the_request_quotes_no_credentials(
    oneroster_server: OneRosterServer, method: str, shape: str
) -> None:
    """A token endpoint whose error repeats the request (Authorization: Basic, or the
    form's client_secret): the error keeps the status and the OAuth error code only,
    and masks whatever looks like a credential in the description."""
    oneroster_server.inject(
        "echo", path="/oauth/token", status=400, shape=shape, code_minor="invalid_request"
    )
    connector = make_connector(oauth2(oneroster_server, auth={"client_authentication": method}))
    with pytest.raises(OneRosterApiError) as raised:
        connector.test_connection()
    message = str(raised.value)
    assert message.startswith(
        f"POST {oneroster_server.token_url}: token request refused: invalid_request ("
    )
    basic = base64.b64encode(b"test-client:client-secret").decode()
    assert_no_credentials(message, basic, "client-secret", "test-client")
    assert "****" in message and len(message) < 500


@pytest.mark.parametrize("shape", ["imsx", "oauth", "json", "text"])
@pytest.mark.parametrize("auth", ["oauth1", "oauth2"])
def test_an_api_error_that_echoes_the_request_quotes_no_credentials(
    oneroster_server: OneRosterServer, auth: str, shape: str
) -> None:
    """A resource answering 400 with the request's headers in its body: the bearer token
    or the OAuth 1.0a signature is never quoted, the status and error code are."""
    oneroster_server.inject("echo", path="/users", status=400, shape=shape)
    source = oauth1(oneroster_server) if auth == "oauth1" else oauth2(oneroster_server)
    with pytest.raises(OneRosterApiError) as raised:
        make_connector(source).fetch_roster()
    message = str(raised.value)
    assert raised.value.status == 400 and "answered HTTP 400" in message
    if shape != "text":
        assert "(invalid_request)" in message
    assert_no_credentials(message, *oneroster_server.tokens, "test-key", "test-secret")
    assert len(message) < 500


@pytest.mark.parametrize(
    ("echoed", "quoted_as"),
    [
        (
            "Authorization: Basic dGVzdC1jbGllbnQ6Y2xpZW50LXNlY3JldA==\nHost: sis",
            "Authorization: **** Host: sis",
        ),
        ('{"authorization": "Bearer abc.def-123_456"}', '{"authorization": ****}'),
        ("{'Cookie': 'session=9f2c77aa'}", "{'Cookie': ****}"),
        (
            "client_id=app&client_secret=s3cr3t!&scope=x",
            "client_id=****&client_secret=****&scope=x",
        ),
        (
            'OAuth oauth_consumer_key="k1", oauth_signature="a%2Bb%3D"',
            "OAuth oauth_consumer_key=****, oauth_signature=****",
        ),
        ('"access_token": "eyJhbGciOi.eyJzdWIi.c2lnbmF0"', '"access_token": ****'),
        ("token eyJhbGciOi.eyJzdWIi.c2lnbmF0 refused", "token **** refused"),
        ("sent Bearer 0123456789abcdef, expired", "sent Bearer ****, expired"),
        (
            "oauth_problem=signature_invalid&oauth_signature=a%2Bb",
            "oauth_problem=signature_invalid&oauth_signature=****",
        ),
        ("limit must be at most 500", "limit must be at most 500"),
        ('Bearer error="invalid_token"', 'Bearer error="invalid_token"'),
    ],
)
def test_credentials_in_a_server_answer_are_masked(echoed: str, quoted_as: str) -> None:
    """The shapes in which servers echo a request: headers as text lines, as JSON or as a
    Python dict, form bodies, OAuth 1.0a parameters, JWTs. Plain words stay."""
    assert quoted(echoed) == quoted_as
