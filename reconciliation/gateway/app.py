"""The gateway application: sign-in pages, then every request to the Dagster webserver
checked and forwarded (reconciliation/gateway/__init__.py lists the modules).

Every request but the sign-in pages needs a live session. A GraphQL request (HTTP or
WebSocket) is parsed; a mutation is decided by `policy.decide` for the user's role, the
customers it touches (a re-execution's or a termination's run is looked up on the
webserver) and the age of the sign-in; a launch allowed is tagged with the user, and
recorded in the audit trail with the webserver's answer. Other writes (the webserver's
REST endpoints that report asset events) are for admins; log and debug downloads are
audited. Form posts and writes from another site are refused (Origin / Sec-Fetch-Site),
besides the SameSite=Lax cookie. Reports are downloaded from the gateway itself
(`/reports/<customer>/<run>/<file>`, `report_files.py`), never from the webserver: the
role is checked (`policy.may_read_report`) and every download or refusal audited.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from reconciliation.gateway import accounts, audit_trail, policy, report_files
from reconciliation.gateway.oidc import OIDCConfig, register, user_of
from reconciliation.gateway.proxy import Upstream
from reconciliation.gateway.sessions import (
    COOKIE_NAME,
    Clock,
    LoginLimiter,
    Refusal,
    Session,
    SessionStore,
    cookie_is_secure,
)
from reconciliation.paths import reports_dir
from reconciliation.storage import Location

DOWNLOAD_PREFIXES = ("/logs/", "/download_debug/", "/notebook", "/dagit/notebook")
GRAPHQL_PATH = "/graphql"
SETTINGS_TTL = 30.0


@dataclass
class GatewayConfig:
    upstream: str
    engine: sa.Engine
    #: the key that signs cookies (a resolved secret; random when not configured)
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    #: customer id -> 'staging' | 'production'
    environments: Callable[[], Mapping[str, str]] = lambda: {}
    oidc: OIDCConfig | None = None
    now: Clock = time.time
    #: where the reports are served from (RECONCILIATION_REPORTS_DIR: a folder or s3://)
    reports: Location = field(default_factory=reports_dir)


def settings_environments(
    folder: Path | None = None, ttl: float = SETTINGS_TTL
) -> Callable[[], Mapping[str, str]]:
    """Each customer's environment from the settings folder (default: the configured one),
    re-read every `ttl` seconds. A customer whose file is invalid is unknown."""
    cache: dict[str, Any] = {"at": -ttl, "value": {}}

    def environments() -> Mapping[str, str]:
        if time.monotonic() - cache["at"] >= ttl:
            from reconciliation.settings import load_settings

            loaded = load_settings(folder, sources=False)
            cache["value"] = {c: s.environment for c, s in loaded.customers.items()}
            cache["at"] = time.monotonic()
        return cache["value"]

    return environments


def _client_address(request: Request | WebSocket) -> str:
    return request.client.host if request.client else "unknown"


def _same_origin(request: Request | WebSocket) -> bool:
    """False for a browser request sent by another site (checked on every write)."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return not origin  # no header: not a browser form post; 'null': refuse
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


