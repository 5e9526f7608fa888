"""The HubSpot client against a local CRM v3 server (fixtures/hubspot_server.py): company
and owner look-ups, one open ticket per dedupe key, rate limits and clear errors."""

from __future__ import annotations

import time

import pytest

from reconciliation.alerts.hubspot import Company, HubSpotClient, HubSpotError, Owner, Ticket
from reconciliation.credentials import CredentialResolver
from reconciliation_tests.fixtures.hubspot_server import TOKEN, HubSpotServer


def client(server: HubSpotServer, token: str = TOKEN, **options: object) -> HubSpotClient:
    secret = CredentialResolver({"HUBSPOT_TOKEN": token}).resolve("env:HUBSPOT_TOKEN")
    return HubSpotClient(
        secret,
        base_url=server.url,
        backoff_factor=0.01,  # type: ignore[arg-type]
        **options,
    )


def upsert(
    hubspot: HubSpotClient, key: str = "springfield:parent-email-conflict", **changes: str
) -> Ticket:
    fields = {
        "company_id": "555",
        "key": key,
        "subject": "2 parent accounts shared",
        "content": "See the report of run 42.",
        **changes,
    }
    return hubspot.upsert_ticket(**fields)


def test_company_with_owner_and_customer_id(hubspot_server: HubSpotServer) -> None:
    company = client(hubspot_server).get_company("555")

    assert company == Company(
        id="555",
        name="Springfield USD",
        owner=Owner(id="77", name="Casey Morgan", email="csm@bookmarked.example"),
        bookmarked_customer_id="101",
    )
    (request,) = hubspot_server.calls("GET", "/companies/555")
    assert request.arg("properties") == "name,hubspot_owner_id,bookmarked_customer_id"


def test_company_without_owner_and_with_an_owner_hubspot_no_longer_knows(
    hubspot_server: HubSpotServer,
) -> None:
    hubspot = client(hubspot_server)
    assert hubspot.get_company("556").owner is None
    hubspot_server.companies["556"]["hubspot_owner_id"] = "404404"
    assert hubspot.get_company("556").owner == Owner(id="404404")


def test_customer_id_property_is_configurable(hubspot_server: HubSpotServer) -> None:
    hubspot_server.companies["555"]["bm_customer"] = "101-b"
    company = client(hubspot_server, customer_id_property="bm_customer").get_company("555")
    assert company.bookmarked_customer_id == "101-b"


def test_unknown_company(hubspot_server: HubSpotServer) -> None:
    with pytest.raises(HubSpotError, match=r"GET /crm/v3/objects/companies/999: no company 999"):
        client(hubspot_server).get_company("999")


def test_wrong_token_is_a_clear_error_without_the_token(hubspot_server: HubSpotServer) -> None:
    wrong = "pat-na1-wrong-token-0000"
    with pytest.raises(HubSpotError) as caught:
        client(hubspot_server, token=wrong).get_company("555")

    assert str(caught.value) == (
        "HubSpot GET /crm/v3/objects/companies/555 answered 401 "
        "(INVALID_AUTHENTICATION: Authentication credentials not found.)"
    )
    assert len(hubspot_server.requests) == 1  # a 401 is not retried
    assert wrong not in repr(client(hubspot_server, token=wrong))


# -- tickets -----------------------------------------------------------------------------


def test_first_upsert_files_a_ticket_on_the_company(hubspot_server: HubSpotServer) -> None:
    ticket = upsert(client(hubspot_server), priority="HIGH")

    assert ticket.created
    stored = hubspot_server.tickets[ticket.id]
    assert stored["companies"] == ["555"]
    assert {k: v for k, v in stored["properties"].items() if k != "createdate"} == {
        "subject": "2 parent accounts shared",
        "content": "See the report of run 42.",
        "hs_ticket_priority": "HIGH",
        "reconciliation_key": "springfield:parent-email-conflict",
        "hs_pipeline": "0",
        "hs_pipeline_stage": "1",
    }


def test_next_upsert_updates_the_open_ticket_and_leaves_its_stage(
    hubspot_server: HubSpotServer,
) -> None:
    hubspot = client(hubspot_server)
    first = upsert(hubspot)
    hubspot_server.tickets[first.id]["properties"]["hs_pipeline_stage"] = "2"  # being worked

    second = upsert(hubspot, subject="3 parent accounts shared")

    assert second == Ticket(first.id, created=False)
    assert len(hubspot_server.tickets) == 1
    properties = hubspot_server.tickets[first.id]["properties"]
    assert (properties["subject"], properties["hs_pipeline_stage"]) == (
        "3 parent accounts shared",
        "2",
    )
    search = hubspot_server.calls("POST", "/tickets/search")[-1].json()
    assert search["filterGroups"][0]["filters"] == [
        {
            "propertyName": "reconciliation_key",
            "operator": "EQ",
            "value": "springfield:parent-email-conflict",
        },
        {"propertyName": "closed_date", "operator": "NOT_HAS_PROPERTY"},
    ]


