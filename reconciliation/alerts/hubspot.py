"""HubSpot for alerts: who the customer is in the CRM, and one open ticket per problem.

- Auth: a private app's access token (a credential reference, resolved by the caller)
  sent as `Authorization: Bearer`. The app needs the scopes `crm.objects.companies.read`,
  `crm.objects.owners.read` and `tickets`.
- `get_company(id)`: the company's name, its owner (`hubspot_owner_id` resolved through
  the owners API to a name and email), and the property holding the Bookmarked
  customer id (default `bookmarked_customer_id`).
- `upsert_ticket(...)`: the open ticket carrying the same dedupe key (a custom ticket
  property, default `reconciliation_key`, that a portal admin creates once) is updated;
  if there is none (never filed, or closed since: `closed_date` set), a new ticket is
  created in the configured pipeline and stage and associated with the company. HubSpot's
  search index lags a few seconds behind a create, so two upserts of one key within
  seconds may still file two tickets; the alert sensor runs minutes apart.
- Rate limits: a 429 waits as long as `Retry-After` says or, without it, one rate-limit
  window (`X-HubSpot-RateLimit-Interval-Milliseconds`), else exponential backoff. 5xx and
  read timeouts are retried too, except for a POST (create, search), which is repeated
  only after a 429: after a 5xx or a timeout the create may have happened, and the next
  run's search finds it.
- Errors are `HubSpotError`s naming the call and HubSpot's category and message; never
  the token.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from reconciliation.credentials import (
    CredentialError,
    CredentialResolver,
    Secret,
    is_reference,
    mask_url,
    quoted,
    redact,
)

DEFAULT_BASE_URL = "https://api.hubapi.com"
#: Bookmarked has one HubSpot portal for all customers, so its token is deployment
#: configuration, not customer settings: a credential reference (env: or
#: aws-secretsmanager:) in this variable, and an optional base URL (a proxy, or tests).
TOKEN_VARIABLE = "RECONCILIATION_HUBSPOT_TOKEN"
URL_VARIABLE = "RECONCILIATION_HUBSPOT_URL"
#: HubSpot-defined association type: ticket -> company
TICKET_TO_COMPANY = 339
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class HubSpotError(Exception):
    """A HubSpot call that failed. The message names the call, never the token."""


@dataclass(frozen=True)
class Owner:
    id: str
    name: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class Company:
    id: str
    name: str | None
    owner: Owner | None
    bookmarked_customer_id: str | None


@dataclass(frozen=True)
class Ticket:
    id: str
    created: bool  # False: an open ticket with the same key was updated


class _HubSpotRetry(Retry):
    """urllib3's retry policy, reading HubSpot's rate-limit window when a 429 has no
    Retry-After."""

    def get_retry_after(self, response: Any) -> float | None:
        seconds = super().get_retry_after(response)
        if seconds is None and response.status == 429:
            interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds", "")
            if interval.isdigit():
                seconds = min(int(interval) / 1000, self.retry_after_max)
        return seconds


class HubSpotClient:
    """The few CRM v3 calls alerts need, with retries, timeouts and clear errors."""

    def __init__(
        self,
        token: Secret,
        *,
        base_url: str = DEFAULT_BASE_URL,
        customer_id_property: str = "bookmarked_customer_id",
        dedupe_property: str = "reconciliation_key",
        pipeline: str = "0",
        open_stage: str = "1",
        timeout: tuple[float, float] = (10.0, 30.0),
        retries: int = 5,
        backoff_factor: float = 0.5,
        retry_after_max: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.customer_id_property = customer_id_property
        self.dedupe_property = dedupe_property
        self.pipeline, self.open_stage = pipeline, open_stage
        self.timeout = timeout
        policy = {
            "total": retries,
            "backoff_factor": backoff_factor,
            "backoff_max": retry_after_max,
            "retry_after_max": retry_after_max,
            "respect_retry_after_header": True,
            "raise_on_status": False,
        }
        # reads and updates repeat safely; a POST (create, search) is repeated only when
        # it was refused (429) or never sent, since after a 5xx or a read timeout a create
        # may have happened
        self._sessions = {
            "safe": _session(
                token,
                _HubSpotRetry(
                    **policy, status_forcelist=RETRY_STATUSES, allowed_methods={"GET", "PATCH"}
                ),
            ),
            "POST": _session(
                token,
                _HubSpotRetry(**policy, status_forcelist={429}, allowed_methods={"POST"}, read=0),
            ),
        }

    def __repr__(self) -> str:
        return f"HubSpotClient({self.base_url})"

    # -- companies -----------------------------------------------------------------------

    def get_company(self, company_id: str) -> Company:
        properties = ["name", "hubspot_owner_id", self.customer_id_property]
        path = f"/crm/v3/objects/companies/{company_id}"
        answer = self._call(
            "GET", path, params={"properties": ",".join(properties)}, missing_ok=True
        )
        if answer is None:
            raise HubSpotError(f"HubSpot GET {path}: no company {company_id}")
        values = answer.get("properties") or {}
        owner_id = values.get("hubspot_owner_id")
        return Company(
            id=str(answer.get("id", company_id)),
            name=values.get("name"),
            owner=self.get_owner(owner_id) if owner_id else None,
            bookmarked_customer_id=values.get(self.customer_id_property),
        )

    def get_owner(self, owner_id: str) -> Owner:
        """The owner's name and email; just the id for an owner HubSpot no longer knows
        (deactivated users leave their id on companies)."""
        answer = self._call("GET", f"/crm/v3/owners/{owner_id}", missing_ok=True)
        if answer is None:
            return Owner(id=str(owner_id))
        name = " ".join(p for p in (answer.get("firstName"), answer.get("lastName")) if p)
        return Owner(id=str(owner_id), name=name or None, email=answer.get("email"))

    # -- tickets -------------------------------------------------------------------------

    def find_open_ticket(self, key: str) -> str | None:
        """The id of the newest open ticket carrying this dedupe key, if any."""
        answer = self._request(
            "POST",
            "/crm/v3/objects/tickets/search",
            json={
                "filterGroups": [
                    {
                        "filters": [
                            {"propertyName": self.dedupe_property, "operator": "EQ", "value": key},
                            {"propertyName": "closed_date", "operator": "NOT_HAS_PROPERTY"},
                        ]
                    }
                ],
                "properties": [self.dedupe_property, "hs_pipeline_stage"],
                "sorts": [{"propertyName": "createdate", "direction": "DESCENDING"}],
                "limit": 1,
            },
        )
        results = answer.get("results") or []
        return str(results[0]["id"]) if results else None

    def upsert_ticket(
        self,
        *,
        company_id: str,
        key: str,
        subject: str,
        content: str,
        priority: str | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> Ticket:
        """Update the open ticket for `key`, or file a new one on the company.

        An update changes the text, never the stage: the support team owns the workflow.
        """
        values = {"subject": subject, "content": content, **(properties or {})}
        if priority:
            values["hs_ticket_priority"] = priority
        existing = self.find_open_ticket(key)
        if existing is not None:
            self._request(
                "PATCH", f"/crm/v3/objects/tickets/{existing}", json={"properties": values}
            )
            return Ticket(existing, created=False)
        answer = self._request(
            "POST",
            "/crm/v3/objects/tickets",
            json={
                "properties": {
                    **values,
                    self.dedupe_property: key,
                    "hs_pipeline": self.pipeline,
                    "hs_pipeline_stage": self.open_stage,
                },
                "associations": [
                    {
                        "to": {"id": str(company_id)},
                        "types": [
                            {
                                "associationCategory": "HUBSPOT_DEFINED",
                                "associationTypeId": TICKET_TO_COMPANY,
                            }
                        ],
                    }
                ],
            },
        )
        return Ticket(str(answer["id"]), created=True)

    # -- HTTP ----------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, json: Any = None
    ) -> dict[str, Any]:
        answer = self._call(method, path, params=params, json=json)
        assert answer is not None  # only missing_ok calls answer None
        return answer

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        """One call; its JSON object, or None for a 404 when `missing_ok`."""
        shown = f"HubSpot {method} {path}"
        try:
            session = self._sessions["POST" if method == "POST" else "safe"]
            response = session.request(
                method, self.base_url + path, params=params, json=json, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise HubSpotError(
                f"{shown}: cannot reach {mask_url(self.base_url)} ({type(exc).__name__})"
            ) from None
        if response.status_code == 404 and missing_ok:
            return None
        if not response.ok:
            raise HubSpotError(
                redact(f"{shown} answered {response.status_code}{_describe(response)}")
            )
        try:
            answer = response.json()
        except ValueError:
            raise HubSpotError(f"{shown}: the answer is not JSON") from None
        if not isinstance(answer, dict):
            raise HubSpotError(f"{shown}: the answer is not a JSON object")
        return answer


def _session(token: Secret, retry: Retry) -> requests.Session:
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    session.headers["Authorization"] = f"Bearer {token.reveal()}"
    return session


def _describe(response: Any) -> str:
    """HubSpot's `{"category", "message"}` (and the rate-limit policy), shortened."""
    try:
        body = response.json()
    except ValueError:
        return f" ({response.reason})" if response.reason else ""
    if not isinstance(body, dict):
        return ""
    category = body.get("category") or body.get("errorType") or "error"
    policy = f", {body['policyName']} limit" if body.get("policyName") else ""
    message = quoted(str(body.get("message") or ""), 300)  # may echo the request's token
    retries = getattr(response.raw, "retries", None)
    after = f" after {len(retries.history)} retries" if retries and retries.history else ""
    return f" ({category}{policy}: {message}){after}"


def client_from_environment(
    credentials: CredentialResolver, environ: Mapping[str, str] | None = None
) -> HubSpotClient | None:
    """The deployment's HubSpot client, or None when HubSpot is not configured here."""
    environ = os.environ if environ is None else environ
    reference = environ.get(TOKEN_VARIABLE, "").strip()
    if not reference:
        return None
    if not is_reference(reference):
        raise CredentialError(
            f"{TOKEN_VARIABLE} must be a credential reference (env:NAME or "
            "aws-secretsmanager:SECRET_ID[#key]), not the token itself"
        )
    base_url = environ.get(URL_VARIABLE, "").strip() or DEFAULT_BASE_URL
    return HubSpotClient(credentials.resolve(reference), base_url=base_url)
