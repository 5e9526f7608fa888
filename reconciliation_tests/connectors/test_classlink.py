"""The ClassLink connector in both modes, against the local OneRoster server.

`base_url` points the connector at the local server; everything else (OAuth 1.0a for a
Roster Server, a bearer token and `x-count` paging for the OneRoster proxy) is real.
"""

from __future__ import annotations

from typing import Any

import pytest

from reconciliation.connectors import SOURCE_CONNECTORS, ConnectorError
from reconciliation.connectors.classlink import ClassLinkConnector
from reconciliation.connectors.oneroster_rest import IncompleteReadError
from reconciliation_tests.connectors.test_oneroster_api import (
    FAST,
    assert_no_credentials,
    make_connector,
    validate,
)
from reconciliation_tests.fixtures.oneroster_server import OneRosterServer


def roster_server(server: OneRosterServer, **extra: Any) -> dict[str, Any]:
    return {
        "type": "classlink",
        "mode": "roster_server",
        "tenant": "riverside",
        "base_url": server.v1p1_url,
        "consumer_key": "env:OR_KEY",
        "consumer_secret": "env:OR_SECRET",
        **FAST,
        **extra,
    }


def proxy(server: OneRosterServer, **extra: Any) -> dict[str, Any]:
    return {
        "type": "classlink",
        "mode": "oneroster_proxy",
        "app_id": "APP123",
        "base_url": server.proxy_url("APP123"),
        "access_token": "env:CL_TOKEN",
        **FAST,
        **extra,
    }


def test_settings_per_mode() -> None:
    assert (
        validate(
            {
                "type": "classlink",
                "mode": "roster_server",
                "tenant": "riverside",
                "consumer_key": "key",
                "consumer_secret": "env:S",
            }
        )
        == []
    )
    assert (
        validate(
            {
                "type": "classlink",
                "mode": "oneroster_proxy",
                "app_id": "APP123",
                "access_token": "env:T",
                "page_size": 5000,
            }
        )
        == []
    )
    errors = validate(
        {
            "type": "classlink",
            "mode": "oneroster_proxy",
            "app_id": "APP123",
            "access_token": "a-literal-token",
        }
    )
    assert any("$.source.access_token" in e and "credential reference" in e for e in errors)
    assert validate(
        {
            "type": "classlink",
            "mode": "roster_server",
            "consumer_key": "key",
            "consumer_secret": "env:S",
        }
    )  # no tenant, no URL
    assert any(
        "access_token" in e
        for e in validate({"type": "classlink", "mode": "oneroster_proxy", "app_id": "APP123"})
    )


def test_default_urls_follow_the_mode() -> None:
    server_mode = make_connector(
        {
            "type": "classlink",
            "mode": "roster_server",
            "tenant": "riverside",
            "consumer_key": "k",
            "consumer_secret": "env:OR_SECRET",
        }
    )
    assert server_mode.base_url() == ("https://riverside-vn-v2.rosterserver.com/ims/oneroster/v1p1")
    proxy_mode = make_connector(
        {
            "type": "classlink",
            "mode": "oneroster_proxy",
            "app_id": "APP123",
            "access_token": "env:CL_TOKEN",
        }
    )
    assert proxy_mode.base_url() == (
        "https://oneroster-proxy.classlink.io/APP123/ims/oneroster/v1p1"
    )
    assert proxy_mode.client_options().page_size == 10_000
    assert server_mode.client_options().page_size == 1000


def test_roster_server_signs_with_oauth1(oneroster_server: OneRosterServer) -> None:
    connector = make_connector(roster_server(oneroster_server, page_size=4))
    roster = connector.fetch_roster()
    assert roster.row_counts() == {
        "schools": 2,
        "users": 9,
        "links": 2,
        "classes": 3,
        "enrollments": 6,
    }
    assert roster.meta["source"] == (
        f"classlink OneRoster 1.1 at {oneroster_server.v1p1_url} (oauth1)"
    )
    assert {r.auth for r in oneroster_server.resource_requests()} == {"oauth"}
    assert all(r.status == 200 for r in oneroster_server.resource_requests())


def test_roster_server_with_sha1(oneroster_server: OneRosterServer) -> None:
    oneroster_server.oauth1_methods = {"HMAC-SHA1"}
    connector = make_connector(roster_server(oneroster_server, signature_method="HMAC-SHA1"))
    assert "3 orgs" in connector.test_connection()