def test_a_closed_ticket_is_not_reopened_a_new_one_is_filed(
    hubspot_server: HubSpotServer,
) -> None:
    hubspot = client(hubspot_server)
    first = upsert(hubspot)
    hubspot_server.tickets[first.id]["properties"]["closed_date"] = "2026-08-02T10:00:00Z"

    second = upsert(hubspot)

    assert second.created and second.id != first.id


def test_each_key_has_its_own_ticket(hubspot_server: HubSpotServer) -> None:
    hubspot = client(hubspot_server)
    one, other = upsert(hubspot, key="springfield:a"), upsert(hubspot, key="springfield:b")
    assert one.created and other.created and one.id != other.id


def test_missing_dedupe_property_is_a_clear_error(hubspot_server: HubSpotServer) -> None:
    hubspot = client(hubspot_server, dedupe_property="not_created_yet")
    with pytest.raises(
        HubSpotError,
        match=r"tickets/search answered 400 \(VALIDATION_ERROR: "
        r"property 'not_created_yet' does not exist\)",
    ):
        upsert(hubspot)


# -- rate limits and retries -------------------------------------------------------------


def test_429_without_retry_after_waits_one_rate_limit_window(
    hubspot_server: HubSpotServer,
) -> None:
    hubspot_server.rate_max, hubspot_server.rate_interval_ms = 2, 300
    hubspot = client(hubspot_server)

    started = time.monotonic()
    company = hubspot.get_company("555")  # company + owner: the window is full
    ticket = upsert(hubspot)  # search + create: each waits for a new window

    assert company.owner is not None and ticket.created
    assert hubspot_server.rate_limited >= 1
    assert time.monotonic() - started >= 0.3


def test_429_honours_retry_after(hubspot_server: HubSpotServer) -> None:
    hubspot_server.rate_max, hubspot_server.rate_interval_ms = 1, 1000
    hubspot_server.send_retry_after = True
    hubspot = client(hubspot_server)
    hubspot.get_company("556")

    started = time.monotonic()
    hubspot.get_company("556")

    assert time.monotonic() - started >= 0.9
    assert hubspot_server.rate_limited == 1


def test_rate_limit_that_persists_is_a_clear_error(hubspot_server: HubSpotServer) -> None:
    hubspot_server.rate_max, hubspot_server.rate_interval_ms = 1, 60_000
    hubspot = client(hubspot_server, retries=2, retry_after_max=0.05)
    hubspot.get_company("556")

    with pytest.raises(
        HubSpotError,
        match=r"answered 429 \(RATE_LIMIT, SECONDLY limit: "
        r"You have reached your secondly limit\.\) after 2 retries",
    ):
        hubspot.get_company("556")


def test_5xx_is_retried_for_reads_but_a_create_is_not(hubspot_server: HubSpotServer) -> None:
    hubspot = client(hubspot_server)
    hubspot_server.inject(503, method="GET", path="/crm/v3/objects/companies/555", times=2)
    assert hubspot.get_company("555").name == "Springfield USD"
    assert len(hubspot_server.calls("GET", "/companies/555")) == 3

    hubspot_server.inject(502, method="POST", path="/crm/v3/objects/tickets")
    with pytest.raises(HubSpotError, match=r"POST /crm/v3/objects/tickets answered 502"):
        upsert(hubspot)
    creates = [r for r in hubspot_server.calls("POST") if r.path == "/crm/v3/objects/tickets"]
    assert len(creates) == 1 and not hubspot_server.tickets


def test_unreachable_hubspot() -> None:
    from reconciliation_tests.fixtures.aws import free_port

    secret = CredentialResolver({"T": TOKEN}).resolve("env:T")
    hubspot = HubSpotClient(secret, base_url=f"http://127.0.0.1:{free_port()}", retries=0)
    with pytest.raises(
        HubSpotError,
        match=r"cannot reach http://127\.0\.0\.1:\d+ "
        r"\(ConnectionError\)",
    ):
        hubspot.get_company("555")