def _safe_next(value: str | None) -> str:
    """Only a path on this site (never //host or a scheme): no open redirect."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _graphql_error(message: str, status: int, code: str) -> JSONResponse:
    extensions: dict[str, Any] = {"code": code}
    if code == "STEP_UP_REQUIRED":
        extensions["signIn"] = "/auth/step-up"
    return JSONResponse(
        {"data": None, "errors": [{"message": message, "extensions": extensions}]},
        status_code=status,
    )


#: loaded by every UI page: one ping a minute at most while someone types, clicks or
#: scrolls; a 401 (the session ended) goes to the sign-in page
ACTIVITY_SCRIPT = """(() => {
  let last = 0;
  const ping = () => {
    const now = Date.now();
    if (now - last < 60000) return;
    last = now;
    fetch('/auth/activity', {method: 'POST', credentials: 'same-origin'}).then((r) => {
      if (r.status === 401) {
        const here = location.pathname + location.search;
        location.assign('/auth/login?next=' + encodeURIComponent(here));
      }
    });
  };
  for (const kind of ['keydown', 'mousedown', 'wheel', 'touchstart', 'mousemove']) {
    addEventListener(kind, ping, {passive: true, capture: true});
  }
  window.reconciliationActivity = true;
  ping();
})();
"""

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in: roster reconciliation</title>
<style>body{{font-family:sans-serif;max-width:24rem;margin:4rem auto}}label,input,button
{{display:block;width:100%;margin:.4rem 0}}.note{{color:#a33}}</style></head><body>
<h1>Roster reconciliation</h1>
<p class="note">{message}</p>
<form method="post" action="/auth/login">
<input type="hidden" name="next" value="{next}">
<label>User name <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password"
 required></label>
<button type="submit">Sign in</button>
</form>
{oidc}
</body></html>
"""


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.engine = config.engine
        self.sessions = SessionStore(config.engine, config.secret_key, config.now)
        self.limiter = LoginLimiter(config.now)
        self.upstream = Upstream(config.upstream)
        self.oidc_client = register(config.oidc) if config.oidc else None

    # --- helpers ---------------------------------------------------------------------

    def audit(self, actor: str, action: str, **values: Any) -> None:
        audit_trail.record(self.engine, audit_trail.AuditRow(actor=actor, action=action, **values))

    def _set_cookie(self, response: Response, request: Request, value: str) -> None:
        response.set_cookie(
            COOKIE_NAME,
            value,
            httponly=True,
            secure=cookie_is_secure(request.url.hostname),
            samesite="lax",
            path="/",
        )

    def _login_page(self, request: Request, message: str = "", status: int = 200) -> Response:
        next_path = _safe_next(request.query_params.get("next"))
        oidc = (
            f'<p><a href="/auth/oidc/login?next={quote(next_path)}">Sign in with your '
            "organization's account</a></p>"
            if self.oidc_client
            else ""
        )
        page = LOGIN_PAGE.format(
            message=html.escape(message), next=html.escape(next_path), oidc=oidc
        )
        return HTMLResponse(page, status_code=status)

    def _begin(self, request: Request, user: str, method: str, auth_time: float) -> str | None:
        """Renews the sign-in of the browser's own live session of `user` (the step-up);
        otherwise a new session, whose cookie value is returned."""
        cookie = request.cookies.get(COOKIE_NAME)
        current = self.sessions.resolve(cookie, touch=True)
        if isinstance(current, Session) and current.user == user:
            self.sessions.renew_sign_in(current, auth_time)
            return None
        if isinstance(current, Session):  # another user signs in on this browser
            self.sessions.end(cookie)
        return self.sessions.start(user, method, auth_time)

    # --- sign-in ---------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        return self._login_page(request, request.query_params.get("message", ""))

    async def login(self, request: Request) -> Response:
        if not _same_origin(request):
            return Response("cross-site form post refused", status_code=403)
        body = (await request.body()).decode("utf-8", errors="replace")
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        user = form.get("username", "").strip()
        password = form.get("password", "")
        address = _client_address(request)
        wait = self.limiter.retry_after(user, address)
        if wait > 0:
            self.audit(user or "-", "login_failed", outcome="rate-limited", detail=address)
            response = self._login_page(
                request, "Too many failed sign-ins: try again later.", status=429
            )
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        account = accounts.verify_password(self.engine, user, password) if user else None
        if account is None:
            self.limiter.failed(user, address)
            self.audit(user or "-", "login_failed", outcome="refused", detail=address)
            return self._login_page(request, "Wrong user name or password.", status=401)
        cookie = self._begin(request, account.name, "password", self.config.now())
        self.audit(account.name, "login", outcome="password", detail=address)
        response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
        if cookie:
            self._set_cookie(response, request, cookie)
        return response

    async def logout(self, request: Request) -> Response:
        if not _same_origin(request):
            return Response("cross-site form post refused", status_code=403)
        cookie = request.cookies.get(COOKIE_NAME)
        session = self.sessions.resolve(cookie, touch=False)
        if isinstance(session, Session):
            self.audit(session.user, "logout")
        self.sessions.end(cookie)
        response = RedirectResponse("/auth/login", status_code=303)
        response.delete_cookie(COOKIE_NAME, path="/")
        return response

    async def step_up(self, request: Request) -> Response:
        next_path = _safe_next(request.query_params.get("next"))
        session = self.sessions.resolve(request.cookies.get(COOKIE_NAME), touch=False)
        if self.oidc_client and isinstance(session, Session) and session.method == "oidc":
            return RedirectResponse(
                f"/auth/oidc/login?step_up=1&next={quote(next_path)}", status_code=303
            )
        return self._login_page(
            request,
            "Launching for a production customer needs a fresh sign-in: enter your password again.",
        )

    async def activity(self, request: Request) -> Response:
        """The page's ping on keyboard or pointer input (ACTIVITY_SCRIPT): the user is
        there. 204, or 401 when the session has ended (the page then goes to sign-in)."""
        if not _same_origin(request):
            return Response("cross-site request refused", status_code=403)
        session = self.sessions.resolve(request.cookies.get(COOKIE_NAME), touch=True)
        if isinstance(session, Refusal):
            return JSONResponse({"error": session.reason}, status_code=401)
        return Response(status_code=204)

    async def activity_script(self, request: Request) -> Response:
        return Response(ACTIVITY_SCRIPT, media_type="text/javascript")

    async def whoami(self, request: Request) -> Response:
        session = self.sessions.resolve(request.cookies.get(COOKIE_NAME))
        if isinstance(session, Refusal):
            return JSONResponse({"signed_in": False, "reason": session.reason}, status_code=401)
        return JSONResponse(
            {
                "signed_in": True,
                "user": session.user,
                "role": session.role,
                "method": session.method,
                "signed_in_seconds_ago": round(self.config.now() - session.auth_time),
            }
        )

    async def oidc_login(self, request: Request) -> Response:
        if self.oidc_client is None:
            return Response("OpenID Connect is not configured", status_code=404)
        step_up = request.query_params.get("step_up") == "1"
        request.session["next"] = _safe_next(request.query_params.get("next"))
        request.session["step_up"] = step_up
        extra = {"prompt": "login", "max_age": policy.STEP_UP_SECONDS} if step_up else {}
        redirect_uri = str(request.url_for("oidc_callback"))
        return await self.oidc_client.authorize_redirect(request, redirect_uri, **extra)

    async def oidc_callback(self, request: Request) -> Response:
        from authlib.integrations.base_client import OAuthError

        if self.oidc_client is None or self.config.oidc is None:
            return Response("OpenID Connect is not configured", status_code=404)
        address = _client_address(request)
        try:
            token = await self.oidc_client.authorize_access_token(request)
        except OAuthError as exc:
            self.audit("-", "login_failed", outcome="oidc", detail=f"{address}: {exc.error}")
            return self._login_page(request, "The sign-in with your organization failed.", 401)
        claims = dict(token.get("userinfo") or {})
        user = user_of(claims, self.config.oidc)
        account = accounts.get(self.engine, user) if user else None
        if account is None or account.disabled:
            self.audit(user or "-", "login_failed", outcome="oidc-unknown", detail=address)
            return self._login_page(
                request, "Your account is not allowed here: ask an admin to add it.", 403
            )
        now = self.config.now()
        auth_time = float(claims.get("auth_time") or now)
        if request.session.pop("step_up", False) and now - auth_time > policy.STEP_UP_SECONDS:
            self.audit(account.name, "login_failed", outcome="oidc-stale", detail=address)
            return self._login_page(request, "The provider did not sign you in again.", 401)
        cookie = self._begin(request, account.name, "oidc", min(auth_time, now))
        self.audit(account.name, "login", outcome="oidc", detail=address)
        response = RedirectResponse(_safe_next(request.session.pop("next", "/")), 303)
        if cookie:
            self._set_cookie(response, request, cookie)
        return response

    # --- the proxy -------------------------------------------------------------------

    def _refuse_unsigned(self, request: Request, refusal: Refusal) -> Response:
        wants_page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if wants_page:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(
                f"/auth/login?next={quote(target)}&message={quote(refusal.reason)}",
                status_code=303,
            )
        return JSONResponse({"error": refusal.reason, "signIn": "/auth/login"}, status_code=401)

    async def proxy(self, request: Request) -> Response:
        page_load = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        session = self.sessions.resolve(request.cookies.get(COOKIE_NAME), touch=page_load)
        if isinstance(session, Refusal):
            return self._refuse_unsigned(request, session)
        body = await request.body()
        path = request.url.path
        if path == GRAPHQL_PATH and request.method in ("GET", "POST"):
            return await self._graphql(request, session, body)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            if not _same_origin(request):
                return Response("cross-site request refused", status_code=403)
            if session.role != "admin":
                self.audit(
                    session.user, "refused", outcome="refused", detail=f"{request.method} {path}"
                )
                return Response(f"{request.method} {path} needs the admin role", status_code=403)
            self.audit(session.user, "write", detail=f"{request.method} {path}")
        elif path.startswith(DOWNLOAD_PREFIXES):
            self.audit(session.user, "download", detail=path)
        elif page_load:
            page = await self.upstream.forward(request, body, buffered=True)
            return _with_activity_script(page)
        return await self.upstream.forward(request, body)

    def _graphql_data(self, request: Request, body: bytes) -> dict[str, Any] | None:
        """The query, variables and operation name, read as the webserver reads them."""
        if request.method == "GET":
            if "text/html" in request.headers.get("accept", ""):
                return None  # GraphiQL's page
            return dict(request.query_params)
        content_type = request.headers.get("content-type", "")
        if "application/json" in content_type:
            try:
                data = json.loads(body or b"null")
            except json.JSONDecodeError:
                raise policy.PolicyError("the GraphQL request is not valid JSON") from None
            if not isinstance(data, dict):
                raise policy.PolicyError("the GraphQL request is not a JSON object")
            return data
        if "application/graphql" in content_type:
            return {"query": body.decode("utf-8", errors="replace")}
        return dict(request.query_params)

    async def _graphql(self, request: Request, session: Session, body: bytes) -> Response:
        try:
            data = self._graphql_data(request, body)
            if data is None or not data.get("query"):
                return await self.upstream.forward(request, body)
            variables = policy.parse_variables(data.get("variables"))
            analysis = policy.analyze(str(data["query"]), variables)
        except policy.PolicyError as exc:
            return _graphql_error(str(exc), 400, "BAD_REQUEST")
        if not analysis.is_mutation:
            return await self.upstream.forward(request, body)
        if request.method != "POST" or not _same_origin(request):
            return _graphql_error("mutations are sent by POST from this site", 403, "FORBIDDEN")
        mutations = await self._with_runs(analysis.mutations)
        decision = policy.decide(
            session.role,
            mutations,
            self.config.environments(),
            self.config.now() - session.auth_time,
        )
        self.sessions.resolve(request.cookies.get(COOKIE_NAME), touch=True)
        if not decision.allowed:
            for m in mutations:
                self._audit_mutation(session, m, "step-up" if decision.step_up else "refused")
            code = "STEP_UP_REQUIRED" if decision.step_up else "FORBIDDEN"
            return _graphql_error(decision.reason, 403, code)
        try:
            tagged = policy.tag_with_user(variables, mutations, session.user)
        except policy.PolicyError as exc:
            return _graphql_error(str(exc), 400, "BAD_REQUEST")
        forwarded = {"query": data["query"], "variables": tagged}
        if data.get("operationName"):
            forwarded["operationName"] = data["operationName"]
        response = await self.upstream.forward(request, body, json_body=forwarded, buffered=True)
        outcome = _outcome(response)
        for m in mutations:
            self._audit_mutation(session, m, outcome)
        return response

    async def _with_runs(self, mutations: tuple[policy.Mutation, ...]) -> list[policy.Mutation]:
        run_ids = sorted({r for m in mutations for r in m.run_ids})
        if not run_ids:
            return list(mutations)
        try:
            runs = await self.upstream.run_tags(run_ids)
        except Exception:  # the webserver cannot say: the customers stay unknown
            runs = {}
        found: dict[str, tuple[frozenset[str], bool] | None] = {}
        for run_id in run_ids:
            run = runs.get(run_id)
            found[run_id] = (
                policy.customers_of(run["tags"], run["run_config"]) if run is not None else None
            )
        return [policy.with_run_customers(m, found) for m in mutations]

    def _audit_mutation(self, session: Session, m: policy.Mutation, outcome: str) -> None:
        customers = sorted(m.customers)
        detail = m.field + (f"; runs {', '.join(m.run_ids)}" if m.run_ids else "")
        if len(customers) > 1:
            detail += f"; customers {', '.join(customers)}"
        self.audit(
            session.user,
            m.action,
            customer_id=customers[0] if customers else None,
            person=m.person,
            job=m.job,
            outcome=outcome,
            detail=detail,
        )

    # --- report downloads -------------------------------------------------------------

    async def report(self, request: Request) -> Response:
        """`GET /reports/<customer>/<run or latest>/<file>`: one report file, streamed from
        the reports storage as an attachment, audited (also when refused or missing)."""
        session = self.sessions.resolve(request.cookies.get(COOKIE_NAME), touch=True)
        if isinstance(session, Refusal):  # no one to name: answered, not audited
            return self._refuse_unsigned(request, session)
        params = request.path_params
        asked = "/".join(str(params.get(k, "")) for k in ("customer", "run", "file"))
        if "rest" in params or not all(params.get(k) for k in ("customer", "run", "file")):
            asked = str(params.get("rest", asked))
            return self._report_refused(session, None, asked[:200], "not a report file", 404)
        try:
            wanted = report_files.report_file(params["customer"], params["run"], params["file"])
        except report_files.ReportNameError as exc:
            customer = params["customer"]
            known = customer if report_files.CUSTOMER.match(customer) else None
            return self._report_refused(session, known, asked[:200], str(exc), 404)
        environment = self.config.environments().get(wanted.customer)
        decision = policy.may_read_report(session.role, environment)
        if not decision.allowed:
            return self._report_refused(session, wanted.customer, str(wanted), decision.reason, 403)
        reports = self.config.reports
        detail = f"{wanted.run}/{wanted.file}"
        if wanted.run == report_files.LATEST:
            run = await run_in_threadpool(report_files.latest_run, wanted.customer, reports)
            detail += f" (run {run})" if run else ""
        try:
            # storage calls (an S3 GET) off the event loop, which relays the UI's traffic
            size, chunks = await run_in_threadpool(report_files.open_report, wanted, reports)
        except FileNotFoundError:
            return self._report_refused(session, wanted.customer, detail, "no such report", 404)
        except OSError as exc:  # unreadable storage: said without the path's contents
            self.audit(
                session.user,
                "report_download",
                customer_id=wanted.customer,
                outcome=f"error: {type(exc).__name__}",
                detail=detail,
            )
            return Response("the report cannot be read now", status_code=503)
        customer = wanted.customer
        self.audit(
            session.user, "report_download", customer_id=customer, outcome="ok", detail=detail
        )
        return StreamingResponse(
            chunks,
            media_type=wanted.media_type,
            headers={
                "Content-Disposition": f'attachment; filename="{wanted.download_name}"',
                "Content-Length": str(size),
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    def _report_refused(
        self, session: Session, customer: str | None, detail: str, reason: str, status: int
    ) -> Response:
        outcome = "not found" if status == 404 else "refused"
        self.audit(
            session.user,
            "report_download",
            customer_id=customer,
            outcome=outcome,
            detail=f"{detail}: {reason}",
        )
        return JSONResponse(
            {"error": reason}, status_code=status, headers={"Cache-Control": "no-store"}
        )

    # --- WebSocket -------------------------------------------------------------------

    async def websocket(self, websocket: WebSocket) -> None:
        cookie = websocket.cookies.get(COOKIE_NAME)
        session = self.sessions.resolve(cookie)
        if isinstance(session, Refusal) or not _same_origin(websocket):
            await websocket.close(code=4401 if isinstance(session, Refusal) else 4403)
            return

        async def alive() -> bool:
            return isinstance(self.sessions.resolve(cookie), Session)

        async def check(message: dict[str, Any]) -> str | None:
            if message.get("type") not in ("start", "subscribe"):
                return None
            payload = message.get("payload") or {}
            try:
                analysis = policy.analyze(
                    str(payload.get("query") or ""),
                    policy.parse_variables(payload.get("variables")),
                )
            except policy.PolicyError as exc:
                return str(exc)
            if analysis.is_mutation:
                for m in analysis.mutations:
                    self._audit_mutation(session, m, "refused (websocket)")
                return "mutations are not accepted over the WebSocket: send them by HTTP POST"
            return None

        await self.upstream.relay_websocket(websocket, check, alive)


def _with_activity_script(page: Response) -> Response:
    """The UI's HTML page with our activity script, allowed by the page's own CSP nonce."""
    csp = page.headers.get("content-security-policy", "")
    nonce = re.search(r"'nonce-([A-Za-z0-9+/=_-]+)'", csp)
    if page.status_code != 200 or "text/html" not in page.headers.get("content-type", ""):
        return page
    tag = '<script src="/auth/activity.js"'
    tag += f' nonce="{nonce.group(1)}"></script>' if nonce else "></script>"
    body = bytes(page.body).decode("utf-8", errors="replace")
    body = body.replace("</head>", f"{tag}</head>", 1) if "</head>" in body else tag + body
    headers = {k: v for k, v in page.headers.items() if k.lower() != "content-length"}
    return Response(body, status_code=page.status_code, headers=headers)


def _outcome(response: Response) -> str:
    """The webserver's answer in a word or two, with the launched run ids."""
    if response.status_code != 200:
        return f"http {response.status_code}"
    try:
        data = json.loads(bytes(response.body)).get("data") or {}
    except (ValueError, AttributeError):
        return "ok"
    kinds = []
    for value in data.values():
        if isinstance(value, dict):
            kind = value.get("__typename") or "ok"
            run = value.get("run") or {}
            kinds.append(f"{kind} {run.get('runId')}" if run.get("runId") else kind)
    return "; ".join(kinds)[:200] or "ok"


def create_app(config: GatewayConfig) -> Starlette:
    gateway = Gateway(config)
    routes = [
        Route("/auth/login", gateway.login_form, methods=["GET"]),
        Route("/auth/login", gateway.login, methods=["POST"]),
        Route("/auth/logout", gateway.logout, methods=["POST"]),
        Route("/auth/step-up", gateway.step_up, methods=["GET"]),
        Route("/auth/whoami", gateway.whoami, methods=["GET"]),
        Route("/auth/activity", gateway.activity, methods=["POST"]),
        Route("/auth/activity.js", gateway.activity_script, methods=["GET"]),
        Route("/auth/oidc/login", gateway.oidc_login, methods=["GET"]),
        Route("/auth/oidc/callback", gateway.oidc_callback, methods=["GET"], name="oidc_callback"),
        Route("/reports/{customer}/{run}/{file}", gateway.report, methods=["GET"]),
        # anything else under /reports/ (more or fewer parts, '..', encoded slashes) is
        # refused here, never forwarded
        Route("/reports/{rest:path}", gateway.report, methods=["GET", "HEAD", "POST"]),
        WebSocketRoute("/{path:path}", gateway.websocket),
        Route(
            "/{path:path}",
            gateway.proxy,
            methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        ),
    ]
    middleware = [
        # holds only the OIDC state and nonce between the redirect and the callback
        Middleware(
            SessionMiddleware,
            secret_key=config.secret_key,
            session_cookie="reconciliation_oidc",
            max_age=600,
            same_site="lax",
            https_only=False,
        )
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await gateway.upstream.close()

    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.gateway = gateway
    return app