def test_proxy_uses_the_bearer_token_and_x_count(oneroster_server: OneRosterServer) -> None:
    connector = make_connector(proxy(oneroster_server))
    roster = connector.fetch_roster()
    assert roster.users.height == 9 and roster.enrollments.height == 6
    requests_seen = oneroster_server.resource_requests()
    assert {r.auth for r in requests_seen} == {"bearer"}
    assert {r.query["limit"] for r in requests_seen} == {"10000"}  # one page per collection
    assert len(requests_seen) == 5


def test_proxy_pages_by_x_count(oneroster_server: OneRosterServer) -> None:
    oneroster_server.send_links = False  # x-count is all there is to page by
    roster = make_connector(proxy(oneroster_server, page_size=2)).fetch_roster()
    assert roster.users.height == 9
    offsets = sorted(int(r.query["offset"]) for r in oneroster_server.resource_requests("/users"))
    assert offsets == [0, 2, 4, 6, 8]


def test_proxy_refuses_a_partial_page(oneroster_server: OneRosterServer) -> None:
    oneroster_server.inject("truncate", path="/enrollments", offset=2, rows=2)
    with pytest.raises(IncompleteReadError, match="page cut short"):
        make_connector(proxy(oneroster_server, page_size=2)).fetch_roster()


def test_proxy_wrong_token_is_clear(oneroster_server: OneRosterServer) -> None:
    connector = make_connector(proxy(oneroster_server, access_token="env:WRONG_SECRET"))
    with pytest.raises(ConnectorError) as raised:
        connector.test_connection()
    message = str(raised.value)
    assert "HTTP 401" in message and "check the access token" in message
    assert "not-the-secret-9f2c" not in message


def test_proxy_rate_limits_are_retried(oneroster_server: OneRosterServer) -> None:
    oneroster_server.inject("status", path="/users", status=429, retry_after="0", times=3)
    oneroster_server.inject("status", path="/classes", status=502, times=1)
    roster = make_connector(proxy(oneroster_server)).fetch_roster()
    assert roster.users.height == 9
    assert roster.meta["http"]["retries"] == 4


def test_proxy_fetch_student(oneroster_server: OneRosterServer) -> None:
    roster = make_connector(proxy(oneroster_server)).fetch_student("st1")
    assert set(roster.users["sis_id"]) == {"st1", "p1"}
    assert set(roster.enrollments["sis_id"]) == {"e1", "e2", "e6"}


def test_registered_as_a_source_type() -> None:
    assert SOURCE_CONNECTORS["classlink"] is ClassLinkConnector


def test_proxy_fetch_student_of_an_unknown_id_is_empty(oneroster_server: OneRosterServer) -> None:
    roster = make_connector(proxy(oneroster_server)).fetch_student("nobody")
    assert roster.meta["not_found"] == "nobody" and roster.users.height == 0


def test_proxy_login_page_is_a_clear_error(oneroster_server: OneRosterServer) -> None:
    page = b"<!doctype html><title>ClassLink Login</title>"
    oneroster_server.inject("body", path="/orgs", status=200, body=page)
    with pytest.raises(ConnectorError, match=r"not JSON \(text/html\); a login page"):
        make_connector(proxy(oneroster_server)).test_connection()


@pytest.mark.parametrize("mode", ["roster_server", "oneroster_proxy"])
def test_an_error_that_echoes_the_request_quotes_no_credentials(
    oneroster_server: OneRosterServer, mode: str
) -> None:
    """ClassLink shares the OneRoster client's errors: an imsx error repeating the
    request's Authorization (the OAuth 1.0a signature, the proxy's bearer token) is
    quoted with the credentials masked."""
    oneroster_server.inject("echo", path="/users", status=400, shape="imsx")
    source = roster_server(oneroster_server) if mode == "roster_server" else proxy(oneroster_server)
    with pytest.raises(ConnectorError) as raised:
        make_connector(source).fetch_roster()
    message = str(raised.value)
    assert "answered HTTP 400 (invalid_request): request rejected: Authorization: ****" in message
    assert_no_credentials(message, "proxy-token", "test-key", "test-secret")
